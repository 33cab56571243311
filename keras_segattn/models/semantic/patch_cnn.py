"""A patch classifier for scene labelling: the lecture's brute-force baseline.

The network labels the centre pixel of a square patch, as the scene-labelling
ConvNets of Farabet et al. (TPAMI 2013) and Pinheiro and Collobert (ICML 2014)
do: convolution stages with "valid" padding, a 2x2 max-pooling after every
stage but the last, and a 1x1 convolution as classifier. Every layer is a
convolution, so the same weights applied to a whole image give a coarse
score map of stride `2 ** (len(filters) - 1)`: `shift_and_stitch.py` turns
that map into a dense one equal to classifying every patch.

The classifier is built around a separate `keras.Model`, the trunk (layer
`"trunk"` of the patch model, or `patch_cnn_trunk` on its own), which accepts
images of any size.

Geometry. With 2x2 poolings and odd kernels the receptive field is always
even: `patch_size - 1` here. The network sees the first `patch_size - 1` rows
and columns of the patch; the last row and column are unused and the labelled
pixel, `(patch_size // 2, patch_size // 2)`, is the bottom-right one of the
four central pixels of what it sees. The last stage's kernel is whatever
makes the receptive field exactly `patch_size - 1` (5x5 for the default
33x33 patch), so `patch_size - 1` must be a multiple of the stride.

Differences from Farabet et al., for a small self-contained baseline: one
scale instead of a Laplacian pyramid, RGB in [0, 255] scaled to [-1, 1]
inside the model instead of YUV with local contrast normalisation, fully
connected filter banks instead of random sparse connection tables.
"""

import keras

from keras_segattn.layers import ImagePreprocessing
from keras_segattn.models.registry import register_model

PAPER = (
    "Brute-force patch classification (lecture); Farabet, Couprie, Najman and LeCun, "
    "Learning Hierarchical Features for Scene Labeling, TPAMI 2013"
)
TINY = {"num_classes": 3, "patch_size": 17, "width": 0.125}
POOL = 2


def scaled_filters(filters, width):
    """Channels of each stage after the width multiplier (at least 4)."""
    return tuple(max(4, int(round(f * width))) for f in filters)


def trunk_geometry(filters, kernel_size):
    """Returns `(receptive_field, stride)` of the pooled stages (all but the last)."""
    receptive_field, stride = 1, 1
    for _ in filters[:-1]:
        receptive_field += (kernel_size - 1) * stride + (POOL - 1) * stride
        stride *= POOL
    return receptive_field, stride


def check_patch_cnn_arguments(num_classes, patch_size, filters, kernel_size, width):
    """Validates the builder arguments; returns the last stage's kernel size."""
    if not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an int >= 2; got num_classes={num_classes!r}.")
    if not (isinstance(width, (int, float)) and 0 < width <= 4):
        raise ValueError(f"width must be a float in (0, 4]; got width={width!r}.")
    if not (
        isinstance(filters, (list, tuple))
        and len(filters) >= 1
        and all(isinstance(f, int) and f >= 1 for f in filters)
    ):
        raise ValueError(f"filters must be a non-empty tuple of positive ints; got {filters!r}.")
    if not (isinstance(kernel_size, int) and kernel_size >= 1 and kernel_size % 2 == 1):
        raise ValueError(f"kernel_size must be an odd positive int; got {kernel_size!r}.")
    pooled_field, stride = trunk_geometry(filters, kernel_size)
    smallest = pooled_field + 1
    if (
        not isinstance(patch_size, int)
        or patch_size % 2 == 0
        or patch_size < smallest
        or (patch_size - 1 - pooled_field) % stride
    ):
        raise ValueError(
            f"patch_size must be an odd int >= {smallest} with patch_size - 1 a multiple of "
            f"the stride {stride} (a 2x2 max-pooling after each of {len(filters) - 1} stages "
            f"of {kernel_size}x{kernel_size} kernels), e.g. {smallest}, {smallest + stride}, "
            f"{smallest + 2 * stride}; got patch_size={patch_size!r}."
        )
    # The last stage covers what the pooled stages leave of the patch.
    return (patch_size - 1 - pooled_field) // stride + 1


