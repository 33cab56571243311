"""Anchors, box coding and anchor labelling of a region proposal network.

Faster R-CNN's RPN (Ren et al., NIPS 2015) places `k` reference boxes, the
anchors, at every position of a stride-16 feature map, classifies each as
object or not and regresses a box relative to it. MNC's first stage (Dai,
He and Sun, CVPR 2016) is the same RPN with 12 anchors. This module holds
the pieces that are not learnt:

- `AnchorGenerator`: the anchors of a feature map, as a Keras layer.
- `encode_boxes` / `decode_boxes`: the `(dx, dy, dw, dh)` parametrisation.
- `box_iou`: pairwise IoU.
- `match_anchors`: labels every anchor 1 (object), 0 (background) or -1
  (ignored) and gives its ground-truth box.
- `sample_anchors`: the random 256-anchor minibatch, at most half positive.

Boxes are `"xyxy"` `[x1, y1, x2, y2]` in image pixels, pixel edges as in
`keras_segattn.data.shapes` (a box covering columns 0..15 is `[0, 16]`), so
a box's width is `x2 - x1`, without the `+ 1` of the original Caffe code
(Detectron2 dropped it too).
"""

import math

import keras
import numpy as np
import tensorflow as tf
from keras.utils import bounding_boxes as keras_boxes

FASTER_RCNN_SCALES = (128, 256, 512)
MNC_SCALES = (64, 128, 256, 512)
DEFAULT_ASPECT_RATIOS = (0.5, 1.0, 2.0)
# Detectron's limit on dw and dh when decoding: no box grows more than
# 1000 / 16 times its anchor, so exp() cannot overflow early in training.
BBOX_XFORM_CLIP = math.log(1000.0 / 16)


def _positive_numbers(values, name):
    try:
        values = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a sequence of positive numbers; got {values!r}") from None
    if not values or any(not v > 0 or not math.isfinite(v) for v in values):
        raise ValueError(f"{name} must be a non-empty sequence of positive numbers; got {values!r}")
    return values


