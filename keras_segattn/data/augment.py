"""Joint geometric augmentation of images and their annotations.

Every function takes and returns one dataset element (see the package
contract): `images` are resampled bilinearly, `segmentation_masks` and
`instance_masks` by nearest neighbour, so no label is ever interpolated;
`bounding_boxes` follow the same transform and `captions` swap "left of"
and "right of" on a horizontal flip. Randomness comes from stateless ops
keyed by an explicit seed, so results are reproducible.
`keras.layers.RandomCrop` is avoided: in Keras 3.15 it misplaces boxes and
leaves images uncropped when `training=False`.
"""

import numbers

import tensorflow as tf


def _static_size(size, name):
    try:
        h, w = (int(v) for v in ((size, size) if isinstance(size, numbers.Integral) else size))
    except (TypeError, ValueError):
        raise TypeError(
            f"{name} must be an int or a (height, width) pair of ints; got {size!r}"
        ) from None
    if h < 1 or w < 1:
        raise ValueError(f"{name} must be positive; got {size!r}")
    return h, w


def _check_example(example):
    if not isinstance(example, dict) or "images" not in example:
        raise TypeError(
            "example must be a dict with at least an 'images' key; got "
            f"{type(example).__name__}"
            + (f" with keys {sorted(example)}" if isinstance(example, dict) else "")
        )
    return dict(example)


def _map_boxes(example, fn):
    if "bounding_boxes" in example:
        boxes = dict(example["bounding_boxes"])
        valid = boxes["labels"] != -1
        mapped = fn(tf.cast(boxes["boxes"], tf.float32))
        boxes["boxes"] = tf.where(valid[:, None], mapped, -1.0)
        example["bounding_boxes"] = boxes
    return example


def _flip(example):
    example = dict(example)
    width = tf.cast(tf.shape(example["images"])[1], tf.float32)
    example["images"] = example["images"][:, ::-1]
    if "segmentation_masks" in example:
        example["segmentation_masks"] = example["segmentation_masks"][:, ::-1]
    if "instance_masks" in example:
        example["instance_masks"] = example["instance_masks"][:, :, ::-1]
    if "captions" in example:
        c = tf.strings.regex_replace(example["captions"], "left of", "@@LEFT@@")
        c = tf.strings.regex_replace(c, "right of", "left of")
        example["captions"] = tf.strings.regex_replace(c, "@@LEFT@@", "right of")
    return _map_boxes(
        example,
        lambda b: tf.stack([width - b[:, 2], b[:, 1], width - b[:, 0], b[:, 3]], axis=-1),
    )


def _resize(example, size):
    example = dict(example)
    image = example["images"]
    old = tf.cast(tf.shape(image)[:2], tf.float32)
    resized = tf.image.resize(image, size, method="bilinear")
    if image.dtype == tf.uint8:
        resized = tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.uint8)
    example["images"] = tf.cast(resized, image.dtype)
    if "segmentation_masks" in example:
        mask = example["segmentation_masks"][..., None]
        example["segmentation_masks"] = tf.image.resize(mask, size, "nearest")[..., 0]
    if "instance_masks" in example:
        masks = tf.transpose(example["instance_masks"], [1, 2, 0])
        masks = tf.image.resize(masks, size, "nearest")
        example["instance_masks"] = tf.transpose(masks, [2, 0, 1])
    new = tf.cast(tf.convert_to_tensor(size)[:2], tf.float32)
    sy, sx = new[0] / old[0], new[1] / old[1]
    return _map_boxes(example, lambda b: b * tf.stack([sx, sy, sx, sy]))


