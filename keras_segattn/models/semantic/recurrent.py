"""The recurrent convolutional network of Pinheiro and Collobert (ICML 2014).

One network `f`, its weights shared, is applied `instances` times. Instance
`t` (1-based, `T = instances`) sees the image at scale `1 / 2 ** (T - t)`
concatenated channel-wise with the class probabilities that instance `t -
1` gave (upsampled 2x to the new scale); the first instance gets zeros in
those `num_classes` channels. Context grows with every instance: `f`'s
receptive field covers 4x as many pixels of the image at scale 1/4 as at
scale 1/2, and the later instances see their predecessor's labels over
that context, so they can "identify and correct their own errors". During
`fit` a loss is taken on every instance's output (each upsampled to the
image size); at inference only the last instance's scores are returned.

`f` is a patch classifier made fully convolutional ("valid" convolutions,
2x2 max-pooling after every stage but the last, tanh, a 1x1 classifier);
each instance labels EVERY pixel of its scale through the shifted-pooling
trick (`DenseLabeller(method="shifted_pooling")`): each pooling is applied
at its four offsets and the outputs interleaved, so the labels are dense
and equal, to float rounding, to classifying the patch around every pixel.

Differences from the paper, and what is not confirmed (see
`../shared/notes/papers.md`): the number of stages, the filters and the
scale factor between instances are the package's choices (the paper's rCNN
uses 8x8 kernels and 25/50 maps in the layers we could read about; we use
odd kernels so every pixel is the centre of its patch); training is on
whole images or crops, densely, rather than on sampled patches; the image
is scaled to [-1, 1] instead of per-image normalised.
"""

import keras
import tensorflow as tf

from keras_segattn.layers import CropToReference, ImagePreprocessing, PadToMultiple
from keras_segattn.layers.image_preprocessing import check_image_shape
from keras_segattn.models.common import check_common_arguments, load_saved_weights
from keras_segattn.models.registry import register_model
from keras_segattn.models.semantic.multiscale import UpsampleByFactor
from keras_segattn.models.semantic.patch_cnn import POOL, scaled_filters
from keras_segattn.models.semantic.shift_and_stitch import DenseLabeller, trunk_geometry

PAPER = (
    "Pinheiro and Collobert, Recurrent Convolutional Neural Networks for Scene Labeling, ICML 2014"
)
TINY = {"num_classes": 3, "instances": 2, "width": 0.125, "filters": (16, 32), "kernel_size": 3}
FILTERS = (25, 50, 100)
MIN_SIZE = 32


@keras.saving.register_keras_serializable(package="keras_segattn")
class AppendZeroMaps(keras.layers.Layer):
    """Appends `channels` zero channels: the empty label maps of instance 1."""

    def __init__(self, channels, **kwargs):
        super().__init__(**kwargs)
        self.channels = channels

    def call(self, inputs):
        # The zeros in the inputs' dtype: a mixed policy computes in float16.
        zeros = keras.ops.zeros((self.channels,), inputs.dtype)
        zeros = keras.ops.zeros_like(inputs[..., :1]) * zeros
        return keras.ops.concatenate([inputs, zeros], axis=-1)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (input_shape[-1] + self.channels,)

    def get_config(self):
        return {**super().get_config(), "channels": self.channels}


def recurrent_cnn_trunk(
    num_classes,
    filters=FILTERS,
    kernel_size=7,
    activation="tanh",
    score_initializer="glorot_uniform",
    name="f",
):
    """Builds the network `f` that every instance of `recurrent_cnn` shares.

    Args:
        num_classes: int. Classes scored, and label maps taken as input.
        filters: tuple of int. Channels of each "valid" convolution stage;
            a 2x2 max-pooling follows every stage but the last.
        kernel_size: int. Odd kernel side of every stage.
        activation: str. Non-linearity after each stage.
        score_initializer: initializer of the 1x1 classifier.
        name: str. Model name.

    Returns:
        A `keras.Model` mapping `(batch, h, w, 3 + num_classes)` (image in
        [-1, 1], then label probabilities) to the logits of every patch of
        its receptive field on a grid of step `2 ** (len(filters) - 1)`.
    """
    inputs = keras.Input(shape=(None, None, 3 + num_classes), name="image_and_labels")
    x = inputs
    for stage, stage_filters in enumerate(filters, start=1):
        x = keras.layers.Conv2D(
            stage_filters, kernel_size, activation=activation, name=f"conv{stage}"
        )(x)
        if stage < len(filters):
            x = keras.layers.MaxPooling2D(POOL, name=f"pool{stage}")(x)
    logits = keras.layers.Conv2D(
        num_classes, 1, kernel_initializer=score_initializer, name="classifier"
    )(x)
    return keras.Model(inputs, logits, name=name)


