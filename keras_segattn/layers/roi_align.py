"""RoIAlign and RoI max pooling, gather-based so that TFLite runs them.

Both read a `(batch, height, width, channels)` feature map at boxes given in
image pixels as `(x1, y1, x2, y2)`, `(batch, num_boxes, 4)`, and return
`(batch, num_boxes, out_h, out_w, channels)`. A box's feature-map coordinates
are its pixel coordinates times `spatial_scale`; feature cell `(i, j)` covers
`[j, j + 1) x [i, i + 1)` there, so its centre is at `(j + 0.5, i + 0.5)`.

RoIAlign has two formulations of the same numbers (see
`keras_segattn.core.kernels`): in TensorFlow, the fused
`tf.image.crop_and_resize` at `sampling_ratio` times the output size and an
average over each bin's samples; traced for TFLite, where that kernel needs
Flex, `GATHER`, `BATCH_MATMUL` and elementwise ops. RoI max pooling has no
fused kernel and is built from `GATHER` and `MAXIMUM` everywhere. Both modes
convert with builtin ops only, with a dynamic batch and number of boxes.
"""

import keras
import numpy as np
import tensorflow as tf

from keras_segattn.core.kernels import fused_kernels
from keras_segattn.core.precision import keep_float
from keras_segattn.core.validation import check_int, check_size

MODES = ("align", "max_pool")

# Max-pool box coordinates are clipped to this many feature cells either side
# of the origin before the int32 bin arithmetic, which then cannot overflow.
# It is far beyond any feature map, so no bin that overlaps the map moves.
_MAX_CELL = 2**16

_SAMPLING_HINT = (
    " (the adaptive sampling_ratio=0 of Detectron2 makes the number of samples depend on the "
    "data, which a static graph cannot gather)"
)


def _coordinate_dtype(dtype):
    # Pixel coordinates of large images lose whole cells in float16.
    return tf.float64 if dtype == tf.float64 else tf.float32


def _clamp(x, low, high):
    # Not tf.clip_by_value: on int32 with bounds 0 and 6 (or 0 and 1) the
    # TFLite converter fuses it into RELU6 (RELU_0_TO_1), which has no int32
    # kernel, so a 7-cell feature map would need Flex.
    return tf.where(x < low, low, tf.where(x > high, high, x))


def _check_spatial_scale(spatial_scale):
    try:
        value = float(spatial_scale)
    except (TypeError, ValueError):
        value = float("nan")
    if isinstance(spatial_scale, bool) or not np.isfinite(value) or value <= 0:
        raise ValueError(
            "spatial_scale must be a positive finite number (feature cells per image "
            f"pixel, e.g. 1/16); got spatial_scale={spatial_scale!r}."
        )
    return value


def _check_shapes(features_shape, boxes_shape):
    features_shape, boxes_shape = tuple(features_shape), tuple(boxes_shape)
    if len(features_shape) != 4:
        raise ValueError(
            "features must be 4-D (batch, height, width, channels); got features with "
            f"shape {features_shape}."
        )
    if len(boxes_shape) != 3 or boxes_shape[-1] not in (4, None):
        raise ValueError(
            "boxes must be (batch, num_boxes, 4) in (x1, y1, x2, y2) order; got boxes "
            f"with shape {boxes_shape}."
        )
    if None not in (features_shape[0], boxes_shape[0]) and features_shape[0] != boxes_shape[0]:
        raise ValueError(
            "features and boxes must have the same batch size; got features with shape "
            f"{features_shape} and boxes with shape {boxes_shape}."
        )


def _check_static_size(features_shape):
    height, width = tuple(features_shape)[1:3]
    if height is None or width is None:
        raise ValueError(
            "mode='max_pool' builds a range-maximum table whose depth depends on the "
            "feature map's height and width, so they must be static; got features with "
            f"shape {tuple(features_shape)}."
        )
    return int(height), int(width)


def _prepare(features, boxes):
    features = tf.convert_to_tensor(features)
    boxes = tf.convert_to_tensor(boxes)
    _check_shapes(features.shape, boxes.shape)
    if not features.dtype.is_floating:
        features = tf.cast(features, tf.float32)
    dtype = _coordinate_dtype(features.dtype)
    boxes = tf.cast(boxes, dtype)
    shape = tf.shape(features)
    channels = features.shape[-1] if features.shape[-1] is not None else shape[3]
    return features, boxes, dtype, shape[0], shape[1], shape[2], channels


