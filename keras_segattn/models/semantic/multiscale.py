"""The multiscale ConvNet of Farabet, Couprie, Najman and LeCun (TPAMI 2013).

The image (YUV by default) is turned into a 3-level Laplacian pyramid
(scales 1, 1/2, 1/4, each level locally contrast-normalised over 15x15
neighbourhoods); ONE ConvNet, its weights shared by every scale, maps each
level to features; the coarser feature maps are upsampled to the finest
one's resolution ("by replication" in the paper) and concatenated (3 x 256
= 768 features per location), and a per-pixel classifier (a 1x1
convolution, or a 2-layer MLP) scores the classes. The network has three
stages of 7x7 convolutions with 16, 64 and 256 maps and tanh, with 2x2
max-pooling after the first two, so each location of the finest feature
map sees 46x46 pixels of its scale: 46x46, 92x92 and 184x184 of the image.

Differences from the paper, each for a reason:
- Fully connected filter banks instead of random sparse connection tables
  (the tables only saved computation in 2013).
- "same" padding in the convolutions, the input zero-padded to a multiple
  of the total stride (`2 ** (levels - 1)` times the tower's) and the
  output cropped back, as every model of the package: any image of at
  least 32 pixels (and the stride) gives scores of exactly its size.
- The logits, at a quarter of the resolution, are upsampled bilinearly to
  the input size; for the linear classifier that is the same as
  classifying bilinearly upsampled features, at 1/16 of the cost.
- Local contrast normalisation of every channel of every level (see
  `ImagePyramid`); the paper's exact treatment of U and V is not confirmed.
- No post-processing: the superpixels, CRF and optimal-cover variants of
  the paper work on these per-pixel scores and are left out of the model.
"""

import keras
import numpy as np
import tensorflow as tf

from keras_segattn.core.validation import check_int
from keras_segattn.layers.image_pyramid import ImagePyramid, replicate
from keras_segattn.models.common import (
    check_common_arguments,
    image_stem,
    load_saved_weights,
    segmentation_head,
)
from keras_segattn.models.registry import register_model

PAPER = (
    "Farabet, Couprie, Najman and LeCun, Learning Hierarchical Features for Scene Labeling, "
    "TPAMI 2013"
)
TINY = {"num_classes": 3, "width": 0.125}
FILTERS = (16, 64, 256)
POOL = 2
# Every semantic model of the package accepts images of 32 pixels and more.
MIN_SIZE = 32
UPSAMPLINGS = ("nearest", "bilinear")
COLORS = ("yuv", "rgb")
# Analog YUV (BT.601), what Torch's image.rgb2yuv computes; rows are
# R, G, B and columns Y, U, V, the layout of a 1x1 convolution kernel.
RGB_TO_YUV = np.array(
    [
        [0.299, -0.14713, 0.615],
        [0.587, -0.28886, -0.51499],
        [0.114, 0.436, -0.10001],
    ]
)


@keras.saving.register_keras_serializable(package="keras_segattn")
class UpsampleByFactor(keras.layers.Layer):
    """Upsamples height and width by an integer factor.

    `keras.layers.UpSampling2D` cannot trace its bilinear mode on images of
    unknown size; `tf.image.resize` with a computed size can, and lowers to
    TFLite's builtin `RESIZE_BILINEAR`. `"nearest"` is exact replication
    by a broadcast and a reshape (`image_pyramid.replicate`): the gradient
    of a nearest-neighbour resize has no XLA kernel.

    Args:
        factor: int. Upsampling factor of height and width.
        interpolation: str. `"nearest"` or `"bilinear"`. Defaults to
            `"nearest"`.
    """

    def __init__(self, factor, interpolation="nearest", **kwargs):
        super().__init__(**kwargs)
        factor = check_int(factor, "factor")
        if interpolation not in UPSAMPLINGS:
            raise ValueError(
                f"interpolation must be one of {UPSAMPLINGS}; got interpolation={interpolation!r}."
            )
        self.factor = factor
        self.interpolation = interpolation

    def call(self, inputs):
        if self.interpolation == "nearest":
            return replicate(inputs, self.factor)
        size = tf.shape(inputs)[1:3] * self.factor
        outputs = tf.image.resize(inputs, size, method=self.interpolation)
        return tf.cast(outputs, inputs.dtype)

    def compute_output_shape(self, input_shape):
        def scaled(size):
            return None if size is None else size * self.factor

        return (input_shape[0], scaled(input_shape[1]), scaled(input_shape[2]), input_shape[3])

    def get_config(self):
        config = super().get_config()
        config.update({"factor": self.factor, "interpolation": self.interpolation})
        return config