def check_recurrent_arguments(num_classes, width, instances, filters, kernel_size):
    num_classes, width = check_common_arguments(num_classes, width)
    if isinstance(instances, bool) or not isinstance(instances, int) or instances < 1:
        raise ValueError(
            "instances must be a positive int (the number of times the shared network is "
            f"applied: 1, 2 or 3 in the paper); got instances={instances!r}."
        )
    if not (
        isinstance(filters, (list, tuple))
        and len(filters) >= 1
        and all(isinstance(f, int) and not isinstance(f, bool) and f >= 1 for f in filters)
    ):
        raise ValueError(f"filters must be a non-empty tuple of positive ints; got {filters!r}.")
    if not (isinstance(kernel_size, int) and kernel_size >= 1 and kernel_size % 2 == 1):
        raise ValueError(
            f"kernel_size must be an odd positive int; got kernel_size={kernel_size!r}."
        )


def _unroll(parts, images, label_maps=None):
    """Applies the shared network `instances` times; returns every instance's
    logits at the image size, coarsest instance first."""
    instances = len(parts["levels"])
    x = parts["pad"](parts["preprocessing"](images))
    previous = None
    if label_maps is not None:
        # Given label maps replace the zeros: average them to the first scale.
        previous = parts["levels"][0](parts["pad"](label_maps))
    outputs = []
    for t in range(instances):
        level = parts["levels"][t](x)
        if previous is None:
            level = parts["empty_maps"](level)
        else:
            level = parts["concat"][t]([level, previous])
        logits = parts["f"](level)
        if t + 1 < instances:
            probabilities = parts["softmax"][t](logits)
            previous = parts["to_next_scale"][t](probabilities)
        outputs.append(parts["heads"][t](parts["crop"][t]([parts["to_input"][t](logits), images])))
    return outputs


@keras.saving.register_keras_serializable(package="keras_segattn")
class RecurrentCNN(keras.Model):
    """Pinheiro and Collobert's recurrent CNN; build it with `recurrent_cnn`.

    A functional model whose output is the last instance's logits. In
    training mode (`fit`, or `model(x, training=True)`) it returns the list
    of every instance's logits, coarsest first, and `compute_loss` sums the
    compiled loss over them: the loss on every instance of the paper.
    Metrics and `evaluate` use the last instance. `instance_outputs` gives
    every instance's logits at inference, optionally starting from label
    maps of your own instead of zeros.

    Args: those of `recurrent_cnn`.
    """

    def __init__(
        self,
        num_classes=8,
        instances=3,
        filters=FILTERS,
        kernel_size=7,
        width=1.0,
        activation="tanh",
        score_initializer="glorot_uniform",
        name="recurrent_cnn",
        **kwargs,
    ):
        filters = tuple(filters)
        check_recurrent_arguments(num_classes, width, instances, filters, kernel_size)
        f = recurrent_cnn_trunk(
            num_classes, scaled_filters(filters, width), kernel_size, activation, score_initializer
        )
        receptive_field, _ = trunk_geometry(f)
        coarsest = 2 ** (instances - 1)
        parts = {
            "preprocessing": ImagePreprocessing(
                "symmetric", min_size=max(MIN_SIZE, coarsest), name="preprocessing"
            ),
            "pad": PadToMultiple(coarsest, name="pad_to_scales"),
            "levels": [
                keras.layers.AveragePooling2D(2 ** (instances - 1 - t), name=f"scale{t + 1}")
                for t in range(instances)
            ],
            "empty_maps": AppendZeroMaps(num_classes, name="empty_label_maps"),
            "concat": [
                keras.layers.Concatenate(name=f"image_and_labels{t + 1}") for t in range(instances)
            ],
            # One layer, called once per instance: the weights are shared.
            "f": DenseLabeller(f, method="shifted_pooling", padding="zero", name="dense_f"),
            "softmax": [
                keras.layers.Softmax(name=f"probabilities{t + 1}") for t in range(instances)
            ],
            "to_next_scale": [
                UpsampleByFactor(2, "bilinear", name=f"labels_to_scale{t + 2}")
                for t in range(instances)
            ],
            "to_input": [
                UpsampleByFactor(2 ** (instances - 1 - t), "bilinear", name=f"upsample{t + 1}")
                for t in range(instances)
            ],
            "crop": [CropToReference(name=f"crop{t + 1}") for t in range(instances)],
            "heads": [
                keras.layers.Activation(
                    "linear",
                    dtype="float32",
                    name="logits" if t + 1 == instances else f"instance{t + 1}_logits",
                )
                for t in range(instances)
            ],
        }
        inputs = keras.Input(shape=(None, None, 3), name="images")
        outputs = _unroll(parts, inputs)
        super().__init__(inputs, outputs[-1], name=name, **kwargs)
        # Every instance's logits, through the same layers. A bound method,
        # not a tracked sub-model: the layers' weights belong to this model.
        self._instances_call = keras.Model(inputs, outputs).__call__
        self._parts = parts
        self.receptive_field = receptive_field
        self._config = {
            "num_classes": num_classes,
            "instances": instances,
            "filters": filters,
            "kernel_size": kernel_size,
            "width": width,
            "activation": activation,
            "score_initializer": keras.initializers.serialize(
                keras.initializers.get(score_initializer)
            )
            if not isinstance(score_initializer, str)
            else score_initializer,
        }

    @property
    def num_classes(self):
        return self._config["num_classes"]

    @property
    def instances(self):
        return self._config["instances"]

    def call(self, inputs, training=None, mask=None):
        if training:
            return self._instances_call(inputs, training=True)
        return super().call(inputs, training=training, mask=mask)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if not isinstance(y_pred, (list, tuple)):
            return super().compute_loss(x, y, y_pred, sample_weight, training=training)
        # The paper's loss on every instance: the same loss on each output.
        losses = [
            super(RecurrentCNN, self).compute_loss(x, y, p, sample_weight, training=training)
            for p in y_pred
        ]
        return keras.ops.sum(keras.ops.stack(losses))

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        if isinstance(y_pred, (list, tuple)):
            y_pred = y_pred[-1]
        return super().compute_metrics(x, y, y_pred, sample_weight=sample_weight)

    def instance_outputs(self, images, label_maps=None):
        """Every instance's logits, coarsest first, at the image size.

        Args:
            images: `(batch, h, w, 3)` RGB pixels in [0, 255].
            label_maps: `None` (the first instance sees zeros, as in
                training) or `(batch, h, w, num_classes)` class
                probabilities at the image size, e.g. another model's, that
                the first instance sees instead (averaged to its scale).

        Returns:
            A list of `instances` float32 tensors `(batch, h, w,
            num_classes)`.

        Raises:
            ValueError: if `images` or `label_maps` have the wrong rank or
                channels, or their batch, height or width differ.
        """
        images = tf.convert_to_tensor(images)
        check_image_shape(images.shape, min_size=1, channels=3, where="images")
        if label_maps is None:
            return list(self._instances_call(images, training=False))
        label_maps = tf.cast(tf.convert_to_tensor(label_maps), "float32")
        check_image_shape(
            label_maps.shape, min_size=1, channels=self.num_classes, where="label_maps"
        )
        if tuple(label_maps.shape[:3]) != tuple(images.shape[:3]):
            raise ValueError(
                "label_maps: expected one map per image at the image size, shape "
                f"{tuple(images.shape[:3]) + (self.num_classes,)}; got {tuple(label_maps.shape)}."
            )
        return _unroll(self._parts, images, label_maps)

    def get_config(self):
        return {"name": self.name, "trainable": self.trainable, **self._config}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