def _image_offsets(batch, num_boxes, stride):
    """`(batch * num_boxes,)`: each box's image index times `stride`."""
    offsets = tf.range(batch)[:, None] * stride + tf.zeros([1, num_boxes], tf.int32)
    return tf.reshape(offsets, [batch * num_boxes])


def _align_axis(start, length, out_size, sampling_ratio, size, dtype):
    """Bilinear taps of one axis for every box, bin and sample.

    Returns int32 indices and weights of shape `(boxes, out_size, 2 *
    sampling_ratio)`: for each bin, the lower and upper neighbour of each
    of its samples, weighted by their share of the bilinear interpolation
    and by `1 / sampling_ratio` (the bin's average along this axis). The
    arithmetic follows Detectron2's `ROIAlign` CPU kernel step by step.
    """
    bin_size = (length / out_size)[:, None, None]
    bins = tf.cast(tf.range(out_size), dtype)[:, None]
    samples = (tf.cast(tf.range(sampling_ratio), dtype) + 0.5)[None, :]
    position = start[:, None, None] + bins * bin_size + samples * bin_size / sampling_ratio
    size_f = tf.cast(size, dtype)
    # Samples more than one cell outside the map read 0; those in [-1, 0)
    # read the border cell (Detectron2 clamps them to 0).
    inside = (position >= -1.0) & (position <= size_f)
    position = tf.clip_by_value(position, 0.0, size_f)
    low = tf.floor(position)
    at_end = low >= size_f - 1.0
    low = tf.where(at_end, size_f - 1.0, low)
    # On a cell centre (and at the end) both taps are that cell, so the
    # sample's derivative along the axis is 0 there, as crop_and_resize's is.
    high = tf.where(at_end | (position == low), low, low + 1.0)
    upper_weight = tf.where(at_end, tf.zeros_like(position), position - low)
    scale = tf.cast(inside, dtype) / sampling_ratio
    weights = tf.stack([(1.0 - upper_weight) * scale, upper_weight * scale], axis=-1)
    # The clip keeps a NaN coordinate, whose int cast is undefined, in range.
    indices = _clamp(tf.cast(tf.stack([low, high], axis=-1), tf.int32), 0, size - 1)
    shape = [-1, out_size, 2 * sampling_ratio]
    return tf.reshape(indices, shape), tf.reshape(weights, shape)


def _group_size(channels, num_groups):
    if isinstance(channels, int) and channels % num_groups:
        raise ValueError(
            f"features must have a multiple of num_groups={num_groups} channels (one equal "
            f"group per class); got {channels} channels."
        )
    return channels // num_groups


