"""Pieces the instance-segmentation models share: backbones, the proposal
layer, target assignment and losses, mask crop-and-resize and pasting, and
the host-side checks of boxes and classes.

Boxes are `"xyxy"` in image pixels with pixel edges at integers, as in
`keras_segattn.layers.anchors` (a box covering columns 0..15 is `[0, 16]`).
Ground truth reaches the models as a dict of padded tensors:

- `boxes`: float `(batch, G, 4)`;
- `labels`: int `(batch, G)`, class ids `1..num_classes - 1`, `-1` padding;
- `masks`: uint8 or float `(batch, G, H, W)` at the image's resolution
  (needed by `mnc`, ignored by `rpn`).

`keras_segattn.data.instance_pipeline` builds such batches from
`load_instance_dataset`.
"""

import math

import keras
import numpy as np
import tensorflow as tf

from keras_segattn.core.precision import keep_float
from keras_segattn.core.validation import check_int
from keras_segattn.layers import (
    ImagePreprocessing,
    PadToMultiple,
    box_iou,
    decode_boxes,
    encode_boxes,
    match_anchors,
    non_max_suppression,
    sample_anchors,
)
from keras_segattn.layers.image_preprocessing import check_image_shape
from keras_segattn.layers.roi_align import _align_axis
from keras_segattn.models.backbones.vgg import VGG16_BLOCKS, conv_bn_relu, scaled

BACKBONES = ("vgg16", "light")
# Channels of the light CNN's stages (two 3x3 ReLU convolutions each, a 2x2
# max-pooling between stages): stride 8 with four stages.
LIGHT_FILTERS = (32, 64, 128, 128)
# Detectron's Fast R-CNN box coding weights (wx, wy, ww, wh) for stage 3.
ROI_BOX_WEIGHTS = (10.0, 10.0, 5.0, 5.0)
# Every target dict key a model may read.
TARGET_KEYS = ("boxes", "labels", "masks")


# ---------------------------------------------------------------------------
# Argument checks
# ---------------------------------------------------------------------------


def fraction(value, name, low=0.0, high=1.0):
    ok = isinstance(value, (int, float, np.floating)) and not isinstance(value, bool)
    if not ok or not low <= float(value) <= high:
        raise ValueError(f"{name} must be a number in [{low}, {high}]; got {name}={value!r}.")
    return float(value)


def non_negative(value, name):
    ok = isinstance(value, (int, float, np.floating)) and not isinstance(value, bool)
    if not ok or not math.isfinite(float(value)) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0; got {name}={value!r}.")
    return float(value)


def positive_numbers(values, name):
    try:
        values = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        raise ValueError(
            f"{name} must be a sequence of positive numbers; got {values!r}."
        ) from None
    if not values or any(not (v > 0 and math.isfinite(v)) for v in values):
        raise ValueError(
            f"{name} must be a non-empty sequence of positive numbers; got {values!r}."
        )
    return values


def check_num_classes(num_classes):
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)):
        raise ValueError(
            f"num_classes must be an int >= 2 (background and one class); got {num_classes!r}."
        )
    if num_classes < 2:
        raise ValueError(
            f"num_classes must be >= 2 (background and one class); got num_classes={num_classes}."
        )
    return int(num_classes)


# ---------------------------------------------------------------------------
# Backbones
# ---------------------------------------------------------------------------


