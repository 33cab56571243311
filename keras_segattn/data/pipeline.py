"""Training input pipelines, label checks and class weights."""

import warnings

import numpy as np
import tensorflow as tf

from keras_segattn.core.validation import check_int
from keras_segattn.data import augment as augment_lib
from keras_segattn.data import folders, shapes
from keras_segattn.data import tfds as tfds_lib
from keras_segattn.data.catalogue import (  # noqa: F401  (public here too)
    DatasetInfo,
    generation_options,
    is_generated,
    list_datasets,
    load_dataset,
    register_dataset,
)

# Added to the shapes seed per split, so that for base seeds below it no
# split's seed can equal another split's.
_SPLIT_SEED_OFFSET = 1_000_003


def _range_message(num_classes, ignore_class):
    valid = f"0..{num_classes - 1}"
    if ignore_class is not None:
        valid += f" and {ignore_class}"
    return f"but num_classes={num_classes} and ignore_class={ignore_class} (valid ids are {valid})"


def check_segmentation_labels(masks, num_classes, ignore_class=255):
    """Checks that every mask id is a class id or the ignore id.

    Args:
        masks: array-like of ints. Masks of any shape.
        num_classes: int. Valid class ids are `0..num_classes - 1`.
        ignore_class: int or `None`. The extra allowed id. Defaults to
            `255`.

    Raises:
        ValueError: naming the offending ids when one is out of range.
    """
    masks = np.asarray(masks)
    if not np.issubdtype(masks.dtype, np.integer):
        raise TypeError(f"segmentation_masks must be integers; got dtype {masks.dtype}")
    ids = np.unique(masks)
    bad = ids[(ids < 0) | (ids >= num_classes)]
    if ignore_class is not None:
        bad = bad[bad != ignore_class]
    if bad.size:
        listed = ", ".join(str(v) for v in bad[:10]) + (", ..." if bad.size > 10 else "")
        noun = "class id" if bad.size == 1 else "class ids"
        raise ValueError(
            f"segmentation_masks contains {noun} {listed} "
            + _range_message(num_classes, ignore_class)
        )


def _label_assertion(num_classes, ignore_class):
    def check(example):
        mask = tf.cast(example["segmentation_masks"], tf.int32)
        bad = (mask < 0) | (mask >= num_classes)
        if ignore_class is not None:
            bad &= mask != ignore_class
        bad_ids = tf.boolean_mask(mask, bad)
        assertion = tf.debugging.Assert(
            ~tf.reduce_any(bad),
            [
                "segmentation_masks contains class ids from",
                tf.reduce_min(bad_ids),
                "to",
                tf.reduce_max(bad_ids),
                _range_message(num_classes, ignore_class),
            ],
        )
        with tf.control_dependencies([assertion]):
            example = dict(example)
            example["segmentation_masks"] = tf.identity(mask)
        return example

    return check


