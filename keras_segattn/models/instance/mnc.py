"""Multi-task Network Cascades (Dai, He and Sun, CVPR 2016).

Instance-aware semantic segmentation as a cascade of three stages sharing
one convolutional backbone, each stage depending on the previous one:

1. **Boxes.** The region proposal network (`rpn`): class-agnostic
   proposals, NMS at IoU 0.7, `post_nms_top_n` of them.
2. **Masks.** The backbone features of every proposal, pooled to a
   `roi_size` x `roi_size` grid (14 x 14), go through an fc layer of 256
   units with ReLU and an fc layer of `mask_size ** 2` (28 x 28) logits: a
   class-agnostic mask in the box, trained with a per-pixel logistic loss.
3. **Categories.** The RoI features times the predicted mask (resized to
   the RoI grid) and the RoI features themselves are each max-pooled 2x2
   and passed through two fc layers; the two are concatenated and scored
   over `num_classes` (background included) with a softmax, plus a
   class-specific box regression.

The loss is `L = L1 + L2 + L3` (RPN, mask, classification and box
refinement), trained end to end through `model.fit`: the targets of all
three stages are computed inside the train step from `(images, {"boxes",
"labels", "masks"})`. Gradients flow from stage 3 into the predicted masks
(stage 2) and from every stage through the RoI features into the
backbone; as in the paper's practical implementation, they are stopped at
the box coordinates of the proposals (the paper derives the gradient with
respect to them, then drops it in training).

At inference the cascade scores every proposal, takes its best foreground
class, and keeps `max_detections` with class-agnostic NMS at IoU 0.3 (the
paper's), padded with a count. `refine=True` runs the paper's 5-stage
inference: the boxes regressed by stage 3 go through stages 2 and 3
again, and the two sets of instances are merged before NMS.

Differences from the paper, and why:

- **RoIAlign instead of RoI warping.** The paper's RoI warping layer
  crops each box from the feature map and warps it bilinearly to a fixed
  size, a differentiable crop; RoIAlign (Mask R-CNN, `aligned=True`,
  `sampling_ratio` bilinear samples per bin) is its modern equivalent and
  is what `keras_segattn.layers.RoIAlign` computes with builtin TFLite
  ops. The MNC code warps to 28 x 28 then max-pools to 14 x 14; here the
  average of 2 x 2 samples per bin gives the 14 x 14 grid directly.
- **Box coordinates get no gradient** (see above).
- **Mask targets** are the matched ground-truth mask cropped to the RoI
  and resized to 28 x 28 by RoIAlign on the mask (`crop_and_resize_masks`),
  thresholded at 0.5 (Mask R-CNN's rule); the paper warps the mask.
- **Losses.** Every weight is 1 (the paper's; the MNC code weighs the mask
  loss by 2). RoIs: the proposals plus the ground-truth boxes, 64 per
  image, 25% foreground (IoU >= 0.5), background below 0.5.
- **Inference.** Mask voting (the paper's score-weighted average of the
  suppressed masks, about +1%) is not implemented; masks are thresholded
  at 0.5 (the MNC code uses 0.4). With `refine=False` a detection's box is
  its proposal, in which its mask was predicted; with `refine=True` the
  second set's boxes are the regressed ones.
- **Pasting** a 28 x 28 mask back into the image (`paste_masks`) is the
  inverse warp written as two matrix products of bilinear weights, so it
  runs in TFLite at any image size.
"""

import keras
import tensorflow as tf

from keras_segattn.core.validation import check_int
from keras_segattn.layers import RoIAlign, decode_boxes, encode_boxes, non_max_suppression
from keras_segattn.layers.image_preprocessing import check_image_shape
from keras_segattn.models.instance.common import (
    ROI_BOX_WEIGHTS,
    check_num_classes,
    check_targets,
    crop_and_resize_masks,
    fraction,
    gather_rows,
    image_hw,
    paste_masks,
    prepare_ground_truth,
    sample_rois,
    smooth_l1,
    valid_slots,
)
from keras_segattn.models.instance.presets import COCO_LIGHT_MNC, SHAPES_MNC
from keras_segattn.models.instance.rpn import (
    RPN_LOSSES,
    InstanceModelMixin,
    build_rpn_graph,
    load_backbone_weights,
    loss_weight_config,
    rpn_config,
    rpn_loss_terms,
    sampling_seeds,
)
from keras_segattn.models.registry import register_model