def build_backbone(backbone="vgg16", width=1.0, light_filters=LIGHT_FILTERS, min_size=32):
    """The shared convolutional features, from raw pixels.

    `"vgg16"`: VGG16's 13 convolutions up to conv5_3 (four 2x2 poolings,
    stride 16, caffe preprocessing), named as in `keras.applications.VGG16`
    so ImageNet weights load by name. `"light"`: a small CPU-friendly CNN,
    two 3x3 ReLU convolutions per stage of `light_filters` channels and a
    2x2 max-pooling between stages (stride `2 ** (len(light_filters) - 1)`),
    images scaled to [-1, 1]. Both pad the image bottom and right to a
    multiple of the stride, so the feature map covers every pixel.

    Returns:
        `(model, stride, channels)`: a functional `keras.Model` named
        `"backbone"` from `(batch, h, w, 3)` pixels to `(batch, ceil(h /
        stride), ceil(w / stride), channels)`.
    """
    if backbone not in BACKBONES:
        raise ValueError(f"backbone must be one of {BACKBONES}; got backbone={backbone!r}.")
    if not (isinstance(width, (int, float)) and not isinstance(width, bool) and 0 < width <= 4):
        raise ValueError(f"width must be a float in (0, 4]; got width={width!r}.")
    inputs = keras.Input(shape=(None, None, 3), name="images")
    if backbone == "vgg16":
        stride = 2 ** (len(VGG16_BLOCKS) - 1)
        x = ImagePreprocessing("caffe", min_size=min_size, name="preprocessing")(inputs)
        x = PadToMultiple(stride, name="pad_to_stride")(x)
        for block, (num_convs, channels) in enumerate(VGG16_BLOCKS, start=1):
            for i in range(1, num_convs + 1):
                x = conv_bn_relu(
                    x, scaled(channels, width), 3, f"block{block}_conv{i}", batch_norm=False
                )
            if block < len(VGG16_BLOCKS):
                x = keras.layers.MaxPooling2D(2, name=f"block{block}_pool")(x)
        channels = scaled(VGG16_BLOCKS[-1][1], width)
    else:
        filters = tuple(check_int(f, "light_filters") for f in light_filters)
        if not filters:
            raise ValueError("light_filters must name at least one stage.")
        stride = 2 ** (len(filters) - 1)
        x = ImagePreprocessing("symmetric", min_size=min_size, name="preprocessing")(inputs)
        x = PadToMultiple(stride, name="pad_to_stride")(x)
        for stage, stage_filters in enumerate(filters, start=1):
            channels = scaled(stage_filters, width)
            for i in (1, 2):
                x = keras.layers.Conv2D(
                    channels, 3, padding="same", activation="relu", name=f"conv{stage}_{i}"
                )(x)
            if stage < len(filters):
                x = keras.layers.MaxPooling2D(2, name=f"pool{stage}")(x)
    return keras.Model(inputs, x, name="backbone"), stride, channels


# ---------------------------------------------------------------------------
# Proposals
# ---------------------------------------------------------------------------


def image_hw(images):
    """`(height, width)` of a batch of images as float32 scalars."""
    shape = tf.shape(images)
    return tf.cast(shape[1], tf.float32), tf.cast(shape[2], tf.float32)


def valid_slots(count, size):
    """bool `(batch, size)`: the first `count[b]` slots of each row."""
    return tf.range(size)[None, :] < tf.cast(count, tf.int32)[:, None]


def gather_rows(values, indices):
    """`values[b, indices[b, i]]` for `values` `(B, N, ...)`, `indices` `(B, K)`.

    Written as a flat `GATHER` (a builtin TFLite op) rather than
    `tf.gather(batch_dims=1)`; indices must be in `[0, N)`.
    """
    shape = tf.shape(values)
    batch, size = shape[0], shape[1]
    flat = tf.reshape(values, tf.concat([[batch * size], shape[2:]], axis=0))
    offsets = tf.range(batch)[:, None] * size
    return tf.gather(flat, indices + offsets)


@keras.saving.register_keras_serializable(package="keras_segattn")
class ProposalLayer(keras.layers.Layer):
    """Turns RPN outputs into a fixed number of proposals per image.

    Per image, as Faster R-CNN's proposal layer: the `pre_nms_top_n`
    anchors of highest objectness, their deltas decoded (`decode_boxes`)
    and clipped to the image, boxes narrower or shorter than `min_size`
    pixels dropped, then greedy NMS at `iou_threshold` keeping
    `post_nms_top_n`. Builtin TFLite ops only (`TOPK_V2`, `GATHER`,
    `NON_MAX_SUPPRESSION_V4`), dynamic batch and image size.

    The boxes leave through `tf.stop_gradient`: no gradient flows into box
    coordinates, as in MNC's practical implementation.

    Call arguments:
        inputs: `[objectness, box_deltas, anchors, images]`: logits
            `(batch, A)`, deltas `(batch, A, 4)`, anchors `(A, 4)`, and the
            images (only their height and width are read).

    Returns:
        `(boxes, scores, num_proposals)`: float32 `(batch, post_nms_top_n,
        4)` boxes and `(batch, post_nms_top_n)` objectness probabilities,
        highest first, zero-padded after the first `num_proposals` (int32
        `(batch,)`).
    """

    def __init__(
        self, pre_nms_top_n=6000, post_nms_top_n=300, iou_threshold=0.7, min_size=0.0, **kwargs
    ):
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        self.pre_nms_top_n = check_int(pre_nms_top_n, "pre_nms_top_n")
        self.post_nms_top_n = check_int(post_nms_top_n, "post_nms_top_n")
        self.iou_threshold = fraction(iou_threshold, "iou_threshold")
        self.min_size = non_negative(min_size, "min_size")

    def call(self, inputs):
        # Box decoding and NMS in float in an int8 file: pixel boxes, logits
        # and the -inf of the unusable boxes have no shared int8 scale.
        with keep_float():
            return self._proposals(*inputs)

    def _proposals(self, objectness, box_deltas, anchors, images):
        objectness = tf.cast(objectness, tf.float32)
        box_deltas = tf.cast(box_deltas, tf.float32)
        anchors = tf.cast(anchors, tf.float32)
        height, width = image_hw(images)
        k = tf.minimum(self.pre_nms_top_n, tf.shape(anchors)[0])
        top_logits, top_index = tf.math.top_k(objectness, k)
        deltas = gather_rows(box_deltas, top_index)
        boxes = decode_boxes(deltas, tf.gather(anchors, top_index), image_size=(height, width))
        box_w, box_h = boxes[..., 2] - boxes[..., 0], boxes[..., 3] - boxes[..., 1]
        usable = (box_w >= self.min_size) & (box_h >= self.min_size) & (box_w > 0) & (box_h > 0)
        # Unusable boxes score below every usable one and below the NMS
        # threshold: a finite floor, not -inf, which an int8 file would take
        # into the range it calibrates the objectness logits on (their
        # scale tied through top_k), leaving them no resolution at all.
        floor = tf.reduce_min(top_logits) - 1.0
        scores = tf.where(usable, top_logits, floor)
        _, boxes, logits, count = non_max_suppression(
            boxes, scores, self.post_nms_top_n, self.iou_threshold, score_threshold=floor + 0.5
        )
        valid = valid_slots(count, self.post_nms_top_n)
        probabilities = tf.where(valid, tf.sigmoid(logits), 0.0)
        return tf.stop_gradient(boxes), tf.stop_gradient(probabilities), count

    def compute_output_spec(self, inputs):
        batch = inputs[0].shape[0]
        size = self.post_nms_top_n
        return (
            keras.KerasTensor((batch, size, 4), "float32"),
            keras.KerasTensor((batch, size), "float32"),
            keras.KerasTensor((batch,), "int32"),
        )

    def get_config(self):
        return {
            **super().get_config(),
            "pre_nms_top_n": self.pre_nms_top_n,
            "post_nms_top_n": self.post_nms_top_n,
            "iou_threshold": self.iou_threshold,
            "min_size": self.min_size,
        }