def roi_align(
    features,
    boxes,
    output_size=(14, 14),
    sampling_ratio=2,
    spatial_scale=1 / 16,
    aligned=True,
    groups=None,
    num_groups=None,
):
    """RoIAlign (He et al., "Mask R-CNN", ICCV 2017) of boxes on a feature map.

    Each box is split into `out_h x out_w` bins; each bin is the average of
    `sampling_ratio x sampling_ratio` regularly spaced bilinear samples, as
    Detectron2's `ROIAlign` computes it:

    - A box's feature coordinates are `pixel * spatial_scale - 0.5` with
      `aligned=True` (Detectron2's ROIAlignV2, which puts the sample grid on
      the cell centres) and `pixel * spatial_scale` with `aligned=False`.
    - Sample `k` of bin `i` lies at `start + i * bin + (k + 0.5) * bin /
      sampling_ratio`, where `bin = box size / out size`.
    - A sample further than one cell outside the map (below -1 or above the
      height or width) contributes 0; one in `[-1, 0]` is clamped to the
      first cell, one in `[size - 1, size]` to the last.
    - Degenerate boxes: with `aligned=False` a box's width and height are
      raised to at least 1 feature cell (Detectron2 does the same, "for
      backward compatibility"). With `aligned=True` a zero-size box is
      allowed and samples one point, as in Detectron2; a box with `x2 < x1`
      or `y2 < y1`, which Detectron2 rejects with an assertion, is treated
      here as the zero-size box at `(x1, y1)`, since a graph cannot raise on
      data.

    Class-specific pooling: with `num_groups` and `groups`, the channels
    are `num_groups` equal groups (group `g` in channels `g * G ... (g + 1)
    * G - 1`) and box `n` reads only group `groups[b, n]`, so the output
    has `G` channels. This equals pooling every channel and then picking
    the box's group, but gathers `num_groups` times less (Hypercolumns'
    per-class classifier scores on COCO: 80 groups). A group id outside
    `0 .. num_groups - 1` reads zeros: a graph cannot raise on data.

    Gradients flow to `features` through the bilinear weights (and to
    `boxes` through the weights' dependence on the coordinates, as with
    `tf.image.crop_and_resize`; Detectron2 gives boxes none, so wrap them
    in `tf.stop_gradient` to match it).

    In TensorFlow this runs the fused `tf.image.crop_and_resize` on the map
    padded by one border cell (which reproduces the clamping above) at
    `sampling_ratio` times the output size, then averages each bin's
    samples; with `num_groups`, on the map regrouped to one image per
    (image, group). Traced for TFLite, each box's `2 * sampling_ratio` rows
    times `2 * sampling_ratio` columns of taps per bin are read by a single
    `GATHER`, then weighted and summed along each axis by two
    `BATCH_MATMUL`s. The two agree to float rounding, gradients included.

    Args:
        features: float tensor `(batch, height, width, channels)`.
        boxes: float tensor `(batch, num_boxes, 4)`, `(x1, y1, x2, y2)` in
            image pixels.
        output_size: int or tuple `(out_h, out_w)`. Defaults to `(14, 14)`.
        sampling_ratio: int >= 1. Samples per bin along each axis. Defaults
            to `2`.
        spatial_scale: float. Feature cells per image pixel. Defaults to
            `1 / 16`.
        aligned: bool. Apply the half-cell offset. Defaults to `True`.
        groups: int tensor `(batch, num_boxes)` or `None`. Each box's
            channel group; needs `num_groups`. Defaults to `None`.
        num_groups: int or `None`. Equal channel groups of `features`;
            `None` reads every channel. Defaults to `None`.

    Returns:
        A `(batch, num_boxes, out_h, out_w, channels)` tensor of the dtype of
        `features` (`channels / num_groups` channels with `groups`).

    Examples:
        >>> features = np.arange(16, dtype="float32").reshape(1, 4, 4, 1)
        >>> boxes = np.array([[[0.0, 0.0, 4.0, 4.0]]], "float32")
        >>> out = roi_align(features, boxes, output_size=2, spatial_scale=1.0)
        >>> out.numpy()[0, 0, :, :, 0]
        array([[ 2.5,  4.5],
               [10.5, 12.5]], dtype=float32)
    """
    out_h, out_w = check_size(output_size, "output_size")
    sampling_ratio = check_int(sampling_ratio, "sampling_ratio", hint=_SAMPLING_HINT)
    spatial_scale = _check_spatial_scale(spatial_scale)
    num_groups = check_int(num_groups, "num_groups", none_ok=True)
    if (groups is None) != (num_groups is None):
        raise ValueError(
            "groups and num_groups go together (class-specific pooling); got "
            f"groups={'None' if groups is None else 'a tensor'} and num_groups={num_groups!r}."
        )
    features, boxes, dtype, batch, height, width, channels = _prepare(features, boxes)
    num_boxes = tf.shape(boxes)[1]
    total = batch * num_boxes

    # The boxes' arithmetic in float in an int8 file: the finiteness test
    # compares with the largest float, which no int8 scale holds.
    with keep_float():
        boxes, finite = _finite_boxes(tf.reshape(boxes, [total, 4]))
        scaled = boxes * tf.constant(spatial_scale, dtype)
        if aligned:
            scaled = scaled - 0.5
        x1, y1, x2, y2 = tf.unstack(scaled, axis=-1)
        smallest = 0.0 if aligned else 1.0
        box_w = tf.maximum(x2 - x1, smallest)
        box_h = tf.maximum(y2 - y1, smallest)
    if fused_kernels() and features.dtype != tf.float64:
        pooled = _crop_and_resize_align(
            features,
            (batch, num_boxes, height, width, channels),
            (x1, y1, box_w, box_h),
            finite,
            (out_h, out_w),
            sampling_ratio,
            groups,
            num_groups,
        )
        if num_groups is not None:
            channels = _group_size(channels, num_groups)
        return tf.reshape(pooled, [batch, num_boxes, out_h, out_w, channels])
    # The taps in float in an int8 file: quantised on one scale with the
    # pixel coordinates they come from, weights below one would read 0.
    with keep_float():
        rows, row_weights = _align_axis(y1, box_h, out_h, sampling_ratio, height, dtype)
        cols, col_weights = _align_axis(x1, box_w, out_w, sampling_ratio, width, dtype)

    taps = 2 * sampling_ratio
    first = tf.reshape(_image_offsets(batch, num_boxes, height * width), [total, 1, 1, 1])
    index = first + rows[..., None] * width + tf.reshape(cols, [total, 1, 1, out_w * taps])
    if num_groups is None:
        flat = tf.reshape(features, [batch * height * width, channels])
    else:
        channels = _group_size(channels, num_groups)
        flat = tf.reshape(features, [batch * height * width * num_groups, channels])
        group = tf.reshape(tf.cast(groups, tf.int32), [total])
        valid = (group >= 0) & (group < num_groups)
        group = tf.reshape(_clamp(group, 0, num_groups - 1), [total, 1, 1, 1])
        index = index * num_groups + group
        row_weights = row_weights * tf.cast(valid, dtype)[:, None, None]
    # A non-finite box reads nothing: zero output, zero gradient to the map.
    with keep_float():
        row_weights = row_weights * tf.cast(finite, dtype)[:, None, None]
    # (boxes, out_h, taps, out_w * taps, channels)
    gathered = tf.gather(flat, index)
    weights_dtype = features.dtype
    # Rows: (boxes * out_h, 1, taps) @ (boxes * out_h, taps, out_w * taps * channels).
    by_row = tf.matmul(
        tf.reshape(tf.cast(row_weights, weights_dtype), [total * out_h, 1, taps]),
        tf.reshape(gathered, [total * out_h, taps, out_w * taps * channels]),
    )
    # Columns: (boxes * out_h * out_w, 1, taps) @ (..., taps, channels).
    col_weights = tf.broadcast_to(
        tf.cast(col_weights, weights_dtype)[:, None], [total, out_h, out_w, taps]
    )
    pooled = tf.matmul(
        tf.reshape(col_weights, [total * out_h * out_w, 1, taps]),
        tf.reshape(by_row, [total * out_h * out_w, taps, channels]),
    )
    return tf.reshape(pooled, [batch, num_boxes, out_h, out_w, channels])