PAPER = (
    "Dai, He and Sun, Instance-aware Semantic Segmentation via Multi-task Network Cascades, "
    "CVPR 2016"
)
TINY = {
    "num_classes": 3,
    "backbone": "light",
    "light_filters": (8, 16, 16),
    "rpn_channels": 16,
    "anchor_scales": (8, 16),
    "pre_nms_top_n": 200,
    "post_nms_top_n": 12,
    "batch_size_per_image": 64,
    "roi_size": 4,
    "mask_size": 8,
    "mask_units": 16,
    "fc_units": 16,
    "rois_per_image": 8,
    "max_detections": 5,
}
MNC_LOSSES = (*RPN_LOSSES, "mask", "class", "box")


@keras.saving.register_keras_serializable(package="keras_segattn")
class MaskHead(keras.layers.Layer):
    """MNC's stage 2: RoI features to class-agnostic mask logits.

    `(batch, R, S, S, C)` RoI features, flattened, through an fc layer of
    `units` with ReLU and an fc layer of `mask_size ** 2` logits, reshaped
    to `(batch, R, mask_size, mask_size)`.
    """

    def __init__(self, mask_size=28, units=256, **kwargs):
        super().__init__(**kwargs)
        self.mask_size = check_int(mask_size, "mask_size")
        self.units = check_int(units, "units")
        self.hidden = keras.layers.Dense(self.units, activation="relu", name="fc")
        self.logits = keras.layers.Dense(self.mask_size**2, name="mask_logits")

    def build(self, input_shape):
        if len(input_shape) != 5 or None in tuple(input_shape[2:]):
            raise ValueError(
                "MaskHead expects RoI features (batch, R, S, S, C) with static S and C; got "
                f"{tuple(input_shape)}."
            )
        self._flat = int(input_shape[2] * input_shape[3] * input_shape[4])
        self.hidden.build((None, self._flat))
        self.logits.build((None, self.units))

    def call(self, roi_features):
        shape = tf.shape(roi_features)
        flat = tf.reshape(roi_features, [shape[0], shape[1], self._flat])
        logits = self.logits(self.hidden(flat))
        return tf.reshape(logits, [shape[0], shape[1], self.mask_size, self.mask_size])

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[1], self.mask_size, self.mask_size)

    def get_config(self):
        return {**super().get_config(), "mask_size": self.mask_size, "units": self.units}