@keras.saving.register_keras_serializable(package="keras_segattn")
class AnchorGenerator(keras.layers.Layer):
    """The anchors of a feature map, Faster R-CNN style.

    Every feature-map position `(y, x)` gets `k = len(aspect_ratios) *
    len(scales)` anchors centred on the image point `((x + 0.5) * stride,
    (y + 0.5) * stride)`: the centre of the `stride` x `stride` block of
    pixels the position stands for, with pixel edges at integers as in the
    rest of the package (Detectron2's `offset=0.5`; py-faster-rcnn centres
    its anchors at `x * stride + 7.5` in its `+ 1` pixel convention, which
    is the same point). The anchor of scale `s` and aspect ratio `r`
    (height / width) has area `s ** 2`: width `s / sqrt(r)` and height
    `s * sqrt(r)`, not rounded (py-faster-rcnn rounds them to integers).

    The output is ordered position-major, row by row, then by anchor with
    the aspect ratio outer and the scale inner (py-faster-rcnn's order):
    anchor `a` of position `(y, x)` is row `(y * w + x) * k + a`. A head
    whose output is `(B, h, w, k * 4)` reshaped to `(B, h * w * k, 4)`
    lines up with it.

    Only the shape of the input is used, and `h` and `w` may be dynamic.
    The output has no batch axis (every image of a batch shares it), so
    use the layer inside a model's graph; `model.predict` over several
    batches would concatenate the anchors of each. The ops are TFLite
    builtins.

    Args:
        scales: sequence of float. Anchor side lengths `sqrt(area)` in
            image pixels. Defaults to `(128, 256, 512)` (Faster R-CNN's
            scales 8, 16, 32 times the base size 16).
        aspect_ratios: sequence of float. Height / width ratios. Defaults
            to `(0.5, 1.0, 2.0)`.
        stride: int. Image pixels per feature-map position. Defaults to
            `16` (VGG-16 conv5_3).
        **kwargs: Base layer keyword arguments.

    Returns:
        A float32 tensor `(h * w * k, 4)` of `"xyxy"` anchors in image
        pixels, for an input `(B, h, w, C)`. Anchors near the border
        extend past the image; `match_anchors(image_size=...)` ignores
        those during training.

    Raises:
        ValueError: if a scale or ratio is not positive, or `stride` is
            not a positive integer.

    Examples:
        >>> anchors = AnchorGenerator()(np.zeros((1, 2, 3, 8), "float32"))
        >>> anchors.shape
        TensorShape([54, 4])
        >>> AnchorGenerator.mnc().num_anchors
        12
    """

    def __init__(
        self,
        scales=FASTER_RCNN_SCALES,
        aspect_ratios=DEFAULT_ASPECT_RATIOS,
        stride=16,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.scales = _positive_numbers(scales, "scales")
        self.aspect_ratios = _positive_numbers(aspect_ratios, "aspect_ratios")
        if isinstance(stride, bool) or int(stride) != stride or int(stride) < 1:
            raise ValueError(f"stride must be a positive integer; got stride={stride!r}")
        self.stride = int(stride)

    @classmethod
    def faster_rcnn(cls, **kwargs):
        """Faster R-CNN's 9 anchors: scales 128, 256, 512 x ratios 0.5, 1, 2."""
        return cls(FASTER_RCNN_SCALES, DEFAULT_ASPECT_RATIOS, 16, **kwargs)

    @classmethod
    def mnc(cls, **kwargs):
        """MNC's 12 anchors: scales 64, 128, 256, 512 x ratios 0.5, 1, 2.

        The MNC paper gives 12 anchors without listing them; these are
        Faster R-CNN's plus the scale 64 below them (scales 4, 8, 16, 32 of
        base 16). The authors' released code uses Faster R-CNN's 9.
        """
        return cls(MNC_SCALES, DEFAULT_ASPECT_RATIOS, 16, **kwargs)

    @property
    def num_anchors(self):
        """Anchors per feature-map position, `k`."""
        return len(self.scales) * len(self.aspect_ratios)

    def base_anchors(self):
        """The `k` anchors of one position, centred on `(0, 0)`, `(k, 4)` float32."""
        boxes = []
        for ratio in self.aspect_ratios:
            for scale in self.scales:
                width = scale / math.sqrt(ratio)
                height = scale * math.sqrt(ratio)
                boxes.append([-width / 2, -height / 2, width / 2, height / 2])
        return np.array(boxes, np.float32)

    def call(self, inputs):
        shape = tf.shape(inputs)
        height, width = shape[1], shape[2]
        stride = float(self.stride)
        xs = (tf.cast(tf.range(width), tf.float32) + 0.5) * stride
        ys = (tf.cast(tf.range(height), tf.float32) + 0.5) * stride
        cx = tf.broadcast_to(xs[None, :], tf.stack([height, width]))
        cy = tf.broadcast_to(ys[:, None], tf.stack([height, width]))
        centres = tf.reshape(tf.stack([cx, cy, cx, cy], axis=-1), [-1, 1, 4])
        anchors = centres + tf.constant(self.base_anchors())[None]
        return tf.reshape(anchors, [-1, 4])

    def compute_output_shape(self, input_shape):
        height, width = input_shape[1], input_shape[2]
        count = None if height is None or width is None else height * width * self.num_anchors
        return (count, 4)

    def compute_output_spec(self, inputs):
        return keras.KerasTensor(self.compute_output_shape(inputs.shape), dtype="float32")

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "scales": list(self.scales),
                "aspect_ratios": list(self.aspect_ratios),
                "stride": self.stride,
            }
        )
        return config


def _box_weights(weights):
    weights = _positive_numbers(weights, "weights")
    if len(weights) != 4:
        raise ValueError(f"weights must be 4 positive numbers (wx, wy, ww, wh); got {weights!r}")
    return weights