def _crop_and_resize_align(
    features, sizes, box, finite, output_size, sampling_ratio, groups, num_groups
):
    """`roi_align` by the fused `tf.image.crop_and_resize`, `(boxes, h, w, c)`.

    Along an axis of `n = out * sampling_ratio` samples, sample `j` lies at
    `start + (j + 0.5) * length / n`: `crop_and_resize` places `n` samples
    evenly from the first to the last. The map is padded by one copy of its
    border cells, so a sample in `[-1, 0]` or `[size - 1, size]` reads the
    border cell (as the gather formulation clamps it) and one further out
    reads `extrapolation_value` 0.
    """
    batch, num_boxes, height, width, channels = sizes
    x1, y1, box_w, box_h = box
    out_h, out_w = output_size

    def ends(start, length, samples, size):
        # Positions in the padded map, normalised by its last index (size + 1).
        step = length / samples
        last_index = tf.cast(size + 1, start.dtype)
        first = (start + 0.5 * step + 1.0) / last_index
        last = (start + (samples - 0.5) * step + 1.0) / last_index
        return first, last

    ya, yb = ends(y1, box_h, out_h * sampling_ratio, height)
    xa, xb = ends(x1, box_w, out_w * sampling_ratio, width)
    crops = tf.cast(tf.stack([ya, xa, yb, xb], axis=-1), tf.float32)
    image = _image_offsets(batch, num_boxes, 1)
    keep = finite
    maps = features
    if num_groups is not None:
        # One image per (image, group): box n reads image * G + its group.
        channels = _group_size(channels, num_groups)
        maps = tf.reshape(maps, [batch, height, width, num_groups, channels])
        maps = tf.reshape(
            tf.transpose(maps, [0, 3, 1, 2, 4]), [batch * num_groups, height, width, channels]
        )
        group = tf.reshape(tf.cast(groups, tf.int32), [-1])
        keep = keep & (group >= 0) & (group < num_groups)
        image = image * num_groups + _clamp(group, 0, num_groups - 1)
    # Sampled in float32 (crop_and_resize returns float32 anyway, and not
    # every build has its bfloat16 kernel).
    padded = tf.pad(tf.cast(maps, tf.float32), [[0, 0], [1, 1], [1, 1], [0, 0]], mode="SYMMETRIC")
    samples = (out_h * sampling_ratio, out_w * sampling_ratio)
    sampled = crop_and_resize(padded, crops, image, samples)
    if sampling_ratio > 1:
        sampled = tf.nn.avg_pool2d(sampled, sampling_ratio, sampling_ratio, "VALID")
    # A non-finite box (or a group out of range) reads nothing: zero output,
    # zero gradient to the map.
    sampled = sampled * tf.cast(keep, tf.float32)[:, None, None, None]
    return tf.cast(sampled, features.dtype)