def scaled_filters(filters, width):
    """Channels of each stage after the width multiplier (at least 4)."""
    return tuple(max(4, int(round(f * width))) for f in filters)


def multiscale_stride(levels, filters):
    """Total stride: the coarsest scale's factor times the tower's poolings."""
    return 2 ** (levels - 1) * POOL ** (len(filters) - 1)


def check_multiscale_arguments(
    num_classes, width, filters, levels, kernel_size, upsampling, classifier_hidden, color
):
    num_classes, width = check_common_arguments(num_classes, width)
    if not (
        isinstance(filters, (list, tuple))
        and len(filters) >= 1
        and all(isinstance(f, int) and not isinstance(f, bool) and f >= 1 for f in filters)
    ):
        raise ValueError(f"filters must be a non-empty tuple of positive ints; got {filters!r}.")
    levels = check_int(levels, "levels")
    if not (isinstance(kernel_size, int) and kernel_size >= 1 and kernel_size % 2 == 1):
        raise ValueError(
            f"kernel_size must be an odd positive int; got kernel_size={kernel_size!r}."
        )
    if upsampling not in UPSAMPLINGS:
        raise ValueError(f"upsampling must be one of {UPSAMPLINGS}; got {upsampling!r}.")
    if classifier_hidden is not None and (
        isinstance(classifier_hidden, bool)
        or not isinstance(classifier_hidden, int)
        or classifier_hidden < 1
    ):
        raise ValueError(
            f"classifier_hidden must be None or a positive int; got {classifier_hidden!r}."
        )
    if color not in COLORS:
        raise ValueError(f"color must be one of {COLORS}; got color={color!r}.")


def multiscale_tower(filters=FILTERS, kernel_size=7, activation="tanh", name="tower"):
    """Builds the ConvNet that `multiscale_convnet` shares across scales.

    Args:
        filters: tuple of int. Channels of each convolution stage; a 2x2
            max-pooling follows every stage but the last. Defaults to
            `(16, 64, 256)` (the paper's).
        kernel_size: int. Odd kernel side of every stage. Defaults to `7`.
        activation: str. Non-linearity after each stage. Defaults to
            `"tanh"`.
        name: str. Model name. Defaults to `"tower"`.

    Returns:
        A `keras.Model` mapping `(batch, h, w, 3)` normalised images to
        `(batch, h / s, w / s, filters[-1])` features, `s = 2 **
        (len(filters) - 1)`, for h and w multiples of `s`.
    """
    inputs = keras.Input(shape=(None, None, 3), name="level")
    x = inputs
    for stage, stage_filters in enumerate(filters, start=1):
        x = keras.layers.Conv2D(
            stage_filters, kernel_size, padding="same", activation=activation, name=f"conv{stage}"
        )(x)
        if stage < len(filters):
            x = keras.layers.MaxPooling2D(POOL, name=f"pool{stage}")(x)
    return keras.Model(inputs, x, name=name)


def load_multiscale_weights(model, weights):
    """Loads `None` or the path of a `.weights.h5` or `.keras` file of this model."""
    if weights is None:
        return model
    if weights == "imagenet":
        raise ValueError(
            "weights='imagenet' is not available: the multiscale ConvNet has no "
            "pretrained weights. Use weights=None or the path of weights saved from this model."
        )
    return load_saved_weights(model, weights)