def encode_boxes(boxes, anchors, weights=(1.0, 1.0, 1.0, 1.0)):
    """Encodes boxes as Faster R-CNN regression targets relative to anchors.

    With anchor centre `(xa, ya)` and size `(wa, ha)` and box centre and
    size `(x, y, w, h)`: `dx = wx * (x - xa) / wa`, `dy = wy * (y - ya) /
    ha`, `dw = ww * log(w / wa)`, `dh = wh * log(h / ha)`. It is
    `keras.utils.bounding_boxes.encode_box_to_deltas` with
    `encoding_format="center_xywh"` and `variance = 1 / weights`. Sizes
    below `keras.config.epsilon()` are raised to it, so a degenerate
    (padding) box gives finite deltas.

    Args:
        boxes: float tensor `(N, 4)` or `(B, N, 4)`, `"xyxy"` pixels.
        anchors: float tensor `(N, 4)`, `"xyxy"` pixels.
        weights: 4 floats `(wx, wy, ww, wh)`. Defaults to `(1, 1, 1, 1)`,
            the RPN's; Detectron's Fast R-CNN head uses `(10, 10, 5, 5)`.

    Returns:
        float32 deltas `(dx, dy, dw, dh)`, the shape of `boxes`.

    Raises:
        ValueError: if `weights` is not 4 positive numbers.

    Examples:
        >>> anchors = np.array([[0.0, 0.0, 16.0, 16.0]], "float32")
        >>> deltas = encode_boxes(np.array([[4.0, 0.0, 20.0, 32.0]], "float32"), anchors)
        >>> np.asarray(deltas, 'float64').round(4).tolist()
        [[0.25, 0.5, 0.0, 0.6931]]
    """
    weights = _box_weights(weights)
    variance = [1.0 / w for w in weights]
    return keras_boxes.encode_box_to_deltas(
        anchors,
        boxes,
        anchor_format="xyxy",
        box_format="xyxy",
        encoding_format="center_xywh",
        variance=variance,
    )


def decode_boxes(
    deltas,
    anchors,
    weights=(1.0, 1.0, 1.0, 1.0),
    clip_value=BBOX_XFORM_CLIP,
    image_size=None,
):
    """Applies Faster R-CNN regression deltas to anchors; inverse of `encode_boxes`.

    The deltas are divided by `weights`, `dw` and `dh` are clipped at
    `clip_value` (Detectron's `log(1000 / 16)`) and the result goes
    through `keras.utils.bounding_boxes.decode_deltas_to_boxes`
    (`encoded_format="center_xywh"`).

    Args:
        deltas: float tensor `(N, 4)` or `(B, N, 4)` of `(dx, dy, dw, dh)`.
        anchors: float tensor `(N, 4)`, `"xyxy"` pixels.
        weights: 4 floats `(wx, wy, ww, wh)`, as given to `encode_boxes`.
            Defaults to `(1, 1, 1, 1)`.
        clip_value: float or `None`. Upper limit of `dw` and `dh` after
            dividing by the weights; `None` does not clip. Defaults to
            `log(1000 / 16)`.
        image_size: `(height, width)` or `None`. If given, the boxes are
            clipped to the image, as py-faster-rcnn does with proposals.
            Defaults to `None`.

    Returns:
        float32 `"xyxy"` boxes, the shape of `deltas`.

    Raises:
        ValueError: if `weights` is not 4 positive numbers.

    Examples:
        >>> anchors = np.array([[0.0, 0.0, 16.0, 16.0]], "float32")
        >>> boxes = decode_boxes(np.array([[0.25, 0.5, 0.0, 0.6931472]], "float32"), anchors)
        >>> np.asarray(boxes, 'float64').round(3).tolist()
        [[4.0, 0.0, 20.0, 32.0]]
    """
    weights = _box_weights(weights)
    deltas = tf.cast(deltas, tf.float32) / tf.constant(weights, tf.float32)
    if clip_value is not None:
        offsets, sizes = deltas[..., :2], deltas[..., 2:]
        deltas = tf.concat([offsets, tf.minimum(sizes, float(clip_value))], axis=-1)
    boxes = keras_boxes.decode_deltas_to_boxes(
        tf.cast(anchors, tf.float32),
        deltas,
        anchor_format="xyxy",
        box_format="xyxy",
        encoded_format="center_xywh",
    )
    if image_size is not None:
        height, width = _image_hw(image_size)
        upper = tf.stack([width, height, width, height])
        boxes = tf.clip_by_value(boxes, 0.0, upper)
    return boxes


