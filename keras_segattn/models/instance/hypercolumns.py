"""Hypercolumns (Hariharan, Arbeláez, Girshick and Malik, CVPR 2015).

Figure-ground segmentation of detections: given an image and detection
boxes (with their classes), predict for every location of an `M x M` grid
over each box whether it belongs to the detected object. The feature of a
location is its *hypercolumn*, the stack of the activations of several
layers of a CNN above that location (pool2, conv4 and fc7 in the paper),
each layer's feature map upsampled to the box's grid.

How the pieces map onto this implementation:

- **Backbone.** VGG16 (`keras_segattn.models.backbones`' layer names, a
  `width` multiplier for CPU; `weights="imagenet"` loads the ImageNet
  convolutions and the `fc1`/`fc2` classifier into `fc6`/`fc7`). The paper
  used the R-CNN fine-tuned AlexNet or VGG16.
- **Taps.** `pool2` (stride 4), `block4_conv3` ("conv4", stride 8),
  `block5_conv3` (stride 16) and `fc7`: the box's RoIAlign of
  `block5_conv3` to 7x7, then `fc6` and `fc7` (the Fast R-CNN form of
  R-CNN's per-box fc7). fc7 is one vector per box, the same at every
  location: only the location-specific classifiers below let it say where
  in the box the object is.
- **Classify, then upsample.** The hypercolumn classifier is linear, so
  upsampling every layer's feature map to the box grid, concatenating and
  applying a 1x1 classifier equals applying each layer's share of the
  classifier (a 1x1 convolution) to its own map, upsampling those scores
  and summing them: the paper's efficient form (its section 3.3 and its
  "hypercolumn as a network" figure). The upsampling to `mask_size x
  mask_size` over the box is RoIAlign (by default one bilinear sample at
  each grid cell's centre: bilinear upsampling; exactly linear, with
  weights summing to one for boxes inside the image, so both orders give
  the same numbers). Computing `K^2 x classes`
  scores per layer is far cheaper than the 50 x 50 x (128 + 512 + 4096)
  hypercolumns VGG16 would need per box.
- **Location-specific classifiers.** The box is divided into a `K x K`
  grid (`grid_size`, 5 in the paper) with one classifier per cell; a
  location's score is the bilinear interpolation of the scores of the
  classifiers of the cells around it, by the location's position in the
  box (`LocationInterpolation`). Equivalently, the `K^2` classifier
  outputs form a coarse `K x K` map of classifiers that is bilinearly
  upsampled (half-pixel centres) to `M x M`, each location reading its
  own hypercolumn's scores.
- **Per category.** With `class_specific=True` (the paper trains one set
  per category) every class has its own `K^2` classifiers and the
  detection's class picks them before the upsampling: the convolutional
  taps through a class-specific `RoIAlign` (`num_groups`), which gathers
  only the box's class's `K^2` score channels (not all `classes x K^2`:
  80 x 25 on COCO), fc7 through `SelectClassGroup` (a one-hot product
  that TFLite runs); `class_specific=False` shares one set.
- **Output.** Sigmoid figure-ground probabilities `(B, N, M, M)`, trained
  with binary cross-entropy against the ground-truth mask cropped to the
  box (`hypercolumn_examples`), and pasted back into the image with the
  instance package's `common.paste_masks` (bilinear, builtin TFLite ops;
  `paste_box_masks` wraps it for one image).

Differences from the paper: the box grid is `mask_size` (default 50, as
the paper) sampled by RoIAlign rather than bilinear upsampling of whole
feature maps; the classifiers are trained end to end with the backbone
instead of on fixed fine-tuned features; no second-stage refinement with
the predicted masks. The paper's detections come from R-CNN; here any
boxes do (ground truth jittered to IoU >= 0.7 for training, as the paper's
"boxes overlapping a ground truth by 70%", or SDS's detections).
"""

import keras
import numpy as np
import tensorflow as tf