@register_model("multiscale_convnet", task="semantic", paper=PAPER, tiny=TINY)
def multiscale_convnet(
    num_classes=8,
    width=1.0,
    filters=FILTERS,
    levels=3,
    kernel_size=7,
    upsampling="nearest",
    classifier_hidden=None,
    color="yuv",
    pyramid="laplacian",
    lcn_size=15,
    conv_activation="tanh",
    score_initializer="glorot_uniform",
    activation=None,
    name="multiscale_convnet",
    weights=None,
):
    """Builds the multiscale scene-labelling ConvNet of Farabet et al.

    The shared ConvNet is the nested model `"tower"`
    (`model.get_layer("tower")`), called once per scale: every scale uses
    the same variables.

    Args:
        num_classes: int. Number of classes. Defaults to `8` (Stanford
            Background).
        width: float. Channel multiplier of `filters` and of
            `classifier_hidden` (at least 4 channels each). Defaults to
            `1.0`.
        filters: tuple of int. Channels of each stage of the shared tower;
            a 2x2 max-pooling follows every stage but the last. Defaults to
            `(16, 64, 256)`.
        levels: int. Number of pyramid scales, 1, 1/2, ..., 1/2**(levels-1).
            Defaults to `3`.
        kernel_size: int. Odd kernel side of the tower's convolutions.
            Defaults to `7`.
        upsampling: str. How the coarser scales' features reach the finest
            scale's resolution: `"nearest"` (replication, the paper) or
            `"bilinear"`. Defaults to `"nearest"`.
        classifier_hidden: int or `None`. Units of a hidden 1x1 layer
            (with `conv_activation`) before the class scores: the paper's
            2-layer MLP classifier; `None` is its linear classifier.
            Defaults to `None`.
        color: str. `"yuv"` (the paper) or `"rgb"`: the colour space the
            pyramid is built in, from pixels scaled to [0, 1]. Defaults to
            `"yuv"`.
        pyramid: str. `"laplacian"` (the paper) or `"gaussian"` levels.
            Defaults to `"laplacian"`.
        lcn_size: int or `None`. Window of the local contrast normalisation
            of each level; `None` skips it. Defaults to `15`.
        conv_activation: str. Non-linearity of the tower (and of the hidden
            classifier layer). Defaults to `"tanh"`.
        score_initializer: initializer of the class-score layer. Defaults
            to `"glorot_uniform"`.
        activation: `None` for logits or `"softmax"`. Defaults to `None`.
        name: str. Model name. Defaults to `"multiscale_convnet"`.
        weights: `None` or the path of a `.weights.h5` (or `.keras`) file
            saved from this model; there are no ImageNet weights, so
            `"imagenet"` raises a `ValueError`. Defaults to `None`.

    Returns:
        A `keras.Model` mapping `(batch, h, w, 3)` RGB pixels in [0, 255]
        (uint8 or float; h, w >= max(32, stride), the stride being
        `2 ** (levels - 1) * 2 ** (len(filters) - 1)`, 16 by default) to
        `(batch, h, w, num_classes)` scores.

    Examples:

    ```python
    model = multiscale_convnet(num_classes=8, width=0.5)
    model.compile("sgd", SegmentationCrossEntropy(ignore_class=255))
    ```
    """
    check_multiscale_arguments(
        num_classes, width, filters, levels, kernel_size, upsampling, classifier_hidden, color
    )
    stride = multiscale_stride(levels, filters)
    tower_stride = POOL ** (len(filters) - 1)
    inputs, x = image_stem(stride, preprocessing="unit", min_size=max(MIN_SIZE, stride))
    if color == "yuv":
        # A fixed 1x1 convolution: one MATMUL-like op in TFLite, and the
        # constant initializer rebuilds it from the config alone.
        x = keras.layers.Conv2D(
            3,
            1,
            kernel_initializer=keras.initializers.Constant(RGB_TO_YUV[None, None].tolist()),
            bias_initializer="zeros",
            trainable=False,
            name="rgb_to_yuv",
        )(x)
    scales = ImagePyramid(levels, kind=pyramid, lcn_size=lcn_size, name="pyramid")(x)

    tower = multiscale_tower(
        scaled_filters(filters, width), kernel_size, activation=conv_activation
    )
    features = []
    for k, level in enumerate(scales):
        level_features = tower(level)
        if k:
            # The input is padded to a multiple of the stride, so scale k's
            # map is exactly 2**k times smaller than the finest one.
            level_features = UpsampleByFactor(
                2**k, interpolation=upsampling, name=f"upsample_scale{k}"
            )(level_features)
        features.append(level_features)
    if len(features) > 1:
        x = keras.layers.Concatenate(name="multiscale_features")(features)
    else:
        x = features[0]

    if classifier_hidden is not None:
        x = keras.layers.Conv2D(
            max(4, int(round(classifier_hidden * width))),
            1,
            activation=conv_activation,
            name="classifier_hidden",
        )(x)
    scores = keras.layers.Conv2D(
        num_classes, 1, kernel_initializer=score_initializer, name="classifier"
    )(x)
    if tower_stride > 1:
        upsample = UpsampleByFactor(tower_stride, "bilinear", name="upsample_to_input")
        scores = upsample(scores)
    outputs = segmentation_head(scores, inputs, activation)
    model = keras.Model(inputs, outputs, name=name)
    return load_multiscale_weights(model, weights)