def _image_hw(image_size):
    if isinstance(image_size, (tf.Tensor, np.ndarray)):
        size = tf.cast(tf.reshape(image_size, [-1])[:2], tf.float32)
        return size[0], size[1]
    try:
        height, width = image_size
    except (TypeError, ValueError):
        raise ValueError(f"image_size must be a (height, width) pair; got {image_size!r}") from None
    return tf.cast(height, tf.float32), tf.cast(width, tf.float32)


def box_iou(boxes1, boxes2):
    """Pairwise intersection over union of two sets of `"xyxy"` boxes.

    `keras.utils.bounding_boxes.compute_iou` (union plus
    `keras.config.epsilon()`, so two empty boxes have IoU 0).

    Args:
        boxes1: float tensor `(N, 4)` or `(B, N, 4)`.
        boxes2: float tensor `(M, 4)` or `(B, M, 4)`.

    Returns:
        float32 IoU `(N, M)`, or `(B, N, M)` if either input is batched.

    Examples:
        >>> a = np.array([[0.0, 0.0, 16.0, 16.0]], "float32")
        >>> b = np.array([[8.0, 0.0, 24.0, 16.0], [32.0, 32.0, 40.0, 40.0]], "float32")
        >>> np.asarray(box_iou(a, b), 'float64').round(4).tolist()
        [[0.3333, 0.0]]
    """
    return keras_boxes.compute_iou(
        tf.cast(boxes1, tf.float32), tf.cast(boxes2, tf.float32), bounding_box_format="xyxy"
    )


def _check_thresholds(positive_iou, negative_iou):
    if not 0.0 <= negative_iou <= positive_iou <= 1.0:
        raise ValueError(
            "Expected 0 <= negative_iou <= positive_iou <= 1; got "
            f"negative_iou={negative_iou!r}, positive_iou={positive_iou!r}"
        )


def anchors_inside(anchors, image_size, allowed_border=0.0):
    """Whether each anchor lies within the image, up to `allowed_border` pixels.

    py-faster-rcnn's `_allowed_border` test: `x1 >= -border`, `y1 >=
    -border`, `x2 <= width + border`, `y2 <= height + border`.

    Args:
        anchors: float tensor `(A, 4)`, `"xyxy"` pixels.
        image_size: `(height, width)` of the image, ints or scalar tensors.
        allowed_border: float. How far an anchor may cross the border.
            Defaults to `0`.

    Returns:
        bool tensor `(A,)`.

    Examples:
        >>> anchors = np.array([[-8.0, 0.0, 8.0, 16.0], [0.0, 0.0, 16.0, 16.0]], "float32")
        >>> np.asarray(anchors_inside(anchors, (16, 16))).tolist()
        [False, True]
    """
    height, width = _image_hw(image_size)
    anchors = tf.cast(anchors, tf.float32)
    border = float(allowed_border)
    return (
        (anchors[:, 0] >= -border)
        & (anchors[:, 1] >= -border)
        & (anchors[:, 2] <= width + border)
        & (anchors[:, 3] <= height + border)
    )


