"""DeconvNet (Noh, Hong and Han, Learning Deconvolution Network for
Semantic Segmentation, ICCV 2015).

A VGG16 encoder whose five poolings record their argmax switches, `fc6`
and `fc7` as convolutions, then a mirrored decoder: each block unpools with
the switches of its encoder twin (`MaxUnpooling2D`) and densifies the sparse
map with 3x3 transposed convolutions. Batch norm and ReLU follow every
convolution, as in the authors' deploy prototxt.

Difference from the paper: `fc6` is a 7x7 convolution with "same" padding
and `fc6_deconv` mirrors it, instead of a valid 7x7 that squeezes a
224x224 crop to 1x1; that keeps the network fully convolutional for any
image size (padded to a multiple of 32 and cropped back).
"""

import keras

from keras_segattn.layers import MaxUnpooling2D
from keras_segattn.models.backbones import load_weights, vgg16_encoder
from keras_segattn.models.backbones.vgg import FC_CHANNELS, VGG16_BLOCKS, conv_bn_relu, scaled
from keras_segattn.models.common import check_common_arguments, image_stem, segmentation_head
from keras_segattn.models.registry import register_model

PAPER = "Noh, Hong and Han, Learning Deconvolution Network, ICCV 2015"

# Decoder channels per block, deepest first: each block's last deconvolution
# narrows to the channels of the encoder block below it (deconv4_3: 256 ...).
DECODER_BLOCKS = (
    (5, (512, 512, 512)),
    (4, (512, 512, 256)),
    (3, (256, 256, 128)),
    (2, (128, 64)),
    (1, (64, 64)),
)


def build_deconvnet(num_classes=21, width=1.0, weights=None, activation=None, name="deconvnet"):
    """Builds DeconvNet.

    Args:
        num_classes: int. Number of classes, background included. Defaults
            to `21` (PASCAL VOC).
        width: float. Channel multiplier of every layer; `1.0` is the paper's
            network. Defaults to `1.0`.
        weights: `None`, `"imagenet"` (VGG16 convolutions and fc layers into
            the encoder, needs `width=1.0`) or the path of weights saved from
            this model. Defaults to `None`.
        activation: `None` for logits or `"softmax"`. Defaults to `None`.
        name: str. Model name. Defaults to `"deconvnet"`.

    Returns:
        A `keras.Model` mapping `(batch, h, w, 3)` RGB pixels in [0, 255]
        (any h, w >= 32) to `(batch, h, w, num_classes)` scores.

    The paper's two-stage training is `keras_segattn.recipes.semantic.two_stage_fit`
    (`segattn train --stage1-epochs N`).
    """
    num_classes, width = check_common_arguments(num_classes, width)
    inputs, x = image_stem(32)
    encoder = vgg16_encoder(x, width=width, batch_norm=True, switches=True)

    x = encoder["pool5"]
    x = conv_bn_relu(x, scaled(FC_CHANNELS, width), 7, "fc6", batch_norm=True)
    x = conv_bn_relu(x, scaled(FC_CHANNELS, width), 1, "fc7", batch_norm=True)
    x = conv_bn_relu(x, scaled(VGG16_BLOCKS[-1][1], width), 7, "fc6_deconv", True, transpose=True)
    for block, channels in DECODER_BLOCKS:
        x = MaxUnpooling2D(name=f"unpool{block}")(
            [x, encoder[f"switches{block}"], encoder[f"block{block}"]]
        )
        for i, filters in enumerate(channels, start=1):
            x = conv_bn_relu(
                x, scaled(filters, width), 3, f"deconv{block}_{i}", True, transpose=True
            )
    scores = keras.layers.Conv2D(num_classes, 1, name="score")(x)
    outputs = segmentation_head(scores, inputs, activation)
    model = keras.Model(inputs, outputs, name=name)
    return load_weights(model, weights, width=width)


@register_model("deconvnet", task="semantic", paper=PAPER, tiny={"width": 0.0625, "num_classes": 3})
def deconvnet(num_classes=21, **kwargs):
    """DeconvNet: VGG16 encoder, unpooling + deconvolution decoder, batch norm."""
    return build_deconvnet(num_classes=num_classes, **kwargs)