def crop_and_resize(image, boxes, box_indices, crop_size):
    """`tf.image.crop_and_resize` (bilinear, extrapolation 0) with a
    deterministic gradient to the image.

    TensorFlow's CPU gradient to the image (`CropAndResizeGradImage`) shards
    the boxes over threads that add into the same pixels without
    synchronisation (tensorflow/tensorflow#42033): where boxes overlap,
    updates are lost at random. Here the fused kernel computes the crops and
    the gradient to the boxes (`CropAndResizeGradBoxes`, one box per
    thread, no shared output), and the gradient to the image is each
    sample's four bilinear weights times its incoming gradient, added into
    the image by `tf.math.unsorted_segment_sum`, whose CPU kernel adds in a
    fixed order: the same numbers every time, on any number of threads.

    Args:
        image: float32 `(batch, height, width, channels)`.
        boxes: float32 `(num_boxes, 4)`, normalised `(y1, x1, y2, x2)`.
        box_indices: int32 `(num_boxes,)`, each box's image.
        crop_size: `(crop_height, crop_width)` Python ints.

    Returns:
        float32 `(num_boxes, crop_height, crop_width, channels)`.
    """
    crop_h, crop_w = crop_size

    @tf.custom_gradient
    def crop(image, boxes):
        crops = tf.image.crop_and_resize(image, boxes, box_indices, [crop_h, crop_w])

        def gradient(upstream):
            to_image = _crop_and_resize_image_gradient(
                upstream, tf.shape(image), boxes, box_indices, crop_h, crop_w
            )
            to_boxes = tf.raw_ops.CropAndResizeGradBoxes(
                grads=upstream, image=image, boxes=boxes, box_ind=box_indices
            )
            return to_image, to_boxes

        return crops, gradient

    return crop(image, boxes)


def _crop_taps(start, end, crops, size):
    """One axis of `crop_and_resize`'s sampling, as its kernel computes it:
    the lower and upper pixel of each sample, `(boxes, crops)` int32, the
    upper one's weight, and whether the sample lies inside the image."""
    last = tf.cast(size - 1, tf.float32)
    if crops > 1:
        scale = (end - start) * last / (crops - 1)
        steps = tf.range(crops, dtype=tf.float32)[None, :]
        position = start[:, None] * last + steps * scale[:, None]
    else:
        position = (0.5 * (start + end) * last)[:, None]
    inside = (position >= 0.0) & (position <= last)
    low = tf.floor(position)
    high = tf.math.ceil(position)
    weight = position - low
    # Outside the image the taps are never used (their weights are 0 there).
    low = _clamp(tf.cast(tf.where(inside, low, 0.0), tf.int32), 0, size - 1)
    high = _clamp(tf.cast(tf.where(inside, high, 0.0), tf.int32), 0, size - 1)
    return low, high, weight, inside


def _crop_and_resize_image_gradient(upstream, image_shape, boxes, box_indices, crop_h, crop_w):
    """The gradient of `crop_and_resize` to its image, in a fixed order
    (`crop_and_resize`)."""
    batch, height, width, channels = tf.unstack(image_shape)
    y1, x1, y2, x2 = tf.unstack(boxes, axis=-1)
    top, bottom, y_weight, y_inside = _crop_taps(y1, y2, crop_h, height)
    left, right, x_weight, x_inside = _crop_taps(x1, x2, crop_w, width)
    # A sample outside the image is the extrapolation value: no gradient.
    y_inside, x_inside = tf.cast(y_inside, tf.float32), tf.cast(x_inside, tf.float32)
    first_row = tf.cast(box_indices, tf.int32)[:, None] * height
    total = batch * height * width
    # The taps are added in order, the first one starting the sum: added
    # into a tensor of zeros, the chain came out in a varying order (6 to 15
    # of 20 repeats on two threads differed in the last bits).
    image_gradient = None
    for rows, row_weight in ((top, (1.0 - y_weight) * y_inside), (bottom, y_weight * y_inside)):
        for cols, col_weight in ((left, (1.0 - x_weight) * x_inside), (right, x_weight * x_inside)):
            index = (first_row + rows)[:, :, None] * width + cols[:, None, :]
            weight = row_weight[:, :, None] * col_weight[:, None, :]
            tap = tf.math.unsorted_segment_sum(
                tf.reshape(upstream * weight[..., None], [-1, channels]),
                tf.reshape(index, [-1]),
                total,
            )
            image_gradient = tap if image_gradient is None else image_gradient + tap
    return tf.reshape(image_gradient, image_shape)