@keras.saving.register_keras_serializable(package="keras_segattn")
class MaskedClassifierHead(keras.layers.Layer):
    """MNC's stage 3: categorises each instance from its masked features.

    The predicted mask (sigmoid of the stage-2 logits) is average-pooled to
    the RoI grid and multiplies the RoI features. Both the masked and the
    plain features are max-pooled 2x2 (when the grid side is even) and go
    through two fc layers of `units` with ReLU each; the concatenation is
    scored over `num_classes` and regresses `4 * num_classes` box deltas
    (Fast R-CNN coding with weights `(10, 10, 5, 5)`).

    Call arguments:
        inputs: `[roi_features (batch, R, S, S, C), mask_logits (batch, R,
            m, m)]`, `m` a multiple of `S`.

    Returns:
        `(class_logits (batch, R, num_classes), box_deltas (batch, R, 4 *
        num_classes))`.
    """

    def __init__(self, num_classes, units=4096, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = check_num_classes(num_classes)
        self.units = check_int(units, "units")
        dense = keras.layers.Dense
        self.mask_fc1 = dense(self.units, activation="relu", name="mask_fc1")
        self.mask_fc2 = dense(self.units, activation="relu", name="mask_fc2")
        self.box_fc1 = dense(self.units, activation="relu", name="box_fc1")
        self.box_fc2 = dense(self.units, activation="relu", name="box_fc2")
        self.classifier = dense(
            self.num_classes,
            kernel_initializer=keras.initializers.RandomNormal(stddev=0.01),
            name="cls_score",
        )
        self.box_regressor = dense(
            4 * self.num_classes,
            kernel_initializer=keras.initializers.RandomNormal(stddev=0.001),
            name="bbox_pred",
        )

    def build(self, input_shape):
        features_shape, mask_shape = input_shape
        size, channels = features_shape[2], features_shape[4]
        if None in (size, channels, mask_shape[2]):
            raise ValueError(
                "MaskedClassifierHead needs a static RoI grid, channels and mask size; got "
                f"features {tuple(features_shape)}, masks {tuple(mask_shape)}."
            )
        if mask_shape[2] % size:
            raise ValueError(
                f"mask_size={mask_shape[2]} must be a multiple of roi_size={size} (the mask "
                "is average-pooled to the RoI grid)."
            )
        self._size, self._channels, self._factor = int(size), int(channels), mask_shape[2] // size
        self._pooled = self._size // 2 if self._size % 2 == 0 else self._size
        flat = self._pooled**2 * self._channels
        for first, second in ((self.mask_fc1, self.mask_fc2), (self.box_fc1, self.box_fc2)):
            first.build((None, flat))
            second.build((None, self.units))
        self.classifier.build((None, 2 * self.units))
        self.box_regressor.build((None, 2 * self.units))

    def _pool(self, x):
        if self._size % 2 == 0:
            x = tf.nn.max_pool2d(x, 2, 2, "VALID")
        return x

    def call(self, inputs):
        roi_features, mask_logits = inputs
        shape = tf.shape(roi_features)
        batch, count = shape[0], shape[1]
        size, channels, total = self._size, self._channels, shape[0] * shape[1]
        features = tf.reshape(roi_features, [total, size, size, channels])
        mask = tf.sigmoid(tf.cast(mask_logits, features.dtype))
        side = size * self._factor
        mask = tf.reshape(mask, [total, side, side, 1])
        if self._factor > 1:
            mask = tf.nn.avg_pool2d(mask, self._factor, self._factor, "VALID")
        flat = [batch, count, self._pooled**2 * channels]
        masked = tf.reshape(self._pool(features * mask), flat)
        plain = tf.reshape(self._pool(features), flat)
        joint = tf.concat(
            [self.mask_fc2(self.mask_fc1(masked)), self.box_fc2(self.box_fc1(plain))], axis=-1
        )
        return self.classifier(joint), self.box_regressor(joint)

    def compute_output_shape(self, input_shape):
        batch, count = input_shape[0][:2]
        return (batch, count, self.num_classes), (batch, count, 4 * self.num_classes)

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes, "units": self.units}


def best_foreground(class_logits):
    """`(classes int32, scores)` of the most likely foreground class."""
    probabilities = tf.nn.softmax(tf.cast(class_logits, tf.float32), axis=-1)[..., 1:]
    # tf.argmax, not keras.ops.argmax (which needs Flex in TFLite).
    classes = tf.argmax(probabilities, axis=-1, output_type=tf.int32) + 1
    return classes, tf.reduce_max(probabilities, axis=-1)


def class_deltas(box_deltas, classes, num_classes):
    """The `(dx, dy, dw, dh)` of class `classes` from class-specific deltas."""
    shape = tf.shape(box_deltas)
    deltas = tf.reshape(tf.cast(box_deltas, tf.float32), [shape[0], shape[1], num_classes, 4])
    one_hot = tf.one_hot(classes, num_classes, dtype=tf.float32)
    return tf.reduce_sum(deltas * one_hot[..., None], axis=2)


@keras.saving.register_keras_serializable(package="keras_segattn")
class RefineBoxes(keras.layers.Layer):
    """Stage 3's box regression applied to the boxes, for the 5-stage cascade.

    Each box is regressed with the deltas of its best foreground class,
    clipped to the image; gradients are stopped.

    Call arguments:
        inputs: `[boxes (B, R, 4), class_logits (B, R, K), box_deltas (B,
            R, 4K), images]`.
    """

    def __init__(self, num_classes, **kwargs):
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        self.num_classes = check_num_classes(num_classes)

    def call(self, inputs):
        boxes, class_logits, box_deltas, images = inputs
        classes, _ = best_foreground(class_logits)
        deltas = class_deltas(box_deltas, classes, self.num_classes)
        refined = decode_boxes(
            deltas, tf.cast(boxes, tf.float32), ROI_BOX_WEIGHTS, image_size=image_hw(images)
        )
        return tf.stop_gradient(refined)

    def compute_output_spec(self, inputs):
        return keras.KerasTensor(inputs[0].shape, "float32")

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes}


