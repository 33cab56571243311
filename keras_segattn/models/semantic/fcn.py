"""Fully Convolutional Networks (Long, Shelhamer and Darrell, CVPR 2015).

VGG16 with its classifier turned into convolutions (`fc6` 7x7, `fc7` 1x1),
1x1 score layers on pool5, pool4 and pool3, and transposed convolutions
initialised to bilinear upsampling that fuse the scores by summation:
FCN-32s upsamples pool5's scores 32x in one step, FCN-16s adds pool4's
scores first, FCN-8s adds pool3's as well.

Differences from the Caffe reference, each for a reason: instead of
`pad=100` and crop offsets, the input is padded to a multiple of 32 and the
output cropped back (the same effect for any image size); `fc6` uses "same"
padding so that a 32x32 image still works; inputs are RGB in [0, 255] and
the model subtracts the ImageNet means itself.
"""

import keras

from keras_segattn.initializers import BilinearUpsampling
from keras_segattn.models.backbones import load_weights, vgg16_encoder
from keras_segattn.models.backbones.vgg import FC_CHANNELS, scaled
from keras_segattn.models.common import check_common_arguments, image_stem, segmentation_head
from keras_segattn.models.registry import register_model

PAPER = "Long, Shelhamer and Darrell, Fully Convolutional Networks, CVPR 2015"
# The tests' variant: random score layers (the paper's zeros would make every
# output the tests compare identically zero).
TINY = {"width": 0.0625, "num_classes": 3, "score_initializer": "glorot_uniform"}


def upsample(x, num_classes, factor, name, learnable):
    """A transposed convolution initialised to bilinear upsampling by `factor`."""
    return keras.layers.Conv2DTranspose(
        num_classes,
        kernel_size=2 * factor,
        strides=factor,
        padding="same",
        use_bias=False,
        kernel_initializer=BilinearUpsampling(),
        trainable=learnable,
        name=name,
    )(x)


def score(x, num_classes, name, initializer):
    return keras.layers.Conv2D(num_classes, 1, kernel_initializer=initializer, name=name)(x)


def build_fcn(
    stride=8,
    num_classes=21,
    width=1.0,
    weights=None,
    learnable_upsampling=False,
    batch_norm=False,
    dropout=0.5,
    score_initializer="zeros",
    activation=None,
    name=None,
):
    """Builds FCN-32s, FCN-16s or FCN-8s.

    Args:
        stride: int. 32, 16 or 8: the output stride of the finest score map
            fused in (FCN-32s, -16s, -8s). Defaults to `8`.
        num_classes: int. Number of classes, background included. Defaults
            to `21` (PASCAL VOC).
        width: float. Channel multiplier of VGG16 and fc6/fc7; `1.0` is the
            paper's network, `0.25` trains on a CPU. Defaults to `1.0`.
        weights: `None`, `"imagenet"` (VGG16 convolutions and fc layers,
            needs `width=1.0`) or the path of weights saved from this model.
            Defaults to `None`.
        learnable_upsampling: bool. Train the 2x upsampling layers (the CVPR
            text) instead of keeping every upsampling bilinear and frozen (the
            reference code); the final upsampling always stays frozen.
            Defaults to `False`.
        batch_norm: bool. Batch norm after each convolution. Not in the
            paper; helps narrow networks trained from scratch. Defaults to
            `False`.
        dropout: float. Dropout after fc6 and fc7. Defaults to `0.5`.
        score_initializer: initializer of the score layers; the paper zeros
            them. Defaults to `"zeros"`.
        activation: `None` for logits or `"softmax"`. Defaults to `None`.
        name: str. Model name. Defaults to `"fcn{stride}s"`.

    Returns:
        A `keras.Model` mapping `(batch, h, w, 3)` RGB pixels in [0, 255]
        (any h, w >= 32) to `(batch, h, w, num_classes)` scores.

    Examples:

    ```python
    model = build_fcn(stride=8, num_classes=11, width=0.25)
    model.compile("adam", SegmentationCrossEntropy(ignore_class=11))
    ```
    """
    if stride not in (8, 16, 32):
        raise ValueError(f"stride must be 8, 16 or 32; got stride={stride!r}.")
    num_classes, width = check_common_arguments(num_classes, width)
    inputs, x = image_stem(32)
    features = vgg16_encoder(x, width=width, batch_norm=batch_norm)

    x = features["pool5"]
    for layer_name, kernel in (("fc6", 7), ("fc7", 1)):
        x = keras.layers.Conv2D(
            scaled(FC_CHANNELS, width),
            kernel,
            padding="same",
            activation="relu",
            name=layer_name,
        )(x)
        x = keras.layers.Dropout(dropout, name=f"{layer_name}_dropout")(x)
    scores = score(x, num_classes, "score_fr", score_initializer)

    # Each skip doubles the resolution and adds a finer layer's scores.
    for pool, current in ((4, 32), (3, 16)):
        if stride >= current:
            break
        scores = upsample(scores, num_classes, 2, f"upscore_to_pool{pool}", learnable_upsampling)
        skip = score(features[f"pool{pool}"], num_classes, f"score_pool{pool}", score_initializer)
        scores = keras.layers.Add(name=f"fuse_pool{pool}")([scores, skip])

    scores = upsample(scores, num_classes, stride, f"upscore{stride}", False)
    outputs = segmentation_head(scores, inputs, activation)
    model = keras.Model(inputs, outputs, name=name or f"fcn{stride}s")
    return load_weights(model, weights, width=width)


@register_model("fcn32s", task="semantic", paper=PAPER, tiny=TINY)
def fcn32s(num_classes=21, **kwargs):
    """FCN-32s: one 32x bilinear-initialised upsampling of pool5's scores."""
    return build_fcn(stride=32, num_classes=num_classes, **kwargs)


@register_model("fcn16s", task="semantic", paper=PAPER, tiny=TINY)
def fcn16s(num_classes=21, **kwargs):
    """FCN-16s: pool5 scores upsampled 2x, plus pool4 scores, upsampled 16x."""
    return build_fcn(stride=16, num_classes=num_classes, **kwargs)


@register_model("fcn8s", task="semantic", paper=PAPER, tiny=TINY)
def fcn8s(num_classes=21, **kwargs):
    """FCN-8s: the FCN-16s fusion, plus pool3 scores, upsampled 8x."""
    return build_fcn(stride=8, num_classes=num_classes, **kwargs)