def _finite_boxes(boxes):
    """`(boxes with non-finite rows set to 0, which rows were finite)`.

    `|x| <= max float` is false for NaN and infinities, and is builtin in
    TFLite (`ABS`, `LESS_EQUAL`), unlike `tf.math.is_finite`.
    """
    largest = tf.constant(np.finfo(np.float32).max, boxes.dtype)
    finite = tf.reduce_all(tf.abs(boxes) <= largest, axis=-1)
    return tf.where(finite[:, None], boxes, tf.zeros_like(boxes)), finite


def _round_half_away_from_zero(x):
    # C's round(). floor(|x| + 0.5) would round 0.49999997 up in float32.
    magnitude = tf.abs(x)
    whole = tf.floor(magnitude)
    whole = whole + tf.cast(magnitude - whole >= 0.5, x.dtype)
    return tf.where(x < 0, -whole, whole)


def _pool_bins(start, end, out_size, size):
    """Cell ranges `[first, stop)` of each bin along one axis, `(boxes, out)`."""
    length = tf.maximum(end - start + 1, 1)
    bins = tf.range(out_size)[None, :]
    length = length[:, None]
    # floor(i * L / n) and ceil((i + 1) * L / n) in exact integer arithmetic.
    first = tf.math.floordiv(bins * length, out_size) + start[:, None]
    stop = tf.math.floordiv((bins + 1) * length + out_size - 1, out_size) + start[:, None]
    return _clamp(first, 0, size), _clamp(stop, 0, size)


def _range_max_taps(first, stop, size, levels):
    """Table level and the two (overlapping) starts covering `[first, stop)`.

    A range of `e >= 1` cells is the union of the `2^k`-cell ranges starting
    at `first` and at `stop - 2^k`, `k = floor(log2(e))`. Summed comparisons
    give `k` and `2^k` exactly, with no float `log2`.
    """
    extent = tf.maximum(stop - first, 1)
    level = tf.zeros_like(extent)
    width = tf.ones_like(extent)
    for k in range(1, levels):
        reached = tf.cast(extent >= 2**k, tf.int32)
        level += reached
        width += reached * 2 ** (k - 1)
    last = _clamp(stop - width, 0, size - 1)
    return level, _clamp(first, 0, size - 1), last


def _shift_max(table, axis, shift):
    # table[i] = max(table[i], table[i + shift]); the padded tail is never read.
    pad = [[0, 0]] * 4
    pad[axis] = [0, shift]
    begin = [0, 0, 0, 0]
    begin[axis] = shift
    shifted = tf.pad(tf.slice(table, begin, [-1, -1, -1, -1]), pad)
    return tf.maximum(table, shifted)


