"""The distorted-MNIST classifiers of Spatial Transformer Networks
(Jaderberg, Simonyan, Zisserman and Kavukcuoglu, NIPS 2015, section 4.1).

`cnn` and `fcn` are the paper's baselines; `st_cnn` and `st_fcn` put a
`SpatialTransformer` in front of the same classifiers. The paper gives the
layer types but not every size (see `shared/notes/papers.md`): the CNN is
conv 9x9 - max-pool 2 - conv 7x7 - max-pool 2 - classifier (three weight
layers), the FCN two hidden fully connected layers and a classifier. The
filter and unit counts below are this package's choice.

One more choice: the transformer's output is 28x28 for every distortion.
On the 42x42 RTS canvas it therefore also learns to zoom onto the digit, so
that the classifier behind it sees the same size as on the other sets.
"""

import keras

from keras_segattn.layers import ImagePreprocessing, SpatialTransformer
from keras_segattn.models.registry import register_model

PAPER = "Jaderberg, Simonyan, Zisserman and Kavukcuoglu, Spatial Transformer Networks, NIPS 2015"
CLASSIFIERS = ("cnn", "fcn")
TRANSFORMER_OUTPUT_SIZE = 28

# Table 1 of the paper, test error in %, columns R, RTS, P, E: the rows
# `segattn stn-table` trains (`keras_segattn.recipes.stn`).
PAPER_ERRORS = {
    "fcn": (2.1, 5.2, 3.1, 3.2),
    "cnn": (1.2, 0.8, 1.5, 1.4),
    "st_fcn:affine": (1.2, 0.8, 1.5, 2.7),
    "st_fcn:projective": (1.3, 0.9, 1.4, 2.6),
    "st_fcn:tps": (1.1, 0.8, 1.4, 2.4),
    "st_cnn:affine": (0.7, 0.5, 0.8, 1.2),
    "st_cnn:projective": (0.8, 0.6, 0.8, 1.3),
    "st_cnn:tps": (0.7, 0.5, 0.8, 1.1),
}


def _logits(x, num_classes):
    # float32 under mixed precision too, for a numerically stable loss.
    return keras.layers.Dense(num_classes, dtype="float32", name="logits")(x)


def cnn_classifier(x, num_classes, filters=(32, 64)):
    for i, (f, k) in enumerate(zip(filters, (9, 7)), start=1):
        x = keras.layers.Conv2D(f, k, activation="relu", name=f"conv{i}")(x)
        x = keras.layers.MaxPooling2D(2, name=f"pool{i}")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    return _logits(x, num_classes)


def fcn_classifier(x, num_classes, units=(128, 128)):
    x = keras.layers.Flatten(name="flatten")(x)
    for i, u in enumerate(units, start=1):
        x = keras.layers.Dense(u, activation="relu", name=f"fc{i}")(x)
    return _logits(x, num_classes)


def fcn_localization(units=32):
    """The ST-FCN localisation net: two hidden layers (the transformer adds
    the third, its identity-initialised regression)."""
    return keras.Sequential(
        [
            keras.layers.Flatten(),
            keras.layers.Dense(units, activation="relu"),
            keras.layers.Dense(units, activation="relu"),
        ],
        name="localization",
    )


def build_mnist_classifier(
    classifier="cnn", transform=None, input_size=28, num_classes=10, tps_grid_size=4, name=None
):
    """Builds a (spatial-transformer) MNIST classifier.

    Args:
        classifier: str. `"cnn"` or `"fcn"`.
        transform: str or `None`. `None` for the baseline, else the
            transformer's `"affine"`, `"projective"` or `"tps"`.
        input_size: int. Square input size: 28, or 42 for the RTS canvas.
            Defaults to `28`.
        num_classes: int. Defaults to `10`.
        tps_grid_size: int. TPS control grid (4 gives the paper's 16
            points). Defaults to `4`.
        name: str. Model name.

    Returns:
        A `keras.Model` from `(batch, input_size, input_size, 1)` pixels in
        [0, 255] to class logits. The transformer, if any, is the layer
        named `"spatial_transformer"`; `transformer_outputs(model)` exposes
        its warped images and parameters.
    """
    if classifier not in CLASSIFIERS:
        raise ValueError(f"classifier must be one of {CLASSIFIERS}; got {classifier!r}.")
    if not isinstance(input_size, int) or input_size < TRANSFORMER_OUTPUT_SIZE:
        raise ValueError(f"input_size must be an int >= 28; got input_size={input_size!r}.")
    inputs = keras.Input((input_size, input_size, 1), name="images")
    x = ImagePreprocessing("unit", channels=1, name="preprocessing")(inputs)
    if transform is not None:
        x, _ = SpatialTransformer(
            transform,
            output_size=TRANSFORMER_OUTPUT_SIZE,
            localization=fcn_localization() if classifier == "fcn" else None,
            tps_grid_size=tps_grid_size,
            name="spatial_transformer",
        )(x)
    head = cnn_classifier if classifier == "cnn" else fcn_classifier
    outputs = head(x, num_classes)
    default_name = ("st_" if transform else "") + classifier
    return keras.Model(inputs, outputs, name=name or default_name)


def transformer_outputs(model):
    """A model with the same input returning `(logits, warped, theta)`.

    For a baseline without a transformer, `warped` is the normalised input
    and `theta` is empty (shape `(batch, 0)`).
    """
    logits = model.output
    try:
        warped, theta = model.get_layer("spatial_transformer").output
    except ValueError:
        warped = model.get_layer("preprocessing").output
        theta = keras.layers.Lambda(lambda t: t[:, :0, 0, 0], name="no_transform")(warped)
    return keras.Model(model.input, [logits, warped, theta])


TINY = {"input_size": 28}


@register_model("cnn", task="classification", paper=PAPER, tiny=TINY)
def cnn(num_classes=10, **kwargs):
    """The paper's MNIST CNN baseline."""
    return build_mnist_classifier("cnn", None, num_classes=num_classes, **kwargs)


@register_model("fcn", task="classification", paper=PAPER, tiny=TINY)
def fcn(num_classes=10, **kwargs):
    """The paper's fully connected MNIST baseline (not FCN-8s: see `fcn8s`)."""
    return build_mnist_classifier("fcn", None, num_classes=num_classes, **kwargs)


@register_model("st_cnn", task="classification", paper=PAPER, tiny=TINY)
def st_cnn(num_classes=10, transform="affine", **kwargs):
    """ST-CNN: a spatial transformer (`transform=`) before the CNN."""
    return build_mnist_classifier("cnn", transform, num_classes=num_classes, **kwargs)


@register_model("st_fcn", task="classification", paper=PAPER, tiny=TINY)
def st_fcn(num_classes=10, transform="affine", **kwargs):
    """ST-FCN: a spatial transformer with an FC localisation net before the FCN."""
    return build_mnist_classifier("fcn", transform, num_classes=num_classes, **kwargs)