def patch_cnn_trunk(
    num_classes=8,
    patch_size=33,
    filters=(32, 64, 128),
    kernel_size=5,
    width=1.0,
    activation="tanh",
    name="trunk",
):
    """Builds the fully convolutional trunk of `patch_cnn`.

    On a `patch_size` x `patch_size` patch it returns `(batch, 1, 1,
    num_classes)` logits; on an `h` x `w` image, the logits of every patch
    whose top-left corner lies on the grid of step `stride`, a map of
    `(h - patch_size + 1) // stride + 1` rows (and as many columns for `w`).

    Args:
        num_classes: int. Number of classes. Defaults to `8`.
        patch_size: int. Side of the classified patches: odd, with
            `patch_size - 1` a multiple of the stride. Defaults to `33`.
        filters: tuple of int. Channels of each convolution stage; a 2x2
            max-pooling follows every stage but the last, so the stride is
            `2 ** (len(filters) - 1)`. Defaults to `(32, 64, 128)`.
        kernel_size: int. Odd kernel of the pooled stages; the last stage's
            kernel is derived from `patch_size`. Defaults to `5`.
        width: float. Channel multiplier of `filters`. Defaults to `1.0`.
        activation: str. Non-linearity after each stage; Farabet et al. use
            tanh. Defaults to `"tanh"`.
        name: str. Model name. Defaults to `"trunk"`.

    Returns:
        A `keras.Model` mapping `(batch, h, w, 3)` RGB pixels in [0, 255]
        (h, w >= `patch_size - 1`, its receptive field) to `(batch, h', w', num_classes)` logits.
    """
    last_kernel = check_patch_cnn_arguments(num_classes, patch_size, filters, kernel_size, width)
    channels = scaled_filters(filters, width)
    inputs = keras.Input(shape=(None, None, 3), name="images")
    # The smallest input with an output: one receptive field.
    x = ImagePreprocessing("symmetric", min_size=patch_size - 1, name="preprocessing")(inputs)
    for stage, stage_filters in enumerate(channels, start=1):
        last = stage == len(channels)
        # "valid" everywhere: any padding would make a border patch differ
        # from the same pixels seen inside a larger image.
        x = keras.layers.Conv2D(
            stage_filters,
            last_kernel if last else kernel_size,
            activation=activation,
            name=f"conv{stage}",
        )(x)
        if not last:
            x = keras.layers.MaxPooling2D(POOL, name=f"pool{stage}")(x)
    logits = keras.layers.Conv2D(num_classes, 1, name="classifier")(x)
    return keras.Model(inputs, logits, name=name)


@register_model("patch_cnn", task="patch", paper=PAPER, tiny=TINY)
def patch_cnn(
    num_classes=8,
    patch_size=33,
    filters=(32, 64, 128),
    kernel_size=5,
    width=1.0,
    activation="tanh",
    name="patch_cnn",
):
    """Builds a CNN that labels the centre pixel of a square RGB patch.

    The whole network is the trunk (layer `"trunk"`, see `patch_cnn_trunk`)
    applied to the patch, whose 1x1 output is flattened to logits. Get the
    trunk back with `model.get_layer("trunk")`, e.g. for
    `shift_and_stitch.dense_predict`.

    Args:
        num_classes: int. Number of classes. Defaults to `8`.
        patch_size: int. Side of the patches: odd, at least 17 for the
            default `filters`, and `patch_size - 1` a multiple of the stride
            (4 for the default `filters`). Defaults to `33`.
        filters: tuple of int. Channels of each convolution stage; a 2x2
            max-pooling follows every stage but the last. Defaults to
            `(32, 64, 128)`.
        kernel_size: int. Odd kernel of the pooled stages. Defaults to `5`.
        width: float. Channel multiplier of `filters` (at least 4 channels
            each). Defaults to `1.0`.
        activation: str. Non-linearity after each stage. Defaults to
            `"tanh"`.
        name: str. Model name. Defaults to `"patch_cnn"`.

    Returns:
        A `keras.Model` mapping `(batch, patch_size, patch_size, 3)` RGB
        pixels in [0, 255] (uint8 or float) to `(batch, num_classes)`
        logits for the centre pixel.

    Examples:

    ```python
    model = patch_cnn(num_classes=8)
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    dense = dense_predict(model, images)  # (batch, h, w, 8), every pixel
    ```
    """
    trunk = patch_cnn_trunk(
        num_classes=num_classes,
        patch_size=patch_size,
        filters=filters,
        kernel_size=kernel_size,
        width=width,
        activation=activation,
    )
    inputs = keras.Input(shape=(patch_size, patch_size, 3), name="patches")
    x = trunk(inputs)
    x = keras.layers.Reshape((num_classes,), name="flatten")(x)
    # float32 logits, as the segmentation heads, for mixed precision.
    outputs = keras.layers.Activation("linear", dtype="float32", name="logits")(x)
    return keras.Model(inputs, outputs, name=name)
