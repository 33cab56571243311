"""SegNet (Badrinarayanan, Kendall and Cipolla, SegNet: A Deep
Convolutional Encoder-Decoder Architecture for Image Segmentation, TPAMI
2017).

DeconvNet's sibling, and the network CamVid's SegNet split is named after:
the same VGG16 encoder with batch norm whose five poolings record their
argmax switches, but no fully connected middle (`fc6`, `fc7`), and a decoder
of ordinary 3x3 convolutions: each block unpools with its encoder twin's
switches (`MaxUnpooling2D`) and densifies the sparse map with convolutions,
batch norm and ReLU, mirroring the encoder's channels; the last convolution
gives the class scores. 29.4 million parameters at full width (the paper's
Table 6 says 29.5).
"""

import keras

from keras_segattn.layers import MaxUnpooling2D
from keras_segattn.models.backbones import load_weights, vgg16_encoder
from keras_segattn.models.backbones.vgg import conv_bn_relu, scaled
from keras_segattn.models.common import check_common_arguments, image_stem, segmentation_head
from keras_segattn.models.registry import register_model

PAPER = "Badrinarayanan, Kendall and Cipolla, SegNet, TPAMI 2017"

# Decoder channels per block, deepest first, mirroring VGG16: each block's
# last convolution narrows to the channels of the encoder block below it.
# Block 1 ends in the class scores.
DECODER_BLOCKS = (
    (5, (512, 512, 512)),
    (4, (512, 512, 256)),
    (3, (256, 256, 128)),
    (2, (128, 64)),
    (1, (64,)),
)


@register_model("segnet", task="semantic", paper=PAPER, tiny={"width": 0.0625, "num_classes": 3})
def segnet(num_classes=11, width=1.0, weights=None, activation=None, name="segnet"):
    """Builds SegNet.

    Args:
        num_classes: int. Number of classes. Defaults to `11` (CamVid).
        width: float. Channel multiplier of every layer; `1.0` is the paper's
            network. Defaults to `1.0`.
        weights: `None`, `"imagenet"` (VGG16's convolutions into the encoder,
            as the paper initialises it; needs `width=1.0`) or the path of
            weights saved from this model. Defaults to `None`.
        activation: `None` for logits or `"softmax"`. Defaults to `None`.
        name: str. Model name. Defaults to `"segnet"`.

    Returns:
        A `keras.Model` mapping `(batch, h, w, 3)` RGB pixels in [0, 255]
        (any h, w >= 32) to `(batch, h, w, num_classes)` scores.
    """
    num_classes, width = check_common_arguments(num_classes, width)
    inputs, x = image_stem(32)
    encoder = vgg16_encoder(x, width=width, batch_norm=True, switches=True)
    x = encoder["pool5"]
    for block, channels in DECODER_BLOCKS:
        x = MaxUnpooling2D(name=f"unpool{block}")(
            [x, encoder[f"switches{block}"], encoder[f"block{block}"]]
        )
        for i, filters in enumerate(channels, start=1):
            x = conv_bn_relu(x, scaled(filters, width), 3, f"decoder{block}_conv{i}", True)
    scores = keras.layers.Conv2D(num_classes, 3, padding="same", name="score")(x)
    outputs = segmentation_head(scores, inputs, activation)
    model = keras.Model(inputs, outputs, name=name)
    return load_weights(model, weights, width=width, include_fc=False)