def match_anchors(
    anchors,
    gt_boxes,
    gt_valid=None,
    positive_iou=0.7,
    negative_iou=0.3,
    allow_low_quality_matches=True,
    image_size=None,
    allowed_border=0.0,
):
    """Labels anchors for RPN training with Faster R-CNN's rule.

    An anchor is positive (1) if its highest IoU with a valid ground-truth
    box is at least `positive_iou`, or if it is (one of, with ties) the
    anchors of highest IoU for some ground-truth box (so every box gets an
    anchor, however badly it fits; `allow_low_quality_matches`). It is
    negative (0) if its highest IoU is below `negative_iou` and it is not
    positive, and ignored (-1) otherwise. This is py-faster-rcnn's
    `anchor_target_layer` with `RPN_CLOBBER_POSITIVES = False`, and
    Detectron2's `Matcher([0.3, 0.7], [0, -1, 1], allow_low_quality_matches=True)`.
    One guard both lack: a ground-truth box that overlaps no anchor at all
    (its best IoU is 0) claims no anchor, instead of every anchor.

    Invalid ground truth (padding; `gt_valid` False) is never matched: an
    image whose boxes are all padding, or that has none (`N = 0`), gets
    all its anchors negative. With `image_size`, anchors crossing the image
    border by more than `allowed_border` are ignored (-1) and left out of
    the matching, as in Faster R-CNN training (which ignores about two
    thirds of a 1000 x 600 image's anchors that way); without it every
    anchor takes part (Detectron2's default, `BOUNDARY_THRESH = -1`).

    Args:
        anchors: float tensor `(A, 4)`, `"xyxy"` pixels.
        gt_boxes: float tensor `(N, 4)` or `(B, N, 4)`, `"xyxy"` pixels.
        gt_valid: bool tensor `(N,)` or `(B, N)`, or `None`. Which boxes are
            real, e.g. `bounding_boxes["labels"] >= 0` for the package's
            -1 padding. `None` counts a box as valid if it has positive
            width and height (a box of -1s does not). Defaults to `None`.
        positive_iou: float. Defaults to `0.7`.
        negative_iou: float. Defaults to `0.3`.
        allow_low_quality_matches: bool. Make each box's best anchors
            positive. Defaults to `True`.
        image_size: `(height, width)` or `None`. Enables the border test.
            Defaults to `None`.
        allowed_border: float. Pixels an anchor may cross the border by.
            Defaults to `0` (py-faster-rcnn's `_allowed_border`).

    Returns:
        A tuple `(labels, matched_gt)` of int32 tensors `(A,)` (or `(B,
        A)`): the labels 1 / 0 / -1 and, per anchor, the index of the
        valid box of highest IoU (the first on ties), or -1 where the
        anchor overlaps none or is outside the image. Every positive anchor
        has `matched_gt >= 0`; gather regression targets with
        `tf.maximum(matched_gt, 0)` and mask them with `labels == 1`.

    Raises:
        ValueError: if the thresholds are not `0 <= negative_iou <=
            positive_iou <= 1`.

    Examples:
        >>> anchors = AnchorGenerator((16,), (1.0,), 16)(np.zeros((1, 1, 3, 1)))
        >>> gt = np.array([[20.0, 0.0, 36.0, 16.0]], "float32")
        >>> labels, matched = match_anchors(anchors, gt)
        >>> np.asarray(labels).tolist(), np.asarray(matched).tolist()
        ([0, 1, 0], [-1, 0, 0])
    """
    positive_iou, negative_iou = float(positive_iou), float(negative_iou)
    _check_thresholds(positive_iou, negative_iou)
    anchors = tf.cast(anchors, tf.float32)
    gt_boxes = tf.cast(gt_boxes, tf.float32)
    if gt_valid is None:
        gt_valid = (gt_boxes[..., 2] > gt_boxes[..., 0]) & (gt_boxes[..., 3] > gt_boxes[..., 1])
    gt_valid = tf.cast(gt_valid, tf.bool)

    iou = box_iou(anchors, gt_boxes)  # (..., A, N)
    usable = gt_valid[..., None, :]
    if image_size is not None:
        inside = anchors_inside(anchors, image_size, allowed_border)
        usable = usable & inside[:, None]
    else:
        inside = tf.ones(tf.shape(anchors)[:1], tf.bool)
    iou = tf.where(usable, iou, -1.0)

    # A column of -1 makes max and argmax defined when there is no box.
    sentinel = -tf.ones(tf.concat([tf.shape(iou)[:-1], [1]], axis=0), tf.float32)
    padded = tf.concat([iou, sentinel], axis=-1)
    best_iou = tf.reduce_max(padded, axis=-1)
    best_gt = tf.argmax(padded, axis=-1, output_type=tf.int32)
    matched_gt = tf.where(best_iou > 0.0, best_gt, -1)

    positive = best_iou >= positive_iou
    if allow_low_quality_matches:
        gt_best = tf.reduce_max(iou, axis=-2, keepdims=True)  # (..., 1, N)
        is_best = (iou == gt_best) & (gt_best > 0.0) & usable
        positive |= tf.reduce_any(is_best, axis=-1)
    negative = (best_iou < negative_iou) & ~positive
    labels = tf.where(positive, 1, tf.where(negative, 0, -1))
    labels = tf.where(inside, labels, -1)
    return tf.cast(labels, tf.int32), matched_gt