from keras_segattn.core.validation import check_int
from keras_segattn.layers import ImagePreprocessing, PadToMultiple, RoIAlign
from keras_segattn.models.backbones.vgg import (
    VGG16_BLOCKS,
    conv_bn_relu,
    scaled,
    transplant_vgg16_fc,
)
from keras_segattn.models.common import load_saved_weights
from keras_segattn.models.instance.common import (
    check_boxes,
    check_classes,
    check_image_batch,
    pad_detections,
    paste_box_masks,
    unpad_detections,
)
from keras_segattn.models.registry import register_model

PAPER = (
    "Hariharan, Arbeláez, Girshick and Malik, Hypercolumns for Object Segmentation and "
    "Fine-grained Localization, CVPR 2015"
)
TINY = {"num_classes": 3, "width": 0.0625, "mask_size": 8, "grid_size": 3, "fc_units": 8}
DEFAULT_TAPS = ("pool2", "block4_conv3", "block5_conv3", "fc7")
# fc7 reads a 7x7 RoIAlign of block5_conv3, VGG16's pool5 size, so that
# ImageNet's fc1 (25088 = 7 * 7 * 512 inputs) loads into fc6.
FC_POOL = 7
FC_SOURCE = "block5_conv3"


def _tap_strides():
    strides = {}
    for block, (num_convs, _) in enumerate(VGG16_BLOCKS, start=1):
        for i in range(1, num_convs + 1):
            strides[f"block{block}_conv{i}"] = 2 ** (block - 1)
        strides[f"pool{block}"] = 2**block
    return strides


TAP_STRIDES = _tap_strides()


# ---------------------------------------------------------------------------
# Location-specific classifiers
# ---------------------------------------------------------------------------


def interpolation_weights(size, grid_size):
    """Bilinear weights of `grid_size` classifiers at `size` positions of an axis.

    Classifier `i` sits at the centre of the `i`-th of `grid_size` equal
    cells of the box; position `y` (the centre of the `y`-th of `size`
    cells) is at `u = (y + 0.5) * grid_size / size - 0.5` in classifier
    units, clamped to `[0, grid_size - 1]` (the outer half-cells take the
    border classifier), and weighs classifier `i` by `max(0, 1 - |u - i|)`.
    That is `tf.image.resize`'s bilinear rule with half-pixel centres.

    Returns:
        float64 `(size, grid_size)`, rows summing to 1.
    """
    u = (np.arange(size) + 0.5) * grid_size / size - 0.5
    u = np.clip(u, 0.0, grid_size - 1.0)
    return np.maximum(0.0, 1.0 - np.abs(u[:, None] - np.arange(grid_size)[None, :]))


def location_weights(height, width, grid_size):
    """`(height, width, grid_size**2)` weights; classifier `i * grid_size + j`
    is the one of grid row `i`, column `j`."""
    wy = interpolation_weights(height, grid_size)
    wx = interpolation_weights(width, grid_size)
    weights = wy[:, None, :, None] * wx[None, :, None, :]
    return weights.reshape(height, width, grid_size * grid_size)


@keras.saving.register_keras_serializable(package="keras_segattn")
class LocationInterpolation(keras.layers.Layer):
    """Blends a `K x K` grid of classifiers by each location's place in its box.

    The location-specific classifiers of Hypercolumns: input `(..., M_h,
    M_w, K^2)` holds, at every location of an `M_h x M_w` box grid, the
    scores of the `K^2` classifiers (grid row-major) on that location's
    hypercolumn; the output `(..., M_h, M_w)` weighs them with the bilinear
    weights of the location's position among the classifiers' cell
    centres (`location_weights`). Elementwise `MUL` and `SUM` only.

    Args:
        grid_size: int. `K`, classifiers per side of the box. Defaults to
            `5`, the paper's.
    """

    def __init__(self, grid_size=5, **kwargs):
        super().__init__(**kwargs)
        self.grid_size = check_int(grid_size, "grid_size")

    def build(self, input_shape):
        height, width, channels = tuple(input_shape)[-3:]
        if height is None or width is None:
            raise ValueError(
                "LocationInterpolation needs a static mask height and width; got input shape "
                f"{tuple(input_shape)}."
            )
        if channels != self.grid_size**2:
            raise ValueError(
                f"LocationInterpolation with grid_size={self.grid_size} expects "
                f"{self.grid_size**2} classifier scores in the last axis; got input shape "
                f"{tuple(input_shape)}."
            )
        self._location_weights = location_weights(height, width, self.grid_size).astype("float32")

    def call(self, inputs):
        weights = tf.constant(self._location_weights, dtype=inputs.dtype)
        return tf.reduce_sum(inputs * weights, axis=-1)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)[:-1]

    def get_config(self):
        config = super().get_config()
        config.update({"grid_size": self.grid_size})
        return config


