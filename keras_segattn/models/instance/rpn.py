"""The region proposal network of Faster R-CNN (Ren, He, Girshick and Sun,
NIPS 2015), MNC's first stage (Dai, He and Sun, CVPR 2016).

A shared convolutional backbone (VGG16 to conv5_3, stride 16, or a light
CNN for CPUs) feeds a 3x3 convolution with ReLU and two sibling 1x1
layers: `k` objectness logits and `4k` box deltas per position, one per
anchor (`AnchorGenerator`). At inference the deltas are decoded, clipped
to the image and the `pre_nms_top_n` best boxes go through NMS at IoU 0.7,
keeping `post_nms_top_n` proposals, zero-padded with a count.

Training goes through `model.fit` on `(images, {"boxes", "labels"})`:
the anchor targets are assigned inside the train step from the ground
truth (`match_anchors`: IoU >= 0.7 positive, < 0.3 negative, each box's
best anchors positive; `sample_anchors`: 256 per image, at most half
positive), and the loss is the sigmoid cross-entropy of the sampled
anchors plus the smooth L1 of the positives' deltas.

Differences from the paper: objectness is one sigmoid logit per anchor
(Detectron2) rather than a two-way softmax; both losses are normalised by
the number of sampled anchors (Detectron2) rather than `lambda = 10` over
the number of positions; the smooth L1 threshold is the MNC code's `1/9`
(sigma 3); anchors crossing the image border take part in training
unless `allowed_border` is set (the paper ignores them, `allowed_border=0`).
"""

import keras
import tensorflow as tf

from keras_segattn.core.validation import check_int
from keras_segattn.layers import AnchorGenerator
from keras_segattn.layers.anchors import DEFAULT_ASPECT_RATIOS, MNC_SCALES
from keras_segattn.layers.image_preprocessing import check_image_shape
from keras_segattn.models.backbones.vgg import load_weights as load_vgg16_weights
from keras_segattn.models.common import load_saved_weights
from keras_segattn.models.instance.common import (
    BACKBONES,
    LIGHT_FILTERS,
    ProposalLayer,
    apply_rpn_head,
    box_masks,
    build_backbone,
    check_targets,
    fraction,
    non_negative,
    positive_numbers,
    prepare_ground_truth,
    rpn_head_layers,
    rpn_losses,
    valid_slots,
)
from keras_segattn.models.registry import register_model

PAPER = (
    "Ren, He, Girshick and Sun, Faster R-CNN: Towards Real-Time Object Detection with Region "
    "Proposal Networks, NIPS 2015"
)
TINY = {
    "backbone": "light",
    "light_filters": (8, 16, 16),
    "rpn_channels": 16,
    "anchor_scales": (8, 16),
    "pre_nms_top_n": 200,
    "post_nms_top_n": 16,
    "batch_size_per_image": 64,
}
RPN_LOSSES = ("rpn_objectness", "rpn_box")


def rpn_config(
    backbone="vgg16",
    width=1.0,
    light_filters=LIGHT_FILTERS,
    rpn_channels=None,
    anchor_scales=None,
    aspect_ratios=DEFAULT_ASPECT_RATIOS,
    pre_nms_top_n=6000,
    post_nms_top_n=300,
    rpn_nms_iou=0.7,
    min_size=0.0,
    batch_size_per_image=256,
    positive_fraction=0.5,
    positive_iou=0.7,
    negative_iou=0.3,
    allowed_border=None,
    rpn_smooth_l1_beta=1.0 / 9.0,
):
    """Checks the RPN arguments; returns them resolved (defaults filled in)."""
    if backbone not in BACKBONES:
        raise ValueError(f"backbone must be one of {BACKBONES}; got backbone={backbone!r}.")
    light_filters = tuple(check_int(f, "light_filters") for f in light_filters)
    if not light_filters:
        raise ValueError("light_filters must name at least one stage.")
    stride = 16 if backbone == "vgg16" else 2 ** (len(light_filters) - 1)
    if anchor_scales is None:
        # MNC's 64..512 at stride 16; the light CNN scales them to its stride.
        anchor_scales = MNC_SCALES if backbone == "vgg16" else tuple(stride * s for s in (2, 4, 8))
    if rpn_channels is None:
        rpn_channels = max(4, round(512 * width)) if backbone == "vgg16" else light_filters[-1]
    positive_iou = fraction(positive_iou, "positive_iou")
    negative_iou = fraction(negative_iou, "negative_iou")
    if negative_iou > positive_iou:
        raise ValueError(
            f"negative_iou={negative_iou} must not exceed positive_iou={positive_iou}."
        )
    return {
        "backbone": backbone,
        "width": float(width),
        "light_filters": light_filters,
        "rpn_channels": check_int(rpn_channels, "rpn_channels"),
        "anchor_scales": positive_numbers(anchor_scales, "anchor_scales"),
        "aspect_ratios": positive_numbers(aspect_ratios, "aspect_ratios"),
        "pre_nms_top_n": check_int(pre_nms_top_n, "pre_nms_top_n"),
        "post_nms_top_n": check_int(post_nms_top_n, "post_nms_top_n"),
        "rpn_nms_iou": fraction(rpn_nms_iou, "rpn_nms_iou"),
        "min_size": non_negative(min_size, "min_size"),
        "batch_size_per_image": check_int(batch_size_per_image, "batch_size_per_image"),
        "positive_fraction": fraction(positive_fraction, "positive_fraction"),
        "positive_iou": positive_iou,
        "negative_iou": negative_iou,
        "allowed_border": None
        if allowed_border is None
        else non_negative(allowed_border, "allowed_border"),
        "rpn_smooth_l1_beta": non_negative(rpn_smooth_l1_beta, "rpn_smooth_l1_beta"),
    }