def _rank_within(mask, noise):
    """0-based rank of each `True` entry by `noise` among the `True` entries."""
    keys = tf.where(mask, noise, 2.0)  # noise is in [0, 1)
    order = tf.argsort(keys, axis=-1, stable=True)
    return tf.argsort(order, axis=-1, stable=True)


def sample_anchors(labels, batch_size_per_image=256, positive_fraction=0.5, seed=None):
    """Samples a fixed-size random minibatch of labelled anchors per image.

    Faster R-CNN's RPN minibatch: `num_pos = min(#positives,
    int(batch_size_per_image * positive_fraction))` positives and `num_neg
    = min(#negatives, batch_size_per_image - num_pos)` negatives, drawn
    uniformly without replacement; the rest become -1 (not in the loss).
    An image with few positives is padded with negatives, as in the paper.

    Args:
        labels: int tensor `(A,)` or `(B, A)` of 1 / 0 / -1, from
            `match_anchors`.
        batch_size_per_image: int. Anchors per image. Defaults to `256`.
        positive_fraction: float in `[0, 1]`. Maximum share of positives.
            Defaults to `0.5`.
        seed: `None`, an int, or a shape-`(2,)` int tensor. An int or a
            tensor makes the draw a stateless function of the seed (the
            same seed gives the same sample: in a `tf.data` pipeline, pass
            a per-element seed, e.g. from `tf.data.Dataset.random()`);
            `None` draws from TF's global random state. Defaults to `None`.

    Returns:
        int32 labels of the shape of `labels`, with exactly `num_pos` ones
        and `num_neg` zeros per image.

    Raises:
        ValueError: if `batch_size_per_image < 1` or `positive_fraction`
            is not in `[0, 1]`.

    Examples:
        >>> labels = np.array([1, 1, 1, 0, 0, 0, 0, -1], "int32")
        >>> sampled = np.asarray(sample_anchors(labels, 4, 0.25, seed=0))
        >>> int((sampled == 1).sum()), int((sampled == 0).sum())
        (1, 3)
    """
    if isinstance(batch_size_per_image, bool) or int(batch_size_per_image) < 1:
        raise ValueError(
            f"batch_size_per_image must be a positive integer; got {batch_size_per_image!r}"
        )
    if not 0.0 <= float(positive_fraction) <= 1.0:
        raise ValueError(f"positive_fraction must be in [0, 1]; got {positive_fraction!r}")
    labels = tf.cast(labels, tf.int32)
    size = int(batch_size_per_image)
    shape = tf.shape(labels)
    if seed is None:
        noise = tf.random.uniform(shape)
    else:
        if isinstance(seed, (int, np.integer)):
            seed = tf.constant([int(seed), 0], tf.int64)
        noise = tf.random.stateless_uniform(shape, seed=tf.cast(seed, tf.int64))
    positive, negative = labels == 1, labels == 0
    num_pos = tf.minimum(
        tf.reduce_sum(tf.cast(positive, tf.int32), axis=-1, keepdims=True),
        int(size * float(positive_fraction)),
    )
    num_neg = tf.minimum(
        tf.reduce_sum(tf.cast(negative, tf.int32), axis=-1, keepdims=True), size - num_pos
    )
    keep_pos = positive & (_rank_within(positive, noise) < num_pos)
    keep_neg = negative & (_rank_within(negative, noise) < num_neg)
    return tf.where(keep_pos, 1, tf.where(keep_neg, 0, -1))