@keras.saving.register_keras_serializable(package="keras_segattn")
class DetectionLayer(keras.layers.Layer):
    """Scores, suppresses and pads the cascade's instances.

    Each instance takes its most likely foreground class and that class's
    probability as score; padded proposals are left out. Greedy NMS at
    `iou_threshold` (class-agnostic, the MNC paper's 0.3, or per class with
    `class_agnostic=False`, by offsetting each class's boxes so that they
    never overlap another's) keeps `max_detections` scoring above
    `score_threshold`. Builtin TFLite ops only.

    Call arguments:
        inputs: `[num_proposals (B,), boxes (B, R, 4), class_logits (B, R,
            K), mask_logits (B, R, m, m)]`, then optionally the same three
            for a second set of instances of the same proposals (the
            5-stage cascade), merged with the first before NMS.

    Returns:
        `(boxes (B, D, 4), scores (B, D), classes int32 (B, D), masks (B,
        D, m, m) probabilities, num_detections int32 (B,))`, zero after
        the first `num_detections`.
    """

    def __init__(
        self,
        max_detections=100,
        iou_threshold=0.3,
        score_threshold=0.0,
        class_agnostic=True,
        **kwargs,
    ):
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        self.max_detections = check_int(max_detections, "max_detections")
        self.iou_threshold = fraction(iou_threshold, "iou_threshold")
        self.score_threshold = fraction(score_threshold, "score_threshold")
        self.class_agnostic = bool(class_agnostic)

    def call(self, inputs):
        count, *sets = inputs
        if len(sets) % 3:
            raise ValueError(
                "DetectionLayer expects num_proposals then (boxes, logits, masks) sets."
            )
        size = tf.shape(sets[0])[1]
        boxes = tf.concat([tf.cast(b, tf.float32) for b in sets[0::3]], axis=1)
        logits = tf.concat(sets[1::3], axis=1)
        masks = tf.concat([tf.cast(m, tf.float32) for m in sets[2::3]], axis=1)
        valid = tf.tile(valid_slots(count, size), [1, len(sets) // 3])
        classes, scores = best_foreground(logits)
        scores = tf.where(valid, scores, -1.0)
        nms_boxes = boxes
        if not self.class_agnostic:
            offset = tf.reduce_max(boxes) + 1.0
            nms_boxes = boxes + tf.cast(classes, tf.float32)[..., None] * offset
        indices, _, selected_scores, num = non_max_suppression(
            nms_boxes, scores, self.max_detections, self.iou_threshold, self.score_threshold
        )
        kept = valid_slots(num, self.max_detections)
        safe = tf.where(kept, indices, 0)
        weight = tf.cast(kept, tf.float32)
        return (
            gather_rows(boxes, safe) * weight[..., None],
            tf.where(kept, selected_scores, 0.0),
            tf.where(kept, gather_rows(classes, safe), 0),
            tf.sigmoid(gather_rows(masks, safe)) * weight[..., None, None],
            num,
        )

    def compute_output_spec(self, inputs):
        batch = inputs[0].shape[0]
        size = self.max_detections
        mask_size = tuple(inputs[3].shape[2:])
        return (
            keras.KerasTensor((batch, size, 4), "float32"),
            keras.KerasTensor((batch, size), "float32"),
            keras.KerasTensor((batch, size), "int32"),
            keras.KerasTensor((batch, size, *mask_size), "float32"),
            keras.KerasTensor((batch,), "int32"),
        )

    def get_config(self):
        return {
            **super().get_config(),
            "max_detections": self.max_detections,
            "iou_threshold": self.iou_threshold,
            "score_threshold": self.score_threshold,
            "class_agnostic": self.class_agnostic,
        }


def _background_iou(value):
    try:
        low, high = (float(v) for v in value)
    except (TypeError, ValueError):
        low = high = float("nan")
    if not 0.0 <= low < high <= 1.0:
        raise ValueError(
            f"background_iou must be a pair (low, high) with 0 <= low < high <= 1; got {value!r}."
        )
    return (low, high)


@keras.saving.register_keras_serializable(package="keras_segattn")
class MultitaskNetworkCascade(InstanceModelMixin, keras.Model):
    """Dai, He and Sun's Multi-task Network Cascade; build it with `mnc`.

    A functional model from `images` `(batch, h, w, 3)` (pixels in [0, 255],
    any size of at least 32) to `[boxes (batch, D, 4), scores (batch, D),
    classes (batch, D), masks (batch, D, m, m), num_detections (batch,)]`
    (`D = max_detections`, masks the box-relative probabilities). `detect`
    pastes the masks at image resolution, as the `"instance"` serving
    signature does.

    In training mode it returns the backbone features and the RPN outputs;
    `compute_loss` assigns the targets of all three stages from
    `(images, {"boxes", "labels", "masks"})`, runs stages 2 and 3 on the
    sampled RoIs and adds the five losses (tracked as
    `rpn_objectness_loss`, `rpn_box_loss`, `mask_loss`, `class_loss`,
    `box_loss`). Compile without a loss.

    Args: those of `mnc`.
    """

    def __init__(
        self,
        num_classes=21,
        roi_size=14,
        roi_sampling_ratio=2,
        mask_size=28,
        mask_units=256,
        fc_units=4096,
        rois_per_image=64,
        foreground_fraction=0.25,
        foreground_iou=0.5,
        background_iou=(0.0, 0.5),
        max_detections=100,
        nms_iou=0.3,
        score_threshold=0.0,
        class_agnostic_nms=True,
        refine=False,
        mask_threshold=0.5,
        loss_weights=None,
        name="mnc",
        **kwargs,
    ):
        config_keys = rpn_config.__code__.co_varnames[: rpn_config.__code__.co_argcount]
        base_kwargs = {k: kwargs.pop(k) for k in list(kwargs) if k not in config_keys}
        config = rpn_config(**kwargs)
        roi_size = check_int(roi_size, "roi_size")
        mask_size = check_int(mask_size, "mask_size")
        if mask_size % roi_size:
            raise ValueError(
                f"mask_size={mask_size} must be a multiple of roi_size={roi_size} (stage 3 "
                "average-pools the mask to the RoI grid)."
            )
        config.update(
            {
                "num_classes": check_num_classes(num_classes),
                "roi_size": roi_size,
                "roi_sampling_ratio": check_int(roi_sampling_ratio, "roi_sampling_ratio"),
                "mask_size": mask_size,
                "mask_units": check_int(mask_units, "mask_units"),
                "fc_units": check_int(fc_units, "fc_units"),
                "rois_per_image": check_int(rois_per_image, "rois_per_image"),
                "foreground_fraction": fraction(foreground_fraction, "foreground_fraction"),
                "foreground_iou": fraction(foreground_iou, "foreground_iou"),
                "background_iou": _background_iou(background_iou),
                "max_detections": check_int(max_detections, "max_detections"),
                "nms_iou": fraction(nms_iou, "nms_iou"),
                "score_threshold": fraction(score_threshold, "score_threshold"),
                "class_agnostic_nms": bool(class_agnostic_nms),
                "refine": bool(refine),
                "mask_threshold": fraction(mask_threshold, "mask_threshold"),
                "loss_weights": loss_weight_config(loss_weights, MNC_LOSSES),
            }
        )
        images = keras.Input(shape=(None, None, 3), name="images")
        graph = build_rpn_graph(images, config)
        stride = graph["stride"]
        roi_align = RoIAlign(
            roi_size, config["roi_sampling_ratio"], 1.0 / stride, aligned=True, name="roi_align"
        )
        mask_head = MaskHead(mask_size, config["mask_units"], name="mask_head")
        class_head = MaskedClassifierHead(
            config["num_classes"], config["fc_units"], name="classifier_head"
        )
        features, proposals = graph["features"], graph["proposals"]
        roi_features = roi_align([features, proposals])
        mask_logits = mask_head(roi_features)
        class_logits, box_deltas = class_head([roi_features, mask_logits])
        instances = [proposals, class_logits, mask_logits]
        if config["refine"]:
            refined = RefineBoxes(config["num_classes"], name="refine_boxes")(
                [proposals, class_logits, box_deltas, images]
            )
            refined_features = roi_align([features, refined])
            refined_masks = mask_head(refined_features)
            refined_logits, _ = class_head([refined_features, refined_masks])
            instances += [refined, refined_logits, refined_masks]
        detections = DetectionLayer(
            config["max_detections"],
            config["nms_iou"],
            config["score_threshold"],
            config["class_agnostic_nms"],
            name="detections",
        )([graph["num_proposals"], *instances])
        super().__init__(images, list(detections), name=name, **base_kwargs)
        training_outputs = {
            k: graph[k]
            for k in (
                "features",
                "objectness",
                "box_deltas",
                "anchors",
                "proposals",
                "num_proposals",
            )
        }
        # A bound method, not a tracked sub-model: the weights stay this model's.
        self._training_call = keras.Model(images, training_outputs).__call__
        self.backbone = graph["backbone"]
        self.stride = stride
        self.roi_align = roi_align
        self.mask_head = mask_head
        self.class_head = class_head
        self._config = config
        self._loss_names = MNC_LOSSES
        self.sampling_seeds = sampling_seeds()
        self._make_trackers()

    @property
    def num_classes(self):
        return self._config["num_classes"]

    def _loss_terms(self, images, targets, outputs):
        config = self._config
        boxes, labels, masks = check_targets(images, targets, config["num_classes"], True)
        ground_truth = prepare_ground_truth(images, boxes, labels, masks)
        gt_boxes, gt_labels, gt_valid, gt_masks = ground_truth
        terms = rpn_loss_terms(self, images, ground_truth, outputs)

        rois = sample_rois(
            outputs["proposals"],
            outputs["num_proposals"],
            gt_boxes,
            gt_labels,
            gt_valid,
            rois_per_image=config["rois_per_image"],
            foreground_fraction=config["foreground_fraction"],
            foreground_iou=config["foreground_iou"],
            background_iou=config["background_iou"],
            seed=self.sampling_seeds.next(),
        )
        roi_features = self.roi_align([outputs["features"], rois["boxes"]])
        mask_logits = tf.cast(self.mask_head(roi_features), tf.float32)
        class_logits, box_deltas = self.class_head([roi_features, mask_logits])
        foreground, weights = rois["foreground"], rois["weights"]
        num_foreground = tf.maximum(tf.reduce_sum(foreground), 1.0)
        num_sampled = tf.maximum(tf.reduce_sum(weights), 1.0)

        # Stage 2: per-pixel logistic loss on the foreground RoIs.
        mask_targets = crop_and_resize_masks(
            gt_masks, rois["boxes"], rois["matched"], config["mask_size"]
        )
        mask_targets = tf.stop_gradient(tf.cast(mask_targets >= 0.5, tf.float32))
        pixel_loss = tf.nn.sigmoid_cross_entropy_with_logits(
            labels=mask_targets, logits=mask_logits
        )
        terms["mask"] = (
            tf.reduce_sum(tf.reduce_mean(pixel_loss, axis=[2, 3]) * foreground) / num_foreground
        )

        # Stage 3: softmax over the classes, smooth L1 on the true class's deltas.
        cross_entropy = tf.nn.sparse_softmax_cross_entropy_with_logits(
            labels=rois["classes"], logits=tf.cast(class_logits, tf.float32)
        )
        terms["class"] = tf.reduce_sum(cross_entropy * weights) / num_sampled
        deltas = class_deltas(box_deltas, rois["classes"], config["num_classes"])
        matched_boxes = gather_rows(gt_boxes, rois["matched"])
        box_targets = tf.stop_gradient(encode_boxes(matched_boxes, rois["boxes"], ROI_BOX_WEIGHTS))
        box_loss = tf.reduce_sum(smooth_l1(deltas - box_targets, 1.0), axis=-1)
        terms["box"] = tf.reduce_sum(box_loss * foreground) / num_sampled
        return terms

    def detect(self, images):
        """Instances at image resolution: the `"instance"` serving outputs.

        Args:
            images: `(batch, h, w, 3)` pixels in [0, 255], uint8 or float,
                `h, w >= 32`.

        Returns:
            A dict: `boxes` float32 `(batch, D, 4)` `"xyxy"` pixels,
            `scores` float32 `(batch, D)`, `classes` int32 `(batch, D)`
            (1..num_classes - 1, 0 for padding), `masks` uint8 `(batch, D,
            h, w)` (the 28 x 28 masks pasted into their boxes and
            thresholded at `mask_threshold`) and `num_detections` int32
            `(batch,)`; `D = max_detections`, padding zero.
        """
        images = tf.convert_to_tensor(images)
        check_image_shape(images.shape, min_size=1, channels=3, where="images")
        boxes, scores, classes, masks, count = self(images, training=False)
        shape = tf.shape(images)
        pasted = paste_masks(masks, boxes, (shape[1], shape[2]))
        return {
            "boxes": boxes,
            "scores": scores,
            "classes": classes,
            "masks": tf.cast(pasted >= self._config["mask_threshold"], tf.uint8),
            "num_detections": count,
        }


@register_model(
    "mnc",
    task="instance",
    paper=PAPER,
    tiny=TINY,
    presets={"shapes": SHAPES_MNC, "coco_light": COCO_LIGHT_MNC},
)
def mnc(
    num_classes=21,
    backbone="vgg16",
    weights=None,
    **kwargs,
):
    """Builds the Multi-task Network Cascade for instance segmentation.

    Args:
        num_classes: int. Classes, background (0) included. Defaults to
            `21` (PASCAL VOC).
        backbone, weights, width, light_filters, rpn_channels,
        anchor_scales, aspect_ratios, pre_nms_top_n, post_nms_top_n,
        rpn_nms_iou, min_size, batch_size_per_image, positive_fraction,
        positive_iou, negative_iou, allowed_border, rpn_smooth_l1_beta:
            stage 1, as in `rpn`.
        roi_size: int. Side of the RoI feature grid. Defaults to `14`.
        roi_sampling_ratio: int. RoIAlign samples per bin and axis.
            Defaults to `2`.
        mask_size: int. Side `m` of the predicted masks, a multiple of
            `roi_size`. Defaults to `28`.
        mask_units: int. Stage 2's fc width. Defaults to `256`.
        fc_units: int. Width of stage 3's fc layers (two per pathway).
            Defaults to `4096` (use a few hundred with the light backbone).
        rois_per_image: int. RoIs sampled per image for stages 2 and 3.
            Defaults to `64`.
        foreground_fraction: float. Largest share of foreground RoIs.
            Defaults to `0.25`.
        foreground_iou: float. Box IoU with a ground truth that makes a
            RoI foreground (its class, mask and box). Defaults to `0.5`.
        background_iou: `(low, high)`. IoU range of background RoIs.
            Defaults to `(0.0, 0.5)`.
        max_detections: int. Instances kept per image. Defaults to `100`.
        nms_iou: float. IoU threshold of the final NMS. Defaults to `0.3`
            (the paper's).
        score_threshold: float. Instances must score above it. Defaults to
            `0`.
        class_agnostic_nms: bool. One NMS over every class (the paper's) or
            one per class. Defaults to `True`.
        refine: bool. The 5-stage inference cascade. Defaults to `False`.
        mask_threshold: float. Binarisation of the pasted masks in
            `detect` and serving. Defaults to `0.5`.
        loss_weights: dict or `None`. Weights of `"rpn_objectness"`,
            `"rpn_box"`, `"mask"`, `"class"`, `"box"` (1 each by default).
        name: str. Defaults to `"mnc"`.

    Returns:
        A `MultitaskNetworkCascade`.

    Raises:
        ValueError: bad `num_classes`, sizes, fractions or thresholds, a
            `mask_size` that is not a multiple of `roi_size`, an unknown
            backbone, `weights="imagenet"` with the light backbone.

    Examples:

    ```python
    model = mnc(num_classes=4, backbone="light", fc_units=256)
    model.compile(keras.optimizers.Adam(1e-3))
    model.fit(instance_pipeline(dataset, 8, image_size=64, max_instances=3), epochs=10)
    detections = model.detect(images)  # masks at image resolution
    ```
    """
    if weights == "imagenet" and backbone != "vgg16":
        raise ValueError(
            "weights='imagenet' needs backbone='vgg16' (the light CNN has no pretrained "
            f"weights); got backbone={backbone!r}."
        )
    model = MultitaskNetworkCascade(
        num_classes=num_classes,
        backbone=backbone,
        **kwargs,
    )
    return load_backbone_weights(model, weights)
