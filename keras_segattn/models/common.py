"""Pieces every semantic-segmentation builder shares: the raw-pixel input
stem and the output head, so all of them accept any image size and return
per-pixel scores at exactly that size, and the batch norm every model
builds (replica-synchronised under a distribution strategy)."""

import numbers
import os

import keras
import tensorflow as tf

from keras_segattn.core.saving import load_keras_file
from keras_segattn.core.validation import check_int
from keras_segattn.layers import CropToReference, ImagePreprocessing, PadToMultiple


def batch_normalization(name):
    """Batch norm whose batch statistics are summed over all replicas when the
    model is built under a strategy with more than one.

    Keras' default computes them per replica and updates the (mirrored)
    moving statistics with each replica's own: the copies drift apart, so
    replicas evaluate with different statistics and a checkpoint keeps only
    the first replica's. Synchronised statistics keep every copy identical
    and are those of the global batch, as in single-device training.
    """
    replicas = tf.distribute.get_strategy().num_replicas_in_sync
    return keras.layers.BatchNormalization(synchronized=replicas > 1, name=name)


def check_common_arguments(num_classes, width):
    """Returns `(num_classes, width)` as `(int, float)`, or raises a ValueError.

    NumPy integers and floats are welcome (`info.num_classes` may be one);
    bools are not numbers here (`width=True` is a mistake, not 1.0).
    """
    num_classes = check_int(num_classes, "num_classes", minimum=2)
    if isinstance(width, bool) or not isinstance(width, numbers.Real) or not 0 < width <= 4:
        raise ValueError(f"width must be a float in (0, 4]; got width={width!r}.")
    return num_classes, float(width)


def load_saved_weights(model, weights):
    """Loads `weights` (`None`, or a `.weights.h5` / `.keras` file of `model`)."""
    if weights is None:
        return model
    path = os.fspath(weights)
    if not os.path.exists(path):
        raise ValueError(
            "weights must be None, 'imagenet' where the backbone has it, or the path of "
            f"an existing .weights.h5 or .keras file of this model; got weights={weights!r}."
        )
    if path.endswith(".keras"):
        model.set_weights(load_keras_file(path, "weights").get_weights())
    else:
        model.load_weights(path)
    return model


def image_stem(stride, preprocessing="caffe", min_size=32):
    """Returns `(inputs, x)`: a raw-pixel input and its normalised, padded view.

    Height and width are padded up to a multiple of the network's `stride`;
    `segmentation_head` crops the result back.
    """
    inputs = keras.Input(shape=(None, None, 3), name="images")
    x = ImagePreprocessing(preprocessing, min_size=min_size, name="preprocessing")(inputs)
    x = PadToMultiple(stride, name="pad_to_stride")(x)
    return inputs, x


def segmentation_head(scores, inputs, activation=None):
    """Crops per-pixel scores to the input size; float32 for mixed precision."""
    scores = CropToReference(name="crop_to_input")([scores, inputs])
    name = "probabilities" if activation == "softmax" else "logits"
    return keras.layers.Activation(activation or "linear", dtype="float32", name=name)(scores)


def ends_in_softmax(model):
    """Whether a model's last layer applies a softmax (it returns
    probabilities), rather than returning logits."""
    return getattr(model.layers[-1], "activation", None) is keras.activations.softmax