@keras.saving.register_keras_serializable(package="keras_segattn")
class SelectClassGroup(keras.layers.Layer):
    """Picks each box's class's group of channels.

    Inputs `[scores, classes]`: `scores` `(B, N, ..., num_groups *
    group_size)` with group `g` in channels `g * group_size ... (g + 1) *
    group_size - 1`, `classes` `(B, N)` int class ids `1..num_groups` (0 is
    the background, which has no group). Output `(B, N, ..., group_size)`:
    box `n`'s group `classes[n] - 1`. A class outside `1..num_groups` picks
    nothing (zeros): the graph cannot raise, so host code checks classes.
    Builtin TFLite ops (`ONE_HOT`, `MUL`, `SUM`).

    Args:
        num_groups: int. Number of object classes.
        group_size: int. Channels per class.
    """

    def __init__(self, num_groups, group_size, **kwargs):
        super().__init__(**kwargs)
        self.num_groups = check_int(num_groups, "num_groups")
        self.group_size = check_int(group_size, "group_size")

    def build(self, input_shape):
        scores_shape, classes_shape = input_shape
        if scores_shape[-1] != self.num_groups * self.group_size:
            raise ValueError(
                f"SelectClassGroup expects {self.num_groups} x {self.group_size} = "
                f"{self.num_groups * self.group_size} channels; got scores of shape "
                f"{tuple(scores_shape)}."
            )
        if len(classes_shape) != 2:
            raise ValueError(f"classes must be (batch, num_boxes); got shape {classes_shape}.")

    def call(self, inputs):
        scores, classes = inputs
        shape = tf.shape(scores)
        grouped = tf.reshape(scores, [shape[0], shape[1], -1, self.num_groups, self.group_size])
        # A comparison, not tf.one_hot: a class id outside 1..num_groups
        # (0, "no class") picks nothing in every runtime, where ONNX's OneHot
        # would wrap the index -1 around to the last group.
        groups = tf.range(1, self.num_groups + 1)
        ids = tf.expand_dims(tf.cast(classes, tf.int32), -1)
        one_hot = tf.cast(tf.equal(ids, groups), scores.dtype)
        # A reshape, not one_hot[:, :, None, :, None]: TFLite has no builtin
        # strided slice with new axes.
        one_hot = tf.reshape(one_hot, [shape[0], shape[1], 1, self.num_groups, 1])
        picked = tf.reduce_sum(grouped * one_hot, axis=3)
        out_shape = tf.concat([shape[:-1], [self.group_size]], axis=0)
        return tf.reshape(picked, out_shape)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[0])[:-1] + (self.group_size,)

    def get_config(self):
        config = super().get_config()
        config.update({"num_groups": self.num_groups, "group_size": self.group_size})
        return config


# ---------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------


def _check_taps(taps):
    allowed = sorted(TAP_STRIDES) + ["fc7"]
    if not isinstance(taps, (list, tuple)) or not taps or len(set(taps)) != len(taps):
        raise ValueError(f"taps must be a non-empty tuple of distinct names; got taps={taps!r}.")
    unknown = [t for t in taps if t not in allowed]
    if unknown:
        raise ValueError(f"Unknown taps {unknown}; expected names among {allowed}.")
    return tuple(taps)