def loss_weight_config(loss_weights, names):
    """`{name: weight}` for every loss in `names` (default 1), checked."""
    loss_weights = dict(loss_weights or {})
    unknown = sorted(set(loss_weights) - set(names))
    if unknown:
        raise ValueError(
            f"loss_weights has unknown keys {unknown}; expected some of {list(names)}."
        )
    return {n: non_negative(loss_weights.get(n, 1.0), f"loss_weights[{n!r}]") for n in names}


def build_rpn_graph(images, config):
    """Backbone, RPN head, anchors and proposals on the `images` KerasTensor.

    Returns:
        A dict of KerasTensors (`features`, `objectness`, `box_deltas`,
        `anchors`, `proposals`, `proposal_scores`, `num_proposals`) and
        the `backbone` model and `stride`.
    """
    filters = config["light_filters"]
    stride = 16 if config["backbone"] == "vgg16" else 2 ** (len(filters) - 1)
    backbone, stride, _ = build_backbone(
        config["backbone"], config["width"], filters, min_size=max(32, 2 * stride)
    )
    anchor_generator = AnchorGenerator(
        config["anchor_scales"], config["aspect_ratios"], stride, name="anchors"
    )
    features = backbone(images)
    head = rpn_head_layers(config["rpn_channels"], anchor_generator.num_anchors)
    objectness, box_deltas = apply_rpn_head(features, head)
    anchors = anchor_generator(features)
    proposals, scores, count = ProposalLayer(
        config["pre_nms_top_n"],
        config["post_nms_top_n"],
        config["rpn_nms_iou"],
        config["min_size"],
        name="proposals",
    )([objectness, box_deltas, anchors, images])
    return {
        "features": features,
        "objectness": objectness,
        "box_deltas": box_deltas,
        "anchors": anchors,
        "proposals": proposals,
        "proposal_scores": scores,
        "num_proposals": count,
        "backbone": backbone,
        "stride": stride,
    }


def sampling_seeds():
    """The seeds of a model's anchor and RoI minibatch sampling: a Keras
    `SeedGenerator` (seeded from Python's random state, so by `--seed`)
    whose state is a variable of the model, saved in a run's resume state,
    so that a resumed run samples what an uninterrupted one would."""
    return keras.random.SeedGenerator(name="sampling_seeds")


def rpn_loss_terms(model, images, ground_truth, outputs):
    """The two RPN losses of `model` (an RPN or MNC) on prepared ground truth."""
    config = model._config
    gt_boxes, _, gt_valid, _ = ground_truth
    image_size = None
    if config["allowed_border"] is not None:
        image_size = tf.shape(images)[1:3]
    objectness_loss, box_loss = rpn_losses(
        outputs["objectness"],
        outputs["box_deltas"],
        outputs["anchors"],
        gt_boxes,
        gt_valid,
        batch_size_per_image=config["batch_size_per_image"],
        positive_fraction=config["positive_fraction"],
        positive_iou=config["positive_iou"],
        negative_iou=config["negative_iou"],
        smooth_l1_beta=config["rpn_smooth_l1_beta"],
        image_size=image_size,
        allowed_border=config["allowed_border"] or 0.0,
        seed=model.sampling_seeds.next(),
    )
    return {"rpn_objectness": objectness_loss, "rpn_box": box_loss}