def _crop_or_pad(example, size, offset, ignore_class):
    """Takes the `size` window at `offset` (may be negative), padding as needed."""
    example = dict(example)
    th, tw = size
    shape = tf.shape(example["images"])
    oy, ox = offset[0], offset[1]
    top, left = tf.maximum(-oy, 0), tf.maximum(-ox, 0)
    bottom = tf.maximum(oy + th - shape[0], 0)
    right = tf.maximum(ox + tw - shape[1], 0)
    y0, x0 = oy + top, ox + left

    def apply(x, value, spatial_axis):
        pads = [[0, 0]] * spatial_axis + [[top, bottom], [left, right]]
        pads += [[0, 0]] * (x.shape.rank - spatial_axis - 2)
        x = tf.pad(x, pads, constant_values=tf.cast(value, x.dtype))
        x = x[(slice(None),) * spatial_axis + (slice(y0, y0 + th), slice(x0, x0 + tw))]
        static = list(x.shape)
        static[spatial_axis : spatial_axis + 2] = [th, tw]
        return tf.ensure_shape(x, static)

    example["images"] = apply(example["images"], 0, 0)
    if "segmentation_masks" in example:
        example["segmentation_masks"] = apply(example["segmentation_masks"], ignore_class, 0)
    if "instance_masks" in example:
        example["instance_masks"] = apply(example["instance_masks"], 0, 1)
    if "bounding_boxes" not in example:
        return example

    shift = tf.cast(tf.stack([ox, oy, ox, oy]), tf.float32)
    limit = tf.constant([tw, th, tw, th], tf.float32)
    example = _map_boxes(example, lambda b: tf.clip_by_value(b - shift, 0.0, limit))
    boxes = dict(example["bounding_boxes"])
    b = boxes["boxes"]
    valid = (boxes["labels"] != -1) & (b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])
    # Instances cropped away are dropped; a stable sort keeps the rest in
    # order with the -1 padding at the end, as the contract requires.
    order = tf.argsort(tf.cast(~valid, tf.int32), stable=True)
    valid = tf.gather(valid, order)
    boxes["boxes"] = tf.where(valid[:, None], tf.gather(b, order), -1.0)
    boxes["labels"] = tf.where(
        valid, tf.gather(boxes["labels"], order), tf.constant(-1, boxes["labels"].dtype)
    )
    example["bounding_boxes"] = boxes
    if "instance_masks" in example:
        masks = tf.gather(example["instance_masks"], order)
        example["instance_masks"] = masks * tf.cast(valid, masks.dtype)[:, None, None]
    if "num_instances" in example:
        count = tf.reduce_sum(tf.cast(valid, tf.int32))
        example["num_instances"] = tf.cast(count, example["num_instances"].dtype)
    return example


def resize_example(example, size):
    """Resizes an example: bilinear for images, nearest for masks.

    Args:
        example: dict. A dataset element with `images` and optionally
            `segmentation_masks`, `instance_masks`, `bounding_boxes`.
        size: int or tuple `(height, width)`. Output size.

    Returns:
        A new dict; uint8 images stay uint8 (rounded), boxes are scaled.
    """
    example = _check_example(example)
    h, w = _static_size(size, "size")
    example = _resize(example, (h, w))
    example["images"] = tf.ensure_shape(example["images"], [h, w, None])
    return example