def _vgg16_features(x, width, last_block):
    """VGG16's convolutions up to `last_block`; every conv and pool output by name."""
    outputs = {}
    for block, (num_convs, channels) in enumerate(VGG16_BLOCKS[:last_block], start=1):
        for i in range(1, num_convs + 1):
            x = conv_bn_relu(x, scaled(channels, width), 3, f"block{block}_conv{i}", False)
            outputs[f"block{block}_conv{i}"] = x
        x = keras.layers.MaxPooling2D(2, name=f"block{block}_pool")(x)
        outputs[f"pool{block}"] = x
    return outputs


def _block_of(tap):
    if tap == "fc7":
        return 5
    return int(tap[len("pool") :]) if tap.startswith("pool") else int(tap[5])


def _load_weights(model, weights, width, fc_units, taps):
    if weights is None:
        return model
    if isinstance(weights, str) and weights == "imagenet":
        if width != 1.0 or ("fc7" in taps and fc_units != 4096):
            raise ValueError(
                "weights='imagenet' needs the full VGG16: width=1.0 and fc_units=4096; got "
                f"width={width!r}, fc_units={fc_units!r}. Use weights=None for small variants."
            )
        source = keras.applications.VGG16(weights="imagenet", include_top="fc7" in taps)
        for layer in source.layers:
            if layer.name.startswith("block") and layer.weights:
                try:
                    model.get_layer(layer.name).set_weights(layer.get_weights())
                except ValueError:
                    continue  # a block beyond the deepest tap
        if "fc7" in taps:
            transplant_vgg16_fc(source, model)
        return model
    return load_saved_weights(model, weights)


@keras.saving.register_keras_serializable(package="keras_segattn")
class HypercolumnNetwork(keras.Model):
    """The `hypercolumns` network (built by `hypercolumns`): images and
    boxes (and, class-specific, their classes) in, box-grid mask
    probabilities out, plus `detect`, which segments a detector's boxes.

    Attributes:
        num_classes: int or `None`. Classes, the background included, of a
            class-specific network; `None` for a class-agnostic one.
    """

    # Built as a functional model: `HypercolumnNetwork(inputs, outputs,
    # name=...)`; a `.keras` file revives it the same way.

    @property
    def num_classes(self):
        return model_num_classes(self)

    def detect(self, images, detector=None, boxes=None, classes=None, threshold=0.5):
        """Instances of a batch of images: the boxes of a `detector` (or the
        `boxes` given), each segmented by this network (host side), with
        the detector's classes and scores: the paper's use, on R-CNN's
        detections there.

        Args:
            images: `(batch, H, W, 3)` RGB pixels, uint8 (or float when no
                detector needs uint8).
            detector: any instance model (`sds`, `mnc`, `rpn`): its
                `detect(images)` gives the boxes, classes and scores.
            boxes: instead of a detector, one `(N, 4)` `"xyxy"` array per
                image (scored by the mean probability inside each mask).
            classes: with `boxes`, one `(N,)` array of class ids per image
                (needed by a class-specific network).
            threshold: float. The masks' probability threshold.

        Returns:
            The structure every instance model's `detect` returns
            (`models.instance.common.pad_detections`), as NumPy arrays.

        Raises:
            ValueError: unless exactly one of `detector` and `boxes` is
                given, or for boxes or classes `segment_boxes` refuses.
        """
        images = check_image_batch(images, uint8=False)
        if (detector is None) == (boxes is None):
            raise ValueError(
                "hypercolumns segments the boxes of a detector: pass detector= (an instance "
                "model, e.g. an sds one) or boxes= (one (N, 4) array an image), not both."
            )
        if detector is not None:
            found = {k: np.asarray(v) for k, v in detector.detect(images).items()}
            asked = [unpad_detections(found, row) for row in range(len(images))]
        else:
            if len(boxes) != len(images):
                raise ValueError(
                    f"boxes needs one array per image; got {len(boxes)} arrays "
                    f"for {len(images)} images."
                )
            classes = [None] * len(images) if classes is None else classes
            asked = [{"boxes": b, "labels": c, "scores": None} for b, c in zip(boxes, classes)]
        results = [
            segment_boxes(self, image, a["boxes"], a["labels"], a["scores"], threshold=threshold)
            for image, a in zip(images, asked)
        ]
        return pad_detections(results, images.shape)


