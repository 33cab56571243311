"""The VGG16 encoder shared by FCN, DeconvNet and later families.

Layer names follow `keras.applications.VGG16` (`block1_conv1`, ...) so that
its ImageNet weights load by name; the fully connected layers become
convolutions `fc6` (7x7) and `fc7` (1x1), FCN's "convolutionalization".
"""

import keras

from keras_segattn.layers import MaxPoolingWithArgmax2D, StrideOneConv2DTranspose
from keras_segattn.models.common import batch_normalization, load_saved_weights

# (number of 3x3 convolutions, channels) for each of the five blocks.
VGG16_BLOCKS = ((2, 64), (2, 128), (3, 256), (3, 512), (3, 512))
FC_CHANNELS = 4096


def scaled(channels, width):
    """Channels after applying the width multiplier (at least 4)."""
    return max(4, int(round(channels * width)))


def conv_bn_relu(x, filters, kernel_size, name, batch_norm, transpose=False):
    """A convolution (or stride-1 transposed convolution), optional batch norm, ReLU."""
    layer = StrideOneConv2DTranspose if transpose else keras.layers.Conv2D
    x = layer(
        filters,
        kernel_size,
        padding="same",
        use_bias=not batch_norm,
        activation=None if batch_norm else "relu",
        name=name,
    )(x)
    if batch_norm:
        x = batch_normalization(f"{name}_bn")(x)
        x = keras.layers.ReLU(name=f"{name}_relu")(x)
    return x


def vgg16_encoder(x, width=1.0, batch_norm=False, switches=False):
    """Applies the five VGG16 blocks to a preprocessed image tensor.

    Args:
        x: KerasTensor. Preprocessed images (see `ImagePreprocessing`).
        width: float. Channel multiplier; `1.0` is the paper's VGG16.
        batch_norm: bool. Batch norm after every convolution (DeconvNet).
        switches: bool. Pool with `MaxPoolingWithArgmax2D` and also return
            the switches and the pre-pooling tensors (DeconvNet).

    Returns:
        A dict with `"pool1"` ... `"pool5"`; with `switches=True` also
        `"switches1"` ... and `"block1"` ... (the tensors before pooling).
    """
    outputs = {}
    for block, (num_convs, channels) in enumerate(VGG16_BLOCKS, start=1):
        for i in range(1, num_convs + 1):
            x = conv_bn_relu(x, scaled(channels, width), 3, f"block{block}_conv{i}", batch_norm)
        if switches:
            outputs[f"block{block}"] = x
            x, outputs[f"switches{block}"] = MaxPoolingWithArgmax2D(name=f"block{block}_pool")(x)
        else:
            x = keras.layers.MaxPooling2D(2, name=f"block{block}_pool")(x)
        outputs[f"pool{block}"] = x
    return outputs


def transplant_vgg16(source, target, include_fc=True):
    """Copies VGG16 weights from a `keras.applications.VGG16` into `target`.

    Convolutions are matched by name. With `include_fc`, the classifier's
    `fc1` (25088 x 4096) and `fc2` are reshaped into the 7x7 and 1x1 kernels
    of `fc6` and `fc7`, FCN's `surgery.transplant`.

    Returns:
        The list of target layer names that received weights.
    """
    loaded = []
    for layer in source.layers:
        if layer.name.startswith("block") and layer.weights:
            destination = target.get_layer(layer.name)
            # Convolutions followed by batch norm have no bias (DeconvNet);
            # the norm's own shift takes its place, so only the kernel moves.
            destination.set_weights(layer.get_weights()[: len(destination.weights)])
            loaded.append(layer.name)
    if include_fc:
        for src_name, dst_name, size in (("fc1", "fc6", 7), ("fc2", "fc7", 1)):
            try:
                kernel, bias = source.get_layer(src_name).get_weights()
                destination = target.get_layer(dst_name)
            except ValueError:
                continue
            channels = kernel.shape[0] // (size * size)
            kernel = kernel.reshape(size, size, channels, kernel.shape[1])
            destination_weights = destination.get_weights()
            destination_weights[0] = kernel
            if len(destination_weights) > 1:
                destination_weights[1] = bias
            destination.set_weights(destination_weights)
            loaded.append(dst_name)
    return loaded


def load_weights(model, weights, width=1.0, include_fc=True):
    """Loads `weights` (`None`, `"imagenet"` or a file path) into `model`.

    `"imagenet"` fetches `keras.applications.VGG16` (needs internet the first
    time) and transplants it; it needs `width=1.0`. A path is a
    `.weights.h5` file of this very model or a `.keras` file of it.
    """
    if weights is None:
        return model
    if weights == "imagenet":
        if width != 1.0:
            raise ValueError(
                "weights='imagenet' needs the full VGG16, width=1.0; "
                f"got width={width}. Use weights=None for narrow variants."
            )
        source = keras.applications.VGG16(weights="imagenet", include_top=include_fc)
        transplant_vgg16(source, model, include_fc=include_fc)
        return model
    return load_saved_weights(model, weights)


def transplant_vgg16_fc(source, model):
    """Copies a `keras.applications.VGG16`'s `fc1`/`fc2` into `fc6`/`fc7`.

    Both are `Dense` here (on a flattened 7x7 RoIAlign of `block5_conv3`,
    in the same row-major, channels-last order as VGG16's `Flatten` of
    pool5), so the kernels move unchanged. Returns the names filled.
    """
    loaded = []
    for src, dst in (("fc1", "fc6"), ("fc2", "fc7")):
        kernel, bias = source.get_layer(src).get_weights()
        layer = model.get_layer(dst)
        if tuple(layer.kernel.shape) != kernel.shape:
            raise ValueError(
                f"{src} of the source has a {kernel.shape} kernel but {dst} has "
                f"{tuple(layer.kernel.shape)}: ImageNet fc weights need width=1.0 and "
                "fc_units=4096."
            )
        layer.set_weights([kernel, bias])
        loaded.append(dst)
    return loaded