def rpn_head_layers(channels, num_anchors):
    """The RPN's 3x3 convolution + ReLU and its sibling 1x1 cls and reg layers."""
    return (
        keras.layers.Conv2D(channels, 3, padding="same", activation="relu", name="rpn_conv"),
        keras.layers.Conv2D(
            num_anchors,
            1,
            kernel_initializer=keras.initializers.RandomNormal(stddev=0.01),
            name="rpn_cls",
        ),
        keras.layers.Conv2D(
            4 * num_anchors,
            1,
            kernel_initializer=keras.initializers.RandomNormal(stddev=0.01),
            name="rpn_reg",
        ),
    )


def apply_rpn_head(features, layers):
    """`(objectness (B, A), box_deltas (B, A, 4))` in `AnchorGenerator` order."""
    conv, cls, reg = layers
    hidden = conv(features)
    objectness = keras.layers.Reshape((-1,), name="objectness")(cls(hidden))
    deltas = keras.layers.Reshape((-1, 4), name="rpn_box_deltas")(reg(hidden))
    return objectness, deltas


# ---------------------------------------------------------------------------
# Ground truth checks
# ---------------------------------------------------------------------------


def check_targets(images, targets, num_classes, need_masks):
    """Checks the target dict; returns `(boxes, labels, masks or None)` tensors.

    Shapes are checked statically where known (a `ValueError` naming the
    key); label values and dynamic sizes with `tf.debugging` asserts that
    name the key (XLA compiles asserts to no-ops, so under
    `jit_compile=True` only the static checks run).
    """
    if not isinstance(targets, dict) or not {"boxes", "labels"} <= set(targets):
        got = sorted(targets) if isinstance(targets, dict) else type(targets).__name__
        raise ValueError(
            "targets must be a dict with 'boxes' (batch, G, 4), 'labels' (batch, G)"
            + (" and 'masks' (batch, G, height, width)" if need_masks else "")
            + f"; got {got}."
        )
    if need_masks and "masks" not in targets:
        raise ValueError(
            "targets['masks'] is missing: mnc needs the instance masks (batch, G, height, "
            f"width) at the image's resolution; got keys {sorted(targets)}."
        )
    boxes = tf.cast(targets["boxes"], tf.float32)
    labels = tf.convert_to_tensor(targets["labels"])
    if boxes.shape.rank != 3 or boxes.shape[-1] not in (4, None):
        raise ValueError(
            f"targets['boxes'] must be (batch, G, 4) xyxy pixels; got shape {tuple(boxes.shape)}."
        )
    if labels.shape.rank != 2:
        raise ValueError(
            f"targets['labels'] must be (batch, G) class ids; got shape {tuple(labels.shape)}."
        )
    if not (labels.dtype.is_integer or labels.dtype.is_floating):
        raise ValueError(f"targets['labels'] must be numeric; got dtype {labels.dtype.name}.")
    if None not in (boxes.shape[1], labels.shape[1]) and boxes.shape[1] != labels.shape[1]:
        raise ValueError(
            "targets['boxes'] and targets['labels'] must have the same number of instances G; "
            f"got {tuple(boxes.shape)} and {tuple(labels.shape)}."
        )
    labels = tf.cast(labels, tf.int32)
    asserts = [
        tf.debugging.assert_less(
            labels,
            num_classes,
            message=f"targets['labels'] has a class id >= num_classes={num_classes}; expected "
            f"class ids 1..{num_classes - 1} or -1 padding",
        ),
        tf.debugging.assert_equal(
            tf.reduce_all((labels >= 1) | (labels == -1)),
            True,
            message="targets['labels'] has a class id that is 0 (background) or below -1; "
            f"expected class ids 1..{num_classes - 1} or -1 padding",
        ),
        tf.debugging.assert_equal(
            tf.shape(boxes)[:2],
            tf.shape(labels),
            message="targets['boxes'] and targets['labels'] disagree in batch or G",
        ),
    ]
    masks = None
    if need_masks:
        masks = tf.convert_to_tensor(targets["masks"])
        image_shape = tuple(images.shape)
        if masks.shape.rank != 4:
            raise ValueError(
                "targets['masks'] must be (batch, G, height, width) at the image's resolution; "
                f"got shape {tuple(masks.shape)}."
            )
        for axis, name in ((2, "height"), (3, "width")):
            size, expected = masks.shape[axis], image_shape[axis - 1]
            if None not in (size, expected) and size != expected:
                raise ValueError(
                    f"targets['masks'] {name} {size} does not match the images' {expected}: "
                    f"masks must be at the image's resolution; got masks {tuple(masks.shape)} "
                    f"for images {image_shape}."
                )
        if None not in (masks.shape[1], labels.shape[1]) and masks.shape[1] != labels.shape[1]:
            raise ValueError(
                "targets['masks'] must have one mask per label (G); got masks "
                f"{tuple(masks.shape)} and labels {tuple(labels.shape)}."
            )
        asserts.append(
            tf.debugging.assert_equal(
                tf.shape(masks)[2:],
                tf.shape(images)[1:3],
                message="targets['masks'] height and width must match the images'",
            )
        )
    with tf.control_dependencies(asserts):
        labels = tf.identity(labels)
    return boxes, labels, masks