def roi_max_pool(features, boxes, output_size=(14, 14), spatial_scale=1 / 16):
    """RoI max pooling (Girshick, "Fast R-CNN", ICCV 2015) of boxes.

    What is computed, per box (the Caffe / `torchvision.ops.roi_pool`
    algorithm, with exact integer bin bounds):

    - The box is quantised to feature cells: `x1' = round(x1 *
      spatial_scale)` and likewise `y1', x2', y2'`, rounding halves away
      from zero (C's `round`); it covers cells `x1'..x2'` inclusive, so its
      width is `max(x2' - x1' + 1, 1)` cells (malformed boxes become 1x1).
    - Bin `i` of `n` along an axis of `L` cells covers cells
      `x1' + floor(i * L / n)` up to, not including, `x1' + ceil((i + 1) *
      L / n)`, clipped to the feature map. Bins overlap where `L` is not a
      multiple of `n` and repeat cells where `L < n`.
    - Each bin is the maximum over its cells; a bin with no cell inside the
      map (a box off the map) is 0.

    Caffe and torchvision compute the bin bounds in float32, which rounds
    across an integer for some sizes (a 57-cell box in 7 bins: its last bin
    ends at cell 58 instead of 57); these bounds are the exact ones.

    Each bin's maximum is 4 reads of a 2-D sparse table (range maxima of
    every power-of-two height and width, `(floor(log2 H) + 1) x (floor(log2
    W) + 1)` copies of the feature map), so the feature map's height and
    width must be static. The gradient of each bin goes to the cell that
    holds its maximum.

    Args:
        features: float tensor `(batch, height, width, channels)` with static
            height and width.
        boxes: float tensor `(batch, num_boxes, 4)`, `(x1, y1, x2, y2)` in
            image pixels.
        output_size: int or tuple `(out_h, out_w)`. Defaults to `(14, 14)`.
        spatial_scale: float. Feature cells per image pixel. Defaults to
            `1 / 16`.

    Returns:
        A `(batch, num_boxes, out_h, out_w, channels)` tensor of the dtype of
        `features`.
    """
    out_h, out_w = check_size(output_size, "output_size")
    spatial_scale = _check_spatial_scale(spatial_scale)
    features, boxes, dtype, batch, _, _, channels = _prepare(features, boxes)
    height, width = _check_static_size(features.shape)
    num_boxes = tf.shape(boxes)[1]
    total = batch * num_boxes

    scaled = tf.reshape(boxes, [total, 4]) * tf.constant(spatial_scale, dtype)
    scaled = tf.clip_by_value(scaled, -float(_MAX_CELL), float(_MAX_CELL))
    x1, y1, x2, y2 = tf.unstack(tf.cast(_round_half_away_from_zero(scaled), tf.int32), axis=-1)
    row_first, row_stop = _pool_bins(y1, y2, out_h, height)
    col_first, col_stop = _pool_bins(x1, x2, out_w, width)
    empty = (row_stop <= row_first)[:, :, None] | (col_stop <= col_first)[:, None, :]

    levels_h, levels_w = height.bit_length(), width.bit_length()
    row_level, row_a, row_b = _range_max_taps(row_first, row_stop, height, levels_h)
    col_level, col_a, col_b = _range_max_taps(col_first, col_stop, width, levels_w)

    # Level (kh, kw) holds the maxima of the 2^kh x 2^kw blocks at each cell.
    tables = []
    by_rows = features
    for kh in range(levels_h):
        if kh:
            by_rows = _shift_max(by_rows, 1, 2 ** (kh - 1))
        table = by_rows
        tables.append(table)
        for kw in range(1, levels_w):
            table = _shift_max(table, 2, 2 ** (kw - 1))
            tables.append(table)
    flat = tf.reshape(tf.stack(tables), [-1, channels])

    level = row_level[:, :, None] * levels_w + col_level[:, None, :]
    image = tf.reshape(_image_offsets(batch, num_boxes, 1), [total, 1, 1])
    plane = (level * batch + image) * height
    pooled = None
    for rows in (row_a, row_b):
        for cols in (col_a, col_b):
            index = (plane + rows[:, :, None]) * width + cols[:, None, :]
            value = tf.gather(flat, index)
            pooled = value if pooled is None else tf.maximum(pooled, value)
    pooled = tf.where(empty[..., None], tf.zeros_like(pooled), pooled)
    return tf.reshape(pooled, [batch, num_boxes, out_h, out_w, channels])