@register_model("recurrent_cnn", task="semantic", paper=PAPER, tiny=TINY)
def recurrent_cnn(
    num_classes=8,
    instances=3,
    filters=FILTERS,
    kernel_size=7,
    width=1.0,
    activation="tanh",
    score_initializer="glorot_uniform",
    name="recurrent_cnn",
    weights=None,
):
    """Builds the recurrent CNN of Pinheiro and Collobert for scene labelling.

    Args:
        num_classes: int. Number of classes. Defaults to `8` (Stanford
            Background).
        instances: int >= 1. How many times the shared network is applied
            (the paper's rCNN1, rCNN2, rCNN3): instance `t` sees the image
            at scale `1 / 2 ** (instances - t)`. Defaults to `3`.
        filters: tuple of int. Channels of each "valid" convolution stage
            of the shared network; a 2x2 max-pooling follows every stage
            but the last. Defaults to `(25, 50, 100)`.
        kernel_size: int. Odd kernel side of every stage. Defaults to `7`
            (receptive field 46 pixels of each scale with the default
            filters).
        width: float. Channel multiplier of `filters` (at least 4 each).
            Defaults to `1.0`.
        activation: str. Non-linearity after each stage. Defaults to
            `"tanh"`, the paper's.
        score_initializer: initializer of the classifier. Defaults to
            `"glorot_uniform"`.
        name: str. Model name. Defaults to `"recurrent_cnn"`.
        weights: `None` or the path of a `.weights.h5` / `.keras` file of
            this model; there are no ImageNet weights. Defaults to `None`.

    Returns:
        A `RecurrentCNN` (a functional `keras.Model`) mapping `(batch, h, w,
        3)` RGB pixels in [0, 255] (uint8 or float; h, w >= max(32, 2 **
        (instances - 1))) to `(batch, h, w, num_classes)` logits of the last
        instance; in training mode, the list of every instance's logits.

    Raises:
        ValueError: a non-positive `instances`, bad `filters`,
            `kernel_size`, `width` or `num_classes`, `weights="imagenet"`.

    Examples:

    ```python
    model = recurrent_cnn(num_classes=11, instances=2, width=0.5)
    model.compile("adam", SegmentationCrossEntropy(ignore_class=11))
    model.fit(batches, epochs=10)  # a loss on both instances
    first, last = model.instance_outputs(images)
    ```
    """
    if weights == "imagenet":
        raise ValueError(
            "weights='imagenet' is not available: the recurrent CNN has no pretrained "
            "weights. Use weights=None or the path of weights saved from this model."
        )
    model = RecurrentCNN(
        num_classes=num_classes,
        instances=instances,
        filters=filters,
        kernel_size=kernel_size,
        width=width,
        activation=activation,
        score_initializer=score_initializer,
        name=name,
    )
    return load_saved_weights(model, weights)