def prepare_ground_truth(images, boxes, labels, masks=None):
    """Clips boxes to the image, flags the usable ones, appends one padding row.

    A box is usable when its label is a class id (>= 1) and it keeps a
    positive width and height after clipping (degenerate and out-of-image
    boxes are dropped, as `keras_segattn.data.instances` does). The appended
    all-padding instance keeps every gather defined when `G = 0`.

    Returns:
        `(boxes, labels, valid, masks)` with `G + 1` instances; `masks`
        float32 or `None`.
    """
    height, width = image_hw(images)
    upper = tf.stack([width, height, width, height])
    boxes = tf.clip_by_value(boxes, 0.0, upper)
    valid = (labels >= 1) & (boxes[..., 2] > boxes[..., 0]) & (boxes[..., 3] > boxes[..., 1])
    batch = tf.shape(boxes)[0]
    boxes = tf.concat([boxes, tf.zeros([batch, 1, 4])], axis=1)
    labels = tf.concat([tf.where(valid, labels, -1), -tf.ones([batch, 1], tf.int32)], axis=1)
    valid = tf.concat([valid, tf.zeros([batch, 1], tf.bool)], axis=1)
    if masks is not None:
        # uint8 0/1 (or 0/255) and float masks alike become 0/1.
        masks = tf.cast(tf.cast(masks, tf.float32) > 0.5, tf.float32)
        shape = tf.shape(masks)
        masks = tf.concat([masks, tf.zeros([shape[0], 1, shape[2], shape[3]])], axis=1)
    return boxes, labels, valid, masks


# ---------------------------------------------------------------------------
# Losses
# ---------------------------------------------------------------------------


def smooth_l1(x, beta):
    """Elementwise smooth L1 (Huber with threshold `beta`, slope 1)."""
    absolute = tf.abs(x)
    if beta <= 0:
        return absolute
    return tf.where(absolute < beta, 0.5 * x * x / beta, absolute - 0.5 * beta)