class InstanceModelMixin:
    """Training plumbing shared by `RegionProposalNetwork` and MNC.

    The subclass sets `_training_call` (the training-mode graph as a bound
    method), `_loss_names`, `_config` (with `loss_weights`) and implements
    `_loss_terms(images, targets, outputs)`.
    """

    def _make_trackers(self):
        self._loss_trackers = [keras.metrics.Mean(name=f"{name}_loss") for name in self._loss_names]

    def compile(self, optimizer="rmsprop", **kwargs):
        """`keras.Model.compile` without `loss`, `loss_weights` or metrics:
        the losses are built in (weigh them with the builder's
        `loss_weights`) and reported as metrics."""
        given = [
            k for k in ("loss", "loss_weights", "metrics", "weighted_metrics") if kwargs.get(k)
        ]
        if given:
            raise ValueError(
                f"{type(self).__name__} computes its own losses from the targets and reports "
                f"each as a metric; compile it without {', '.join(given)} (weigh the losses "
                "with the builder's loss_weights)."
            )
        super().compile(optimizer=optimizer, **kwargs)

    def call(self, inputs, training=None, mask=None):
        if training:
            return self._training_call(inputs, training=True)
        return super().call(inputs, training=training, mask=mask)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if y is None:
            raise ValueError(
                f"{type(self).__name__} computes its losses from the ground truth: pass "
                "(images, targets) with targets a dict of 'boxes', 'labels'"
                + (" and 'masks'" if "mask" in self._loss_names else "")
                + "."
            )
        if not isinstance(y_pred, dict):
            # evaluate() calls the inference graph; the losses need the heads.
            y_pred = self._training_call(x, training=False)
        terms = self._loss_terms(x, y, y_pred)
        weights = self._config["loss_weights"]
        total = tf.add_n([weights[name] * terms[name] for name in self._loss_names])
        for tracker, name in zip(self._loss_trackers, self._loss_names):
            tracker.update_state(terms[name])
        if self.losses:
            total = total + tf.add_n([tf.cast(loss, total.dtype) for loss in self.losses])
        return total

    def instance_losses(self, images, targets, training=False):
        """Every loss term on one batch, eagerly: a dict of float scalars.

        Args:
            images: `(batch, h, w, 3)` pixels.
            targets: dict of `boxes`, `labels` (and `masks` for MNC).
            training: bool. Run the network in training mode.
        """
        images = tf.convert_to_tensor(images)
        outputs = self._training_call(images, training=training)
        return self._loss_terms(images, targets, outputs)

    def get_config(self):
        # Plain containers: Keras tracks a model's dict attributes (its
        # TrackedDict refers back to the model, which a copy cannot take).
        config = {k: dict(v) if isinstance(v, dict) else v for k, v in self._config.items()}
        return {"name": self.name, "trainable": self.trainable, **config}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


@keras.saving.register_keras_serializable(package="keras_segattn")
class RegionProposalNetwork(InstanceModelMixin, keras.Model):
    """Faster R-CNN's region proposal network; build it with `rpn`.

    A functional model from `images` `(batch, h, w, 3)` (pixels in [0, 255],
    any size of at least 32) to `[boxes (batch, post_nms_top_n, 4),
    scores (batch, post_nms_top_n), num_proposals (batch,)]`. In training
    mode it returns the raw head outputs, and `compute_loss` assigns the
    anchor targets from `(images, {"boxes", "labels"})` and adds the
    objectness and box losses (tracked as `rpn_objectness_loss` and
    `rpn_box_loss`); compile without a loss. `detect` gives the
    `"instance"` serving outputs.

    Args: those of `rpn`.
    """

    def __init__(self, loss_weights=None, name="rpn", **kwargs):
        config_keys = rpn_config.__code__.co_varnames[: rpn_config.__code__.co_argcount]
        base_kwargs = {k: kwargs.pop(k) for k in list(kwargs) if k not in config_keys}
        config = rpn_config(**kwargs)
        config["loss_weights"] = loss_weight_config(loss_weights, RPN_LOSSES)
        images = keras.Input(shape=(None, None, 3), name="images")
        graph = build_rpn_graph(images, config)
        outputs = [graph["proposals"], graph["proposal_scores"], graph["num_proposals"]]
        super().__init__(images, outputs, name=name, **base_kwargs)
        training_outputs = {
            k: graph[k] for k in ("features", "objectness", "box_deltas", "anchors")
        }
        # A bound method, not a tracked sub-model: the weights stay this model's.
        self._training_call = keras.Model(images, training_outputs).__call__
        self.backbone = graph["backbone"]
        self.stride = graph["stride"]
        self._config = config
        self._loss_names = RPN_LOSSES
        self.sampling_seeds = sampling_seeds()
        self._make_trackers()

    def _loss_terms(self, images, targets, outputs):
        boxes, labels, _ = check_targets(images, targets, num_classes=2**30, need_masks=False)
        ground_truth = prepare_ground_truth(images, boxes, labels)
        return rpn_loss_terms(self, images, ground_truth, outputs)

    def detect(self, images):
        """The `"instance"` serving outputs: proposals as class-1 detections.

        Args:
            images: `(batch, h, w, 3)` pixels in [0, 255], uint8 or float.

        Returns:
            A dict: `boxes` float32 `(batch, post_nms_top_n, 4)`, `scores`
            (objectness probabilities), `classes` int32 (1, "object", for
            every proposal, 0 for padding), `masks` uint8 `(batch,
            post_nms_top_n, h, w)` (the boxes filled: an RPN has no masks)
            and `num_detections` int32 `(batch,)`.
        """
        images = tf.convert_to_tensor(images)
        check_image_shape(images.shape, min_size=1, channels=3, where="images")
        boxes, scores, count = self(images, training=False)
        shape = tf.shape(images)
        valid = valid_slots(count, self._config["post_nms_top_n"])
        return {
            "boxes": boxes,
            "scores": scores,
            "classes": tf.cast(valid, tf.int32),
            "masks": box_masks(boxes, (shape[1], shape[2])),
            "num_detections": count,
        }