def center_crop_or_pad(example, size, ignore_class=255):
    """Crops the centre of an example, padding sides that are too small.

    Args:
        example: dict. A dataset element.
        size: int or tuple `(height, width)`. Output size.
        ignore_class: int. Value of padded mask pixels (images pad with 0,
            instance masks with 0). Defaults to `255`.

    Returns:
        A new dict with spatial size `size`; boxes cropped away are
        dropped and the rest clipped.
    """
    example = _check_example(example)
    h, w = _static_size(size, "size")
    shape = tf.shape(example["images"])
    offset = tf.stack([(shape[0] - h) // 2, (shape[1] - w) // 2])
    return _crop_or_pad(example, (h, w), offset, ignore_class)


def augment_segmentation(
    example,
    seed,
    crop_size,
    scale_range=(0.75, 1.25),
    flip=True,
    ignore_class=255,
):
    """Randomly flips, scales and crops (or pads) an example.

    Args:
        example: dict. A dataset element with `images` and optionally
            `segmentation_masks`, `instance_masks`, `bounding_boxes`,
            `num_instances`, `captions`.
        seed: int tensor of shape `[2]`. Stateless seed; the same seed and
            input give the same output.
        crop_size: int or tuple `(height, width)`. Output size. Smaller
            inputs are padded at a random position (images with 0, masks
            with `ignore_class`).
        scale_range: tuple `(min, max)` or `None`. Range of the uniform
            random scale factor; `None` disables scaling. Defaults to
            `(0.75, 1.25)`.
        flip: bool. Whether to flip horizontally with probability 0.5.
            Defaults to `True`.
        ignore_class: int. Mask value of padded pixels. Defaults to `255`.

    Returns:
        A new dict of spatial size `crop_size`.
    """
    example = _check_example(example)
    h, w = _static_size(crop_size, "crop_size")
    seed = tf.convert_to_tensor(seed)
    if seed.shape.rank != 1 or seed.shape[0] not in (None, 2):
        raise ValueError(f"seed must be an int tensor of shape [2]; got {seed.shape}")
    flip_seed, scale_seed, y_seed, x_seed = tf.unstack(
        tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 4)
    )
    if flip:
        do_flip = tf.random.stateless_uniform([], flip_seed) < 0.5
        example = tf.cond(do_flip, lambda: _flip(example), lambda: dict(example))
    if scale_range is not None:
        lo, hi = (float(v) for v in scale_range)
        if not 0 < lo <= hi:
            raise ValueError(
                f"scale_range must be (min, max) with 0 < min <= max; got {scale_range!r}"
            )
        scale = tf.random.stateless_uniform([], scale_seed, minval=lo, maxval=hi)
        shape = tf.cast(tf.shape(example["images"])[:2], tf.float32)
        new_size = tf.maximum(tf.cast(tf.round(shape * scale), tf.int32), 1)
        example = _resize(example, new_size)
    shape = tf.shape(example["images"])[:2]
    slack = shape - tf.constant([h, w])
    # A positive slack is a crop, a negative one a pad; both pick a
    # random placement.
    lo, hi = tf.minimum(slack, 0), tf.maximum(slack, 0) + 1
    offset = tf.stack(
        [
            tf.random.stateless_uniform([], y_seed, lo[0], hi[0], tf.int32),
            tf.random.stateless_uniform([], x_seed, lo[1], hi[1], tf.int32),
        ]
    )
    return _crop_or_pad(example, (h, w), offset, ignore_class)


def augment_dataset(dataset, crop_size, seed=0, **kwargs):
    """Applies `augment_segmentation` to every element of a dataset.

    Per-element seeds come from `tf.data.Dataset.random(seed)`, re-drawn on
    each iteration: every epoch sees new augmentations, and the sequence
    is the same for the same `seed`.

    Args:
        dataset: `tf.data.Dataset` of dict elements.
        crop_size: int or tuple `(height, width)`. Output size.
        seed: int. Seed of the per-element seed stream. Defaults to `0`.
        **kwargs: Passed to `augment_segmentation` (`scale_range`, `flip`,
            `ignore_class`).

    Returns:
        The augmented `tf.data.Dataset`.
    """
    _static_size(crop_size, "crop_size")
    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
    seeds = seeds.batch(2, drop_remainder=True)
    return tf.data.Dataset.zip((dataset, seeds)).map(
        lambda example, s: augment_segmentation(example, s, crop_size, **kwargs),
        num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=True,
    )


def object_centred_crop(example, crop_size, seed, ignore_class=255, background_class=None):
    """Crops `crop_size` around an object, DeconvNet's easy first-stage input.

    A class present in the mask (not `ignore_class`, not `background_class`)
    is drawn uniformly, then one of its pixels, and the crop is centred
    there (padded with the ignore id where it leaves the image). With no
    such pixel, the crop is centred on the image. Semantic masks do not
    separate instances, so "the object" is the region of a drawn class.

    Args:
        example: dict with `images` and `segmentation_masks`.
        crop_size: int or `(height, width)`.
        seed: shape-`[2]` int tensor for the stateless random draw.
        ignore_class: int. Defaults to `255`.
        background_class: int or `None`. A class never chosen as the centre.
    """
    example = _check_example(example)
    th, tw = _static_size(crop_size, "crop_size")
    mask = tf.cast(example["segmentation_masks"], tf.int32)
    shape = tf.shape(mask)
    flat = tf.reshape(mask, [-1])
    candidate = tf.not_equal(flat, ignore_class)
    if background_class is not None:
        candidate &= tf.not_equal(flat, background_class)
    safe = tf.where(candidate, flat, 0)
    counts = tf.math.bincount(safe, weights=tf.cast(candidate, tf.float32))
    # Weight each pixel by 1 / (its class's pixel count): every present
    # class is then equally likely, whatever its area.
    weight = tf.where(candidate, 1.0 / tf.maximum(tf.gather(counts, safe), 1.0), 0.0)
    index = tf.random.stateless_categorical(
        tf.math.log(weight + 1e-30)[None], 1, seed, dtype=tf.int32
    )[0, 0]
    has_object = tf.reduce_any(candidate)
    cy = tf.where(has_object, index // shape[1], shape[0] // 2)
    cx = tf.where(has_object, index % shape[1], shape[1] // 2)
    return _crop_or_pad(example, (th, tw), (cy - th // 2, cx - tw // 2), ignore_class)