def rpn_losses(
    objectness,
    box_deltas,
    anchors,
    gt_boxes,
    gt_valid,
    batch_size_per_image=256,
    positive_fraction=0.5,
    positive_iou=0.7,
    negative_iou=0.3,
    smooth_l1_beta=1.0 / 9.0,
    image_size=None,
    allowed_border=0.0,
    seed=None,
):
    """Faster R-CNN's RPN loss, targets assigned from the ground truth.

    Anchors are labelled by `match_anchors` and `batch_size_per_image` of
    them sampled per image by `sample_anchors` (at most
    `positive_fraction` positive, negatives filling the rest). The
    objectness loss is the sigmoid cross-entropy averaged over the sampled
    anchors; the box loss the smooth L1 of the positive anchors' deltas
    (all four coordinates summed) divided by the same count, as
    Detectron2 normalises both. An image without ground truth has only
    negatives: a finite objectness loss and no box loss.

    Args:
        objectness: float `(B, A)` logits.
        box_deltas: float `(B, A, 4)`.
        anchors: float `(A, 4)`.
        gt_boxes: float `(B, G, 4)`; gt_valid: bool `(B, G)`.
        image_size: `(height, width)` or `None`: with it, anchors crossing
            the border by more than `allowed_border` pixels are ignored
            (py-faster-rcnn); `None` keeps them all (Detectron2).
        seed: the sampling's seed (`sample_anchors`), or `None`.

    Returns:
        `(objectness_loss, box_loss)`, float32 scalars.
    """
    objectness = tf.cast(objectness, tf.float32)
    box_deltas = tf.cast(box_deltas, tf.float32)
    labels, matched = match_anchors(
        anchors,
        gt_boxes,
        gt_valid,
        positive_iou=positive_iou,
        negative_iou=negative_iou,
        image_size=image_size,
        allowed_border=allowed_border,
    )
    sampled = sample_anchors(labels, batch_size_per_image, positive_fraction, seed=seed)
    weights = tf.cast(sampled >= 0, tf.float32)
    positive = tf.cast(sampled == 1, tf.float32)
    normalizer = tf.maximum(tf.reduce_sum(weights), 1.0)
    cross_entropy = tf.nn.sigmoid_cross_entropy_with_logits(labels=positive, logits=objectness)
    objectness_loss = tf.reduce_sum(cross_entropy * weights) / normalizer
    matched_boxes = tf.gather(gt_boxes, tf.maximum(matched, 0), batch_dims=1)
    targets = tf.stop_gradient(encode_boxes(matched_boxes, anchors))
    box_loss = smooth_l1(box_deltas - targets, smooth_l1_beta)
    box_loss = tf.reduce_sum(box_loss * positive[..., None]) / normalizer
    return objectness_loss, box_loss


def sample_rois(
    proposals,
    num_proposals,
    gt_boxes,
    gt_labels,
    gt_valid,
    rois_per_image=64,
    foreground_fraction=0.25,
    foreground_iou=0.5,
    background_iou=(0.0, 0.5),
    seed=None,
):
    """Fast R-CNN / MNC RoI sampling for stages 2 and 3.

    The candidates are the proposals plus the ground-truth boxes (as in
    py-faster-rcnn and the MNC code). A candidate is foreground when its
    highest IoU with a usable ground-truth box is at least `foreground_iou`
    (it takes that box's class, mask and box), background when the IoU is
    in `[background_iou[0], background_iou[1])`. `rois_per_image` are
    sampled (`sample_anchors`), at most `foreground_fraction` foreground;
    when fewer candidates qualify, the unfilled slots get weight 0.

    Returns:
        A dict of `(B, R)` tensors, `R = rois_per_image` (static whatever
        the number of proposals and ground-truth boxes): `boxes` `(B, R, 4)`
        (gradient stopped), `weights` (1 for sampled RoIs), `foreground`
        (float 0/1), `classes` (int32, 0 for background), `matched` (int32
        index of the ground truth).
    """
    rois_per_image = int(rois_per_image)
    proposals = tf.stop_gradient(tf.cast(proposals, tf.float32))
    batch = tf.shape(proposals)[0]
    # `rois_per_image` never-sampled slots: top_k below always has enough
    # candidates, and R stays static when P or G is dynamic.
    filler = tf.zeros([batch, rois_per_image, 4])
    candidates = tf.concat([proposals, gt_boxes, filler], axis=1)
    candidate_valid = tf.concat(
        [
            valid_slots(num_proposals, tf.shape(proposals)[1]),
            gt_valid,
            tf.zeros([batch, rois_per_image], tf.bool),
        ],
        axis=1,
    )
    iou = box_iou(candidates, gt_boxes)  # (B, P + G + R, G)
    iou = tf.where(gt_valid[:, None, :], iou, -1.0)
    best_iou = tf.reduce_max(iou, axis=-1)
    matched = tf.argmax(iou, axis=-1, output_type=tf.int32)
    foreground = candidate_valid & (best_iou >= foreground_iou)
    background = (
        candidate_valid
        & ~foreground
        & (tf.maximum(best_iou, 0.0) >= background_iou[0])
        & (best_iou < background_iou[1])
    )
    labels = tf.where(foreground, 1, tf.where(background, 0, -1))
    sampled = sample_anchors(labels, rois_per_image, foreground_fraction, seed=seed)
    # Sampled candidates first (top_k is stable: lower index first on ties).
    _, order = tf.math.top_k(tf.cast(sampled >= 0, tf.float32), rois_per_image)
    chosen = gather_rows(sampled, order)
    chosen_matched = gather_rows(matched, order)
    classes = tf.where(chosen == 1, gather_rows(gt_labels, chosen_matched), 0)
    return {
        "boxes": tf.stop_gradient(gather_rows(candidates, order)),
        "weights": tf.cast(chosen >= 0, tf.float32),
        "foreground": tf.cast(chosen == 1, tf.float32),
        "classes": classes,
        "matched": chosen_matched,
    }