@register_model(
    "hypercolumns", task="instance", paper=PAPER, tiny=TINY, serving_task="box_segmentation"
)
def hypercolumns(
    num_classes=21,
    width=1.0,
    mask_size=50,
    grid_size=5,
    taps=DEFAULT_TAPS,
    fc_units=None,
    class_specific=True,
    sampling_ratio=1,
    weights=None,
    name="hypercolumns",
):
    """Builds the Hypercolumns figure-ground network for detection boxes.

    See the module docstring for the architecture. The input images are
    raw RGB pixels (uint8 or float in `[0, 255]`) of any size of at least
    16 pixels; they are normalised inside (VGG's "caffe" mode) and padded at
    the bottom and right to the deepest tap's stride, which moves no box.

    Args:
        num_classes: int. Classes including the background (class 0), as
            the instance datasets count them. Defaults to `21` (VOC).
        width: float. Channel multiplier of VGG16. Defaults to `1.0`.
        mask_size: int or tuple `(height, width)`. The box grid `M`.
            Defaults to `50`, the paper's.
        grid_size: int. `K`, the location-specific classifiers per side
            (`K = 1` is one classifier for the whole box). Defaults to `5`.
        taps: tuple of str. Layers whose features form the hypercolumn:
            `"pool1"` ... `"pool5"`, `"block{b}_conv{i}"`, and `"fc7"` (the
            per-box fc6/fc7 on a 7x7 RoIAlign of `block5_conv3`). Defaults
            to `("pool2", "block4_conv3", "block5_conv3", "fc7")`.
        fc_units: int or `None`. Width of fc6 and fc7; `None` is
            `4096 * width`. Defaults to `None`.
        class_specific: bool. One set of `K^2` classifiers per class, picked
            by the `classes` input (the paper); `False` shares one set and
            the model takes no `classes`. Defaults to `True`.
        sampling_ratio: int. RoIAlign samples per grid cell and axis when
            the taps' scores are resampled to the box grid. Defaults to
            `1`: one bilinear sample at each cell centre, the paper's
            bilinear upsampling (the box grid is finer than the feature
            maps, so more samples barely change it and cost 4x the
            gathers). The fc7 tap's 7x7 pooling always takes 2.
        weights: `None`, `"imagenet"` (VGG16's ImageNet convolutions and
            fc1/fc2; needs `width=1.0` and `fc_units=4096`, downloads the
            first time) or the path of a `.weights.h5` / `.keras` file of
            this model. Defaults to `None`.
        name: str. Defaults to `"hypercolumns"`.

    Returns:
        A `HypercolumnNetwork` with inputs `images` `(B, H, W, 3)`, `boxes` `(B,
        N, 4)` float `"xyxy"` pixels inside the image, and (with
        `class_specific`) `classes` `(B, N)` int32 ids `1..num_classes - 1`,
        and output `masks`: `(B, N, M, M)` float32 figure-ground
        probabilities on each box's grid. The graph cannot validate boxes
        or classes; `segment_boxes` does on the host.

    Examples:

    ```python
    model = hypercolumns(num_classes=4, width=0.25, mask_size=28)
    probabilities = model([images, boxes, classes])  # (B, N, 28, 28)
    masks = paste_masks(probabilities, boxes, images.shape[1:3]) > 0.5  # instance.common
    ```
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an int >= 2; got num_classes={num_classes!r}.")
    if not (isinstance(width, (int, float)) and 0 < width <= 4):
        raise ValueError(f"width must be a float in (0, 4]; got width={width!r}.")
    mask_hw = (mask_size, mask_size) if isinstance(mask_size, (int, np.integer)) else mask_size
    if not isinstance(mask_hw, (list, tuple)) or len(mask_hw) != 2:
        raise ValueError(f"mask_size must be an int or (height, width); got {mask_size!r}.")
    mask_hw = tuple(check_int(s, "mask_size") for s in mask_hw)
    grid_size = check_int(grid_size, "grid_size")
    taps = _check_taps(taps)
    if fc_units is None:
        fc_units = scaled(4096, width)
    fc_units = check_int(fc_units, "fc_units")
    groups = num_classes - 1 if class_specific else 1
    scores_per_tap = groups * grid_size**2

    images = keras.Input(shape=(None, None, 3), name="images")
    boxes = keras.Input(shape=(None, 4), name="boxes")
    inputs = [images, boxes]
    if class_specific:
        classes = keras.Input(shape=(None,), dtype="int32", name="classes")
        inputs.append(classes)

    # === Backbone ===
    stride = max(TAP_STRIDES[t] if t != "fc7" else TAP_STRIDES[FC_SOURCE] for t in taps)
    x = ImagePreprocessing("caffe", min_size=16, name="preprocessing")(images)
    x = PadToMultiple(stride, name="pad_to_stride")(x)
    features = _vgg16_features(x, width, max(_block_of(t) for t in taps))

    # === Hypercolumn classifiers ===
    # Each box reads only its class's K^2 scores ("Per category" above);
    # class ids 1..N are groups 0..N - 1.
    if class_specific:
        groups_in = keras.ops.subtract(classes, 1)
    scores = []
    for tap in taps:
        if tap == "fc7":
            pooled = RoIAlign(
                FC_POOL,
                sampling_ratio=2,
                spatial_scale=1.0 / TAP_STRIDES[FC_SOURCE],
                name="fc_roi_align",
            )([features[FC_SOURCE], boxes])
            flat = keras.layers.Reshape(
                (-1, FC_POOL * FC_POOL * pooled.shape[-1]), name="fc_flatten"
            )(pooled)
            fc = keras.layers.Dense(fc_units, activation="relu", name="fc6")(flat)
            fc = keras.layers.Dense(fc_units, activation="relu", name="fc7")(fc)
            fc = keras.layers.Dense(
                scores_per_tap, kernel_initializer="zeros", name="fc7_classifier"
            )(fc)
            fc = keras.layers.Reshape((-1, 1, 1, scores_per_tap), name="fc7_grid")(fc)
            if class_specific:
                fc = SelectClassGroup(groups, grid_size**2, name="fc7_select_class")([fc, classes])
            scores.append(fc)
        else:
            # Zero-initialised like FCN's score layers: the unnormalised VGG
            # activations would otherwise start the sigmoid saturated.
            tap_scores = keras.layers.Conv2D(
                scores_per_tap, 1, kernel_initializer="zeros", name=f"{tap}_classifier"
            )(features[tap])
            roi_inputs = [tap_scores, boxes] + ([groups_in] if class_specific else [])
            scores.append(
                RoIAlign(
                    mask_hw,
                    sampling_ratio=sampling_ratio,
                    spatial_scale=1.0 / TAP_STRIDES[tap],
                    num_groups=groups if class_specific else None,
                    name=f"{tap}_roi_align",
                )(roi_inputs)
            )
    total = scores[0] if len(scores) == 1 else keras.layers.Add(name="hypercolumn_scores")(scores)
    if len(scores) == 1 and taps[0] == "fc7":
        # A lone fc7 tap still needs the box grid.
        total = keras.layers.UpSampling3D((1, *mask_hw), name="fc7_to_grid")(total)
    logits = LocationInterpolation(grid_size, name="location_interpolation")(total)
    masks = keras.layers.Activation("sigmoid", dtype="float32", name="masks")(logits)
    model = HypercolumnNetwork(inputs, masks, name=name)
    return _load_weights(model, weights, width, fc_units, taps)


# ---------------------------------------------------------------------------
# Pasting and host-side inference
# ---------------------------------------------------------------------------


def model_num_classes(model):
    """Classes (background included) of a class-specific hypercolumns model,
    or `None` for a class-agnostic one."""
    # The class-specific classifiers' groups: a `SelectClassGroup` (fc7) or
    # a class-specific `RoIAlign` (the convolutional taps).
    groups = [getattr(layer, "num_groups", None) for layer in model.layers]
    groups = [g for g in groups if g is not None]
    return groups[0] + 1 if groups else None


def segment_boxes(model, image, boxes, classes=None, scores=None, image_id=0, threshold=0.5):
    """Segments the detections of one image with a hypercolumns model (host).

    Checks the inputs, runs the model, pastes the masks at image
    resolution, and returns them in the format of
    `keras_segattn.evaluation.instance.evaluate_instances`.

    Args:
        model: a `hypercolumns` model.
        image: uint8 or float `(H, W, 3)` RGB pixels.
        boxes: `(N, 4)` `"xyxy"` pixels inside the image.
        classes: `(N,)` class ids `1..num_classes - 1`; required by a
            class-specific model, used as labels otherwise (default all 1).
        scores: `(N,)` detection scores or `None`, which scores each box by
            the mean probability inside its predicted mask (how sure the
            network is of the segmentation). Defaults to `None`.
        image_id: int. Defaults to `0`.
        threshold: float. Probability threshold of the masks. Defaults to
            `0.5`.

    Returns:
        A dict with `image_id`, `boxes` `(N, 4)`, `scores` `(N,)`, `labels`
        `(N,)` and `masks` uint8 `(N, H, W)`, and `probabilities` `(N, M,
        M)`, the box-grid outputs.

    Raises:
        ValueError: for an image that is not `(H, W, 3)`, boxes outside the
            image or degenerate, or classes out of range.
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"image must be an (H, W, 3) RGB array; got shape {image.shape}.")
    boxes = check_boxes(boxes, image.shape)
    num_classes = model_num_classes(model)
    count = len(boxes)
    if num_classes is not None:
        if classes is None:
            raise ValueError("This hypercolumns model is class-specific: pass classes.")
        classes = check_classes(classes, num_classes, count)
    elif classes is None:
        classes = np.ones(count, np.int32)
    else:
        classes = check_classes(classes, np.iinfo(np.int32).max, count)
    height, width = image.shape[:2]
    if count == 0:
        mask_shape = model.output.shape[-2:]
        return {
            "image_id": image_id,
            "boxes": boxes,
            "scores": np.zeros(0, np.float32),
            "labels": classes,
            "masks": np.zeros((0, height, width), np.uint8),
            "probabilities": np.zeros((0, *mask_shape), np.float32),
        }
    inputs = [image[None].astype(np.float32), boxes[None]]
    if num_classes is not None:
        inputs.append(classes[None])
    probabilities = keras.ops.convert_to_numpy(model(inputs, training=False))[0]
    masks = paste_box_masks(probabilities, boxes, (height, width), threshold=threshold)
    if scores is None:
        inside = probabilities > threshold
        scores = np.array(
            [p[m].mean() if m.any() else 0.0 for p, m in zip(probabilities, inside)], np.float32
        )
    scores = np.asarray(scores, np.float32).reshape(count)
    return {
        "image_id": image_id,
        "boxes": boxes,
        "scores": scores,
        "labels": classes,
        "masks": masks,
        "probabilities": probabilities,
    }


def resegment_detections(model, image, detections, threshold=0.5):
    """Replaces the masks of detections with the hypercolumns model's (host).

    The paper's use: segment the boxes a detector found (R-CNN there; here
    e.g. `sds.sds_detect`'s), keeping their labels and scores.

    Args:
        model: a `hypercolumns` model.
        image: `(H, W, 3)` RGB pixels.
        detections: dict with `boxes` `(K, 4)`, `labels` `(K,)`, `scores`
            `(K,)` and optionally `image_id`, as `evaluate_instances` takes.
        threshold: float. Mask threshold. Defaults to `0.5`.

    Returns:
        A new dict like `detections` with the model's `masks` (uint8 `(K, H,
        W)`).
    """
    result = segment_boxes(
        model,
        image,
        detections["boxes"],
        detections["labels"],
        scores=detections["scores"],
        image_id=detections.get("image_id", 0),
        threshold=threshold,
    )
    result.pop("probabilities")
    return result