@register_model("rpn", task="instance", paper=PAPER, tiny=TINY)
def rpn(
    backbone="vgg16",
    weights=None,
    num_classes=None,
    **kwargs,
):
    """Builds Faster R-CNN's region proposal network.

    Args:
        backbone: str. `"vgg16"` (conv5_3, stride 16, as in the paper) or
            `"light"` (a small CNN for CPUs, stride `2 ** (len(light_filters)
            - 1)`). Defaults to `"vgg16"`.
        weights: `None`, `"imagenet"` (the VGG16 backbone's ImageNet
            weights; `backbone="vgg16"`, `width=1.0`) or the path of a
            `.weights.h5` / `.keras` file of this model. Defaults to `None`.
        width: float. Channel multiplier of the backbone. Defaults to `1.0`.
        light_filters: tuple of int. `"light"` backbone: channels of each
            stage (two 3x3 convolutions, 2x2 max-pooling between stages).
            Defaults to `(32, 64, 128, 128)` (stride 8).
        rpn_channels: int or `None`. Channels of the 3x3 RPN convolution;
            `None`: 512 (times `width`) for VGG16, the backbone's for the
            light CNN.
        anchor_scales: tuple of float or `None`. Anchor sides in pixels;
            `None`: MNC's `(64, 128, 256, 512)` for VGG16 (12 anchors with
            the 3 ratios), `stride * (2, 4, 8)` for the light CNN.
        aspect_ratios: tuple of float. Height / width. Defaults to `(0.5,
            1, 2)`.
        pre_nms_top_n: int. Boxes kept by objectness before NMS. Defaults
            to `6000` (the MNC code's test setting).
        post_nms_top_n: int. Proposals kept after NMS. Defaults to `300`.
        rpn_nms_iou: float. NMS IoU threshold. Defaults to `0.7`.
        min_size: float. Proposals narrower or shorter (pixels) are dropped.
            Defaults to `0`.
        batch_size_per_image: int. Anchors sampled per image. Defaults to
            `256`.
        positive_fraction: float. Largest share of positives. Defaults to
            `0.5`.
        positive_iou: float. Defaults to `0.7`.
        negative_iou: float. Defaults to `0.3`.
        allowed_border: float or `None`. Ignore anchors crossing the border
            by more than this many pixels in training (`0` in the paper);
            `None` keeps every anchor. Defaults to `None`.
        rpn_smooth_l1_beta: float. Smooth L1 threshold. Defaults to `1/9`.
        loss_weights: dict or `None`. Weights of `"rpn_objectness"` and
            `"rpn_box"` (default 1 each).
        num_classes: ignored (class-agnostic); accepted so that every
            instance builder takes it.
        name: str. Defaults to `"rpn"`.

    Returns:
        A `RegionProposalNetwork`.

    Raises:
        ValueError: an unknown backbone, bad sizes, thresholds or loss
            weights, `weights="imagenet"` with the light backbone or
            `width != 1`.

    Examples:

    ```python
    model = rpn(backbone="light")
    model.compile(keras.optimizers.Adam(1e-3))
    model.fit(instance_pipeline(dataset, 8, image_size=64), epochs=5)
    boxes, scores, count = model.predict(images)
    ```
    """
    del num_classes
    if weights == "imagenet" and backbone != "vgg16":
        raise ValueError(
            "weights='imagenet' needs backbone='vgg16' (the light CNN has no pretrained "
            f"weights); got backbone={backbone!r}."
        )
    model = RegionProposalNetwork(
        backbone=backbone,
        **kwargs,
    )
    return load_backbone_weights(model, weights)


def load_backbone_weights(model, weights):
    """`"imagenet"` into the VGG16 backbone, or a file of the whole model."""
    if weights == "imagenet":
        load_vgg16_weights(
            model.backbone, "imagenet", width=model._config["width"], include_fc=False
        )
        return model
    return load_saved_weights(model, weights)