# ---------------------------------------------------------------------------
# Mask crop-and-resize (targets) and pasting (inference)
# ---------------------------------------------------------------------------


def crop_and_resize_masks(masks, boxes, indices, size=28, sampling_ratio=2):
    """Crops `masks[b, indices[b, r]]` to `boxes[b, r]` and resizes it to `size`.

    RoIAlign (`aligned=True`, as Detectron2's `BitMasks.crop_and_resize`)
    on the selected mask alone: each of the `size x size` bins averages
    `sampling_ratio ** 2` bilinear samples of the full-resolution mask.
    One `GATHER` per RoI of `(2 * sampling_ratio) ** 2` taps per bin, so
    the cost does not grow with the number of ground-truth masks `G`
    (RoIAlign with the masks as channels would read all `G` of them).
    MNC's mask targets are this, thresholded at 0.5.

    Args:
        masks: float `(B, G, H, W)`.
        boxes: float `(B, R, 4)` `"xyxy"` pixels.
        indices: int `(B, R)` in `[0, G)`: which mask each box crops.
        size: int. Output side. Defaults to `28`.
        sampling_ratio: int. Samples per bin along each axis. Defaults to
            `2`.

    Returns:
        float32 `(B, R, size, size)`.
    """
    masks = tf.cast(masks, tf.float32)
    boxes = tf.cast(boxes, tf.float32)
    shape = tf.shape(masks)
    batch, count, height, width = shape[0], shape[1], shape[2], shape[3]
    num_boxes = tf.shape(boxes)[1]
    total = batch * num_boxes
    x1, y1, x2, y2 = tf.unstack(tf.reshape(boxes, [total, 4]) - 0.5, axis=-1)
    rows, row_weights = _align_axis(
        y1, tf.maximum(y2 - y1, 0.0), size, sampling_ratio, height, tf.float32
    )
    cols, col_weights = _align_axis(
        x1, tf.maximum(x2 - x1, 0.0), size, sampling_ratio, width, tf.float32
    )
    taps = 2 * sampling_ratio
    image = tf.reshape(tf.range(batch)[:, None] * count + tf.cast(indices, tf.int32), [total])
    first = tf.reshape(image * height, [total, 1, 1, 1])
    index = (first + rows[..., None]) * width + tf.reshape(cols, [total, 1, 1, size * taps])
    gathered = tf.gather(tf.reshape(masks, [-1]), index)  # (total, size, taps, size * taps)
    by_row = tf.reduce_sum(gathered * row_weights[..., None], axis=2)  # (total, size, size*taps)
    by_row = tf.reshape(by_row, [total, size, size, taps])
    result = tf.reduce_sum(by_row * col_weights[:, None], axis=-1)
    return tf.reshape(result, [batch, num_boxes, size, size])


def _paste_weights(start, end, mask_size, length):
    """`(..., length, mask_size)` bilinear weights of each image pixel on the
    mask cells along one axis: the tent `max(0, 1 - |u - j|)` of the pixel
    centre's position `u` in mask-cell coordinates, zero outside the mask
    (grid_sample with zero padding, `align_corners=False`)."""
    # tf.expand_dims, not [..., None]: a new axis on a dynamic shape becomes
    # a StridedSlice with new_axis_mask, which TFLite runs only through Flex.
    extent = tf.expand_dims(tf.maximum(end - start, 1e-3), -1)
    centres = tf.cast(tf.range(length), tf.float32) + 0.5
    position = (centres - tf.expand_dims(start, -1)) / extent * mask_size - 0.5
    cells = tf.cast(tf.range(mask_size), tf.float32)
    return tf.nn.relu(1.0 - tf.abs(tf.expand_dims(position, -1) - cells))