@keras.saving.register_keras_serializable(package="keras_segattn")
class RoIAlign(keras.layers.Layer):
    """Pools a fixed-size feature grid from every box: RoIAlign or RoI max pooling.

    The region feature extractor of Mask R-CNN-style instance segmentation
    (MNC, SDS, Hypercolumns): each box of image-pixel coordinates gets an
    `out_h x out_w` grid of features from a backbone feature map of stride
    `1 / spatial_scale`.

    - `mode="align"`: RoIAlign (He et al., "Mask R-CNN", ICCV 2017), exactly
      as Detectron2's `ROIAlign` (`aligned=True` is its ROIAlignV2). See
      `roi_align` for the sampling rule and degenerate boxes.
    - `mode="max_pool"`: RoI max pooling (Girshick, "Fast R-CNN", ICCV
      2015): the box quantised to feature cells, each bin the maximum over
      its cells, empty bins 0. Needs a static feature height and width;
      ignores `sampling_ratio` and `aligned`. See `roi_max_pool`.

    In TensorFlow `"align"` runs the fused `tf.image.crop_and_resize`;
    traced for TFLite both modes are built from gathers, builtin ops only,
    with a dynamic batch and number of boxes.

    Args:
        output_size: int or tuple `(out_h, out_w)`. Defaults to `(14, 14)`.
        sampling_ratio: int >= 1. Bilinear samples per bin along each axis
            (`"align"` only). Defaults to `2`.
        spatial_scale: float. Feature cells per image pixel, the inverse of
            the feature stride. Defaults to `1 / 16`.
        aligned: bool. Shift boxes by half a cell so that samples sit on the
            cell centres (`"align"` only). Defaults to `True`.
        mode: str. `"align"` or `"max_pool"`. Defaults to `"align"`.
        num_groups: int or `None`. Class-specific pooling (`"align"` only):
            the channels are `num_groups` equal groups and each box reads
            only its own group (see `roi_align`). Defaults to `None`.

    Call arguments:
        inputs: a list `[features, boxes]`, or `[features, boxes, groups]`
            with `num_groups`: `features` is `(batch, height, width,
            channels)`, `boxes` is `(batch, num_boxes, 4)` as `(x1, y1, x2,
            y2)` in image pixels, `groups` is `(batch, num_boxes)` int group
            ids `0 .. num_groups - 1`.

    Returns:
        A `(batch, num_boxes, out_h, out_w, channels)` tensor
        (`channels / num_groups` channels with `num_groups`).

    Examples:
        >>> features = keras.Input((38, 50, 256))
        >>> boxes = keras.Input((None, 4))
        >>> RoIAlign(output_size=7)([features, boxes]).shape
        (None, None, 7, 7, 256)
    """

    def __init__(
        self,
        output_size=(14, 14),
        sampling_ratio=2,
        spatial_scale=1 / 16,
        aligned=True,
        mode="align",
        num_groups=None,
        **kwargs,
    ):
        # Boxes are pixel coordinates: a float16 policy must not round them.
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}; got mode={mode!r}.")
        if not isinstance(aligned, (bool, np.bool_)):
            raise ValueError(f"aligned must be a bool; got aligned={aligned!r}.")
        self.output_size = check_size(output_size, "output_size")
        self.sampling_ratio = check_int(sampling_ratio, "sampling_ratio", hint=_SAMPLING_HINT)
        self.spatial_scale = _check_spatial_scale(spatial_scale)
        self.aligned = bool(aligned)
        self.mode = mode
        self.num_groups = check_int(num_groups, "num_groups", none_ok=True)
        if self.num_groups is not None and mode != "align":
            raise ValueError(
                f"num_groups (class-specific pooling) needs mode='align'; got mode={mode!r}."
            )

    def _expected_inputs(self):
        return "[features, boxes, groups]" if self.num_groups else "[features, boxes]"

    def build(self, input_shape):
        count = 3 if self.num_groups else 2
        if not isinstance(input_shape, (list, tuple)) or len(input_shape) != count:
            raise ValueError(
                f"RoIAlign expects inputs {self._expected_inputs()}; got input shape {input_shape}."
            )
        _check_shapes(input_shape[0], input_shape[1])
        if self.num_groups:
            _group_size(input_shape[0][-1], self.num_groups)
            if len(input_shape[2]) != 2:
                raise ValueError(
                    f"groups must be (batch, num_boxes); got groups with shape {input_shape[2]}."
                )
        if self.mode == "max_pool":
            _check_static_size(input_shape[0])

    def call(self, inputs):
        features, boxes = inputs[:2]
        features = tf.cast(features, self.compute_dtype)
        if self.mode == "max_pool":
            return roi_max_pool(features, boxes, self.output_size, self.spatial_scale)
        return roi_align(
            features,
            boxes,
            self.output_size,
            self.sampling_ratio,
            self.spatial_scale,
            self.aligned,
            groups=inputs[2] if self.num_groups else None,
            num_groups=self.num_groups,
        )

    def compute_output_shape(self, input_shape):
        features_shape, boxes_shape = input_shape[:2]
        channels = features_shape[3]
        if self.num_groups and channels is not None:
            channels //= self.num_groups
        return (boxes_shape[0], boxes_shape[1], *self.output_size, channels)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "output_size": self.output_size,
                "sampling_ratio": self.sampling_ratio,
                "spatial_scale": self.spatial_scale,
                "aligned": self.aligned,
                "mode": self.mode,
                "num_groups": self.num_groups,
            }
        )
        return config