def segmentation_pipeline(
    dataset,
    batch_size,
    num_classes,
    ignore_class=255,
    image_size=None,
    crop_size=None,
    augment=False,
    shuffle=0,
    seed=0,
    repeat=False,
):
    """Turns a dataset of example dicts into batches for `model.fit`.

    Order: label check, shuffle, repeat, resize, augment or centre crop,
    batch, prefetch. Without `image_size` and `crop_size`, examples may
    differ in size; they are then batched with `padded_batch`, images
    padded with 0 and masks with `ignore_class` at the bottom and right,
    so padded pixels never count in the loss.

    Args:
        dataset: `tf.data.Dataset` of dicts with `images` and
            `segmentation_masks`.
        batch_size: int. Batch size.
        num_classes: int. Valid class ids are `0..num_classes - 1`;
            iterating raises `InvalidArgumentError` naming the bad ids
            otherwise.
        ignore_class: int or `None`. Mask id to ignore. Defaults to `255`.
        image_size: int or tuple `(height, width)`. Resize every example
            to this size first. Defaults to `None`.
        crop_size: int or tuple `(height, width)`. Random crop size when
            `augment`, centre crop otherwise. Defaults to `None`.
        augment: bool. Random flip, scale and crop (`augment_dataset`);
            needs `crop_size` or `image_size` (used as crop size). Defaults
            to `False`.
        shuffle: int. Shuffle buffer size; 0 keeps the order. Defaults to
            `0`.
        seed: int. Seed of shuffling and augmentation. Defaults to `0`.
        repeat: bool. Repeat indefinitely. Defaults to `False`.

    Returns:
        A `tf.data.Dataset` of `(images, masks)` with uint8 images
        `(B, H, W, 3)` (models normalise inside) and int32 masks `(B, H, W)`.
    """
    if not isinstance(dataset, tf.data.Dataset):
        raise TypeError(f"dataset must be a tf.data.Dataset; got {type(dataset).__name__}")
    spec = dataset.element_spec
    if not isinstance(spec, dict) or not {"images", "segmentation_masks"} <= set(spec):
        raise ValueError(
            "dataset elements must be dicts with 'images' and "
            f"'segmentation_masks'; got element_spec {spec}"
        )
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size}")
    if int(num_classes) < 1:
        raise ValueError(f"num_classes must be >= 1; got {num_classes}")
    if augment and crop_size is None:
        if image_size is None:
            raise ValueError("augment=True needs crop_size (or image_size)")
        crop_size = image_size

    dataset = dataset.map(
        lambda ex: {
            "images": ex["images"],
            "segmentation_masks": ex["segmentation_masks"],
        }
    )
    dataset = dataset.map(
        _label_assertion(num_classes, ignore_class),
        num_parallel_calls=tf.data.AUTOTUNE,
    )
    if shuffle:
        dataset = dataset.shuffle(shuffle, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        dataset = dataset.repeat()
    pad_value = 0 if ignore_class is None else ignore_class
    if image_size is not None:
        dataset = dataset.map(
            lambda ex: augment_lib.resize_example(ex, image_size),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    if augment:
        dataset = augment_lib.augment_dataset(dataset, crop_size, seed=seed, ignore_class=pad_value)
    elif crop_size is not None:
        dataset = dataset.map(
            lambda ex: augment_lib.center_crop_or_pad(ex, crop_size, pad_value),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    dataset = dataset.map(
        lambda ex: (
            tf.cast(ex["images"], tf.uint8),
            tf.cast(ex["segmentation_masks"], tf.int32),
        )
    )
    if dataset.element_spec[0].shape.is_fully_defined():
        dataset = dataset.batch(batch_size)
    else:
        if ignore_class is None:
            raise ValueError(
                "Examples of different sizes need image_size, crop_size or an "
                "ignore_class to pad masks with; got ignore_class=None"
            )
        dataset = dataset.padded_batch(
            batch_size,
            padded_shapes=([None, None, 3], [None, None]),
            padding_values=(
                tf.constant(0, tf.uint8),
                tf.constant(ignore_class, tf.int32),
            ),
        )
    return dataset.prefetch(tf.data.AUTOTUNE)


def patch_pipeline(
    dataset,
    batch_size,
    patch_size,
    num_classes,
    ignore_class=255,
    patches_per_image=64,
    image_size=None,
    augment=False,
    shuffle=0,
    seed=0,
):
    """Batches of `(patches, labels)` for a patch classifier (`patch_cnn`).

    From each image (resized and augmented as `segmentation_pipeline`
    does), `patches_per_image` labelled pixels are drawn at random,
    reproducibly by `seed` and the image's position; each gives the
    `patch_size` square whose pixel `(patch_size // 2, patch_size // 2)` it
    is (zeros past the image border, as `DenseLabeller` labels densely with
    its default `padding="zero"`) and its class. Ignored pixels are never
    drawn; images without a labelled pixel give none.

    Args:
        dataset: unbatched dicts with `images` and `segmentation_masks`.
        batch_size: int. Patches per batch.
        patch_size: int. The classifier's (odd).
        num_classes: int.
        ignore_class: int or `None`.
        patches_per_image: int. Defaults to `64`.
        image_size: `(height, width)` or `None`: resize every image first.
        augment: bool. Random flip, scale and crop (needs `image_size`).
        shuffle: int. Shuffle buffer of the images, and of the patches.
        seed: int.

    Returns:
        A `tf.data.Dataset` of `(uint8 (B, P, P, 3), int32 (B,))`.
    """
    patch_size = check_int(patch_size, "patch_size")
    count = check_int(patches_per_image, "patches_per_image")
    images = segmentation_pipeline(
        dataset,
        1,
        num_classes,
        ignore_class,
        image_size=image_size,
        augment=augment,
        shuffle=shuffle,
        seed=seed,
    ).unbatch()
    half = patch_size // 2
    offsets = tf.range(patch_size, dtype=tf.int64)

    def labelled(image, mask):
        return tf.reduce_any(mask != ignore_class) if ignore_class is not None else True

    def sample(index, element):
        image, mask = element
        where = tf.where(mask != ignore_class if ignore_class is not None else mask >= 0)
        pick = tf.random.stateless_uniform(
            [count],
            tf.stack([tf.cast(seed, tf.int64), index]),
            0,
            tf.shape(where, tf.int64)[0],
            dtype=tf.int64,
        )
        centres = tf.gather(where, pick)
        padded = tf.pad(image, [[half, patch_size - 1 - half]] * 2 + [[0, 0]])
        rows = centres[:, 0:1] + offsets  # (count, P): padded rows of each patch
        cols = centres[:, 1:2] + offsets
        grid = tf.stack(
            [
                tf.broadcast_to(rows[:, :, None], [count, patch_size, patch_size]),
                tf.broadcast_to(cols[:, None, :], [count, patch_size, patch_size]),
            ],
            axis=-1,
        )
        return tf.gather_nd(padded, grid), tf.gather_nd(mask, centres)

    patches = images.filter(labelled).enumerate().map(sample, num_parallel_calls=tf.data.AUTOTUNE)
    patches = patches.unbatch()
    if shuffle:
        patches = patches.shuffle(max(int(shuffle), count * 8), seed=seed)
    return patches.batch(check_int(batch_size, "batch_size")).prefetch(tf.data.AUTOTUNE)


def _iter_masks(dataset_or_masks):
    if isinstance(dataset_or_masks, tf.data.Dataset):
        for element in dataset_or_masks.as_numpy_iterator():
            if isinstance(element, dict):
                element = element["segmentation_masks"]
            elif isinstance(element, tuple):
                element = element[1]
            yield from (element if element.ndim == 3 else [element])
    elif isinstance(dataset_or_masks, np.ndarray) and dataset_or_masks.ndim == 2:
        yield dataset_or_masks
    else:
        for mask in dataset_or_masks:
            yield np.asarray(mask)


def median_frequency_weights(dataset_or_masks, num_classes, ignore_class=255):
    """Computes SegNet's median frequency balancing class weights.

    `freq(c)` is the number of pixels of class `c` divided by the number of
    labelled (not ignored) pixels in the images where `c` is present, and
    `weight(c) = median(freq) / freq(c)` with the median over the classes
    present. Classes never present get weight 0 and a warning.

    Args:
        dataset_or_masks: A `tf.data.Dataset` (elements: dicts with
            `segmentation_masks`, `(images, masks)` tuples or masks,
            batched or not), an array `(N, H, W)` or a list of `(H, W)`
            masks.
        num_classes: int. Number of classes.
        ignore_class: int or `None`. Id left out of all counts. Defaults
            to `255`.

    Returns:
        A float32 numpy array of shape `(num_classes,)`.
    """
    class_pixels = np.zeros(num_classes, np.float64)
    present_total = np.zeros(num_classes, np.float64)
    for mask in _iter_masks(dataset_or_masks):
        mask = mask.reshape(-1).astype(np.int64)
        if ignore_class is not None:
            mask = mask[mask != ignore_class]
        check_segmentation_labels(mask, num_classes, ignore_class)
        counts = np.bincount(mask, minlength=num_classes)
        class_pixels += counts
        present_total += np.where(counts > 0, mask.size, 0)
    present = class_pixels > 0
    if not present.any():
        raise ValueError("No labelled pixels found; cannot compute class weights")
    if not present.all():
        warnings.warn(
            f"Classes {np.flatnonzero(~present).tolist()} never occur; "
            "their median frequency weight is set to 0",
            stacklevel=2,
        )
    freq = np.divide(class_pixels, present_total, out=np.zeros_like(class_pixels), where=present)
    weights = np.divide(np.median(freq[present]), freq, out=np.zeros_like(freq), where=present)
    return weights.astype(np.float32)


def shapes_split_options(split, options):
    """Options of the built-in shapes for one split: disjoint seeds per split
    (train, val, test) and 1,000 training or 200 held-out images by default."""
    splits = ("train", "val", "validation", "test")
    if split not in splits:
        raise ValueError(f"split for 'shapes' must be one of {splits}; got {split!r}")
    offset = {"train": 0, "val": 1, "validation": 1, "test": 2}[split]
    options = dict(options)
    options["seed"] = options.get("seed", 0) + offset * _SPLIT_SEED_OFFSET
    options.setdefault("num_images", 1000 if split == "train" else 200)
    return options


def __getattr__(name):
    # The generated kinds are the catalogue's to say, read when asked, since
    # datasets may be registered after this module is imported.
    if name == "GENERATED_DATASETS":
        return tuple(dict.fromkeys(e.kind for e in list_datasets(generated=True)))
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ---------------------------------------------------------------------------
# The segmentation datasets of the catalogue
# ---------------------------------------------------------------------------


@register_dataset("shapes", "segmentation", generated=True)
def _shapes(
    arg,
    split,
    num_images=None,
    image_size=64,
    max_instances=3,
    seed=0,
    instances=False,
    captions=False,
):
    """Procedural circles, squares and triangles (`shapes.shapes_dataset`)."""
    options = dict(
        image_size=image_size,
        max_instances=max_instances,
        seed=seed,
        instances=instances,
        captions=captions,
    )
    if num_images is not None:
        options["num_images"] = num_images
    dataset = shapes.shapes_dataset(**shapes_split_options(split, options))
    return dataset, DatasetInfo(shapes.NUM_CLASSES, 255, shapes.CLASS_NAMES, background_class=0)


@register_dataset("camvid", "segmentation", arg="<root>")
def _camvid(root, split):
    """CamVid in SegNet's layout (`folders.camvid_dataset`), 11 classes."""
    info = DatasetInfo(
        len(folders.CAMVID_CLASSES), folders.CAMVID_IGNORE_CLASS, folders.CAMVID_CLASSES
    )
    return folders.camvid_dataset(root, split), info


@register_dataset("voc", "segmentation", arg="<root>")
def _voc(root, split):
    """PASCAL VOC 2012 segmentation (`folders.voc_dataset`), 21 classes."""
    info = DatasetInfo(len(folders.VOC_CLASSES), folders.VOC_IGNORE_CLASS, folders.VOC_CLASSES, 0)
    return folders.voc_dataset(root, split), info


@register_dataset("tfds", "segmentation", arg="<name>")
def _tfds(name, split, data_dir=None):
    """A TensorFlow Datasets segmentation set (`oxford_iiit_pet`, `cityscapes`)."""
    info = DatasetInfo(*tfds_lib.tfds_dataset_info(name))
    return tfds_lib.tfds_segmentation_dataset(name, split, data_dir=data_dir), info


def load_segmentation_dataset(spec, split="train", **kwargs):
    """Resolves a segmentation dataset spec to `(dataset, info)`.

    `load_dataset("segmentation", spec, split, **kwargs)`: the accepted specs
    are those of `list_datasets("segmentation")`. Built in: `"shapes"`
    (procedural; kwargs `num_images` (default 1000 for train, 200
    otherwise), `image_size`, `max_instances`, `seed`, `instances`,
    `captions`; `"val"` and `"test"` use seeds disjoint from `"train"`),
    `"camvid:<root>"`, `"voc:<root>"` and `"tfds:<name>"` (kwarg
    `data_dir`).

    Args:
        spec: str. The dataset spec.
        split: str. Split name. Defaults to `"train"`.
        **kwargs: Options of the chosen source, as above.

    Returns:
        A tuple `(dataset, info)` with a `tf.data.Dataset` of dicts with
        `images` and `segmentation_masks`, and a `DatasetInfo`.

    Raises:
        ValueError: for an unknown spec or an option the source does not
            take (naming it and the spec), or what the source raises.

    Examples:
        >>> ds, info = load_segmentation_dataset("shapes", "val", num_images=2, image_size=32)
        >>> info.num_classes
        4
    """
    return load_dataset("segmentation", spec, split, **kwargs)