def paste_masks(masks, boxes, image_size):
    """Pastes box-relative masks into the image: the inverse of the RoI warp.

    Pixel `(y, x)` of the image reads the mask bilinearly at its centre's
    position in the box, `u = (x + 0.5 - x1) / (x2 - x1) * m - 0.5` (and
    likewise `v`), with zeros outside the mask, which is Detectron2's
    `paste_masks_in_image` (`grid_sample`, `align_corners=False`). Since
    the warp is axis-aligned, the bilinear sampling is separable: the
    pasted mask is `Wy @ mask @ Wx^T` with `Wy` `(H, m)` and `Wx` `(W, m)`
    tent weights, two `BATCH_MATMUL`s, builtin in TFLite with a dynamic
    image size (no gather needed).

    Args:
        masks: float `(B, D, m, m)` (probabilities or logits).
        boxes: float `(B, D, 4)` `"xyxy"` pixels.
        image_size: `(height, width)`, ints or scalar int tensors.

    Returns:
        float32 `(B, D, height, width)`.
    """
    masks = tf.cast(masks, tf.float32)
    boxes = tf.cast(boxes, tf.float32)
    height, width = image_size
    mask_h, mask_w = masks.shape[2], masks.shape[3]
    # Pixel positions quantised to int8 would move whole pixels, and a box's
    # extent can quantise to 0 (a division by zero in an int8 file).
    with keep_float():
        x1, y1, x2, y2 = tf.unstack(boxes, axis=-1)
        rows = _paste_weights(y1, y2, mask_h, height)  # (B, D, H, m)
        cols = _paste_weights(x1, x2, mask_w, width)  # (B, D, W, m)
    return tf.matmul(tf.matmul(rows, masks), cols, transpose_b=True)


def box_masks(boxes, image_size):
    """uint8 `(B, D, H, W)`: 1 at the pixels whose centre lies inside each box."""
    height, width = image_size
    ys = tf.cast(tf.range(height), tf.float32) + 0.5
    xs = tf.cast(tf.range(width), tf.float32) + 0.5
    x1, y1, x2, y2 = (tf.expand_dims(c, -1) for c in tf.unstack(boxes, axis=-1))
    inside_y = tf.cast((ys >= y1) & (ys < y2), tf.float32)  # (B, D, H)
    inside_x = tf.cast((xs >= x1) & (xs < x2), tf.float32)  # (B, D, W)
    return tf.cast(tf.expand_dims(inside_y, -1) * tf.expand_dims(inside_x, -2), tf.uint8)


# ---------------------------------------------------------------------------
# tf.data
# ---------------------------------------------------------------------------


def paste_box_masks(masks, boxes, image_size, threshold=None):
    """Pastes one image's box-grid masks `(N, M_h, M_w)` at `image_size`.

    A thin wrapper of the instance package's shared
    `keras_segattn.models.instance.common.paste_masks` (Detectron2's
    bilinear `paste_masks_in_image`, two `BATCH_MATMUL`s, builtin in
    TFLite), which takes batches `(B, N, M_h, M_w)`.

    Args:
        masks: float `(N, M_h, M_w)` probabilities.
        boxes: float `(N, 4)` `"xyxy"` pixels.
        image_size: `(height, width)`.
        threshold: float or `None`. If given, returns uint8 `value >
            threshold`. Defaults to `None`.

    Returns:
        NumPy `(N, height, width)`, float32 or uint8.
    """
    masks = np.asarray(masks, np.float32)
    height, width = (int(s) for s in image_size)
    if len(masks) == 0:
        dtype = np.float32 if threshold is None else np.uint8
        return np.zeros((0, height, width), dtype)
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    pasted = paste_masks(masks[None], boxes[None], (height, width)).numpy()[0]
    if threshold is not None:
        return (pasted > threshold).astype(np.uint8)
    return pasted


def check_boxes(boxes, image_shape, name="boxes", tolerance=1e-3):
    """Returns `boxes` as float32 `(N, 4)`, checking them against the image.

    Raises:
        ValueError: for a shape other than `(N, 4)`, a non-finite
            coordinate, a degenerate box (`x2 <= x1` or `y2 <= y1`) or a box
            reaching outside the image, naming the first bad box.
    """
    boxes = np.asarray(boxes, np.float32)
    if boxes.ndim == 1 and boxes.size == 0:
        boxes = boxes.reshape(0, 4)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(
            f"{name} must be (num_boxes, 4) as (x1, y1, x2, y2); got {name}.shape={boxes.shape}."
        )
    height, width = image_shape[:2]
    for i, (x1, y1, x2, y2) in enumerate(boxes):
        if not np.all(np.isfinite((x1, y1, x2, y2))):
            raise ValueError(f"{name}[{i}] = {boxes[i].tolist()} has a non-finite coordinate.")
        if x2 <= x1 or y2 <= y1:
            raise ValueError(
                f"{name}[{i}] = {boxes[i].tolist()} is degenerate: (x1, y1, x2, y2) needs "
                "x2 > x1 and y2 > y1."
            )
        if x1 < -tolerance or y1 < -tolerance or x2 > width + tolerance or y2 > height + tolerance:
            raise ValueError(
                f"{name}[{i}] = {boxes[i].tolist()} reaches outside the image of height "
                f"{height} and width {width}; boxes must lie within [0, {width}] x "
                f"[0, {height}] (clip them with keras.utils.bounding_boxes.clip_to_image_size)."
            )
    return boxes


def check_image_batch(images, uint8=True, name="images"):
    """Returns `images` as a NumPy `(batch, H, W, 3)` array, or a clear error.

    The host-side `detect` methods (`sds`, `hypercolumns`) check their input
    here, with the shape check of the in-graph ones (`check_image_shape`);
    `uint8=False` accepts float pixels too.
    """
    images = np.asarray(images)
    check_image_shape(images.shape, min_size=2, channels=3, where=name)
    if uint8 and images.dtype != np.uint8:
        raise ValueError(
            f"{name} must be uint8 RGB pixels in [0, 255]; got {name}.dtype={images.dtype}. "
            "Convert with np.clip(images, 0, 255).astype(np.uint8)."
        )
    elif not (images.dtype == np.uint8 or np.issubdtype(images.dtype, np.floating)):
        raise ValueError(f"{name} must be uint8 or float pixels; got {name}.dtype={images.dtype}.")
    return images


def check_classes(classes, num_classes, count, name="classes"):
    """Returns `classes` as int32 `(count,)`, each in `1..num_classes - 1`."""
    values = np.asarray(classes)
    if values.shape != (count,):
        raise ValueError(f"{name} must have shape ({count},), one per box; got {values.shape}.")
    if values.size and not np.all(np.equal(np.mod(values, 1), 0)):
        raise ValueError(f"{name} must be integer class ids; got {values.tolist()[:5]}.")
    values = values.astype(np.int64)
    bad = sorted({int(v) for v in values if not 1 <= v < num_classes})
    if bad:
        raise ValueError(
            f"{name} {bad} are out of range: expected object class ids 1..{num_classes - 1} "
            f"(num_classes={num_classes}, 0 is the background)."
        )
    return values.astype(np.int32)


# ---------------------------------------------------------------------------
# The one detection structure every instance model's `detect` returns
# ---------------------------------------------------------------------------


def pad_detections(found, image_shape):
    """Per-image detections as the padded batch every `detect` returns.

    The host-side models (`sds`, `hypercolumns`) find a different number of
    instances in each image; padded, their detections have the structure of
    the in-graph models' (`rpn`, `mnc`), so one evaluator and one export path
    read them all.

    Args:
        found: a list, one dict per image, with `boxes` `(K, 4)`, `scores`
            `(K,)`, `labels` `(K,)` and `masks` `(K, H, W)`.
        image_shape: `(batch, H, W, ...)` of the images.

    Returns:
        A dict of NumPy arrays: `boxes` float32 `(batch, D, 4)`, `scores`
        float32 `(batch, D)`, `classes` int32 `(batch, D)` (0 for padding),
        `masks` uint8 `(batch, D, H, W)` and `num_detections` int32
        `(batch,)`, `D` the most detections of one image.
    """
    batch, height, width = image_shape[0], image_shape[1], image_shape[2]
    counts = np.array([len(f["scores"]) for f in found], np.int32).reshape(batch)
    size = int(counts.max(initial=0))
    padded = {
        "boxes": np.zeros((batch, size, 4), np.float32),
        "scores": np.zeros((batch, size), np.float32),
        "classes": np.zeros((batch, size), np.int32),
        "masks": np.zeros((batch, size, height, width), np.uint8),
        "num_detections": counts,
    }
    for row, (detections, count) in enumerate(zip(found, counts)):
        padded["boxes"][row, :count] = detections["boxes"]
        padded["scores"][row, :count] = detections["scores"]
        padded["classes"][row, :count] = detections["labels"]
        padded["masks"][row, :count] = detections["masks"]
    return padded


def unpad_detections(detections, row):
    """Image `row`'s detections of a padded `detect` output (NumPy), as the
    per-image dict the COCO scoring takes (`boxes`, `scores`, `labels`,
    `masks`)."""
    count = int(detections["num_detections"][row])
    return {
        "boxes": np.asarray(detections["boxes"][row, :count], np.float32),
        "scores": np.asarray(detections["scores"][row, :count], np.float32),
        "labels": np.asarray(detections["classes"][row, :count], np.int32),
        "masks": np.asarray(detections["masks"][row, :count], np.uint8),
    }
