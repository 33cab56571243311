"""Dense labelling with a patch classifier, three ways that give the same map.

The lecture's brute-force scene labeller classifies the patch centred on
every pixel: `brute_force_predict` does exactly that, as the slow reference.
A fully convolutional patch classifier computes all those patches at once
when applied to the whole image, but only every `stride`-th of them (stride
= the product of its pooling strides). Two ways recover the rest:

- `"shift_and_stitch"` (the OverFeat trick): run the trunk on the
  `stride ** 2` copies of the padded image shifted by `(dy, dx)`, `0 <= dy,
  dx < stride`, and interleave their coarse maps: pixel `(stride * i + dy,
  stride * j + dx)` comes from row `i`, column `j` of copy `(dy, dx)`.
- `"shifted_pooling"` (Pinheiro and Collobert's layer-by-layer version):
  run the trunk once, but apply every pooling at each of its `s ** 2`
  offsets, fold the results into the batch dimension, and unfold them into
  the interleaved map at the end. The layers before the first pooling run
  on the image once instead of on `stride ** 2` copies; those after the k-th
  pooling run on the folded copies of a map already `s ** k` times smaller,
  so no work is repeated on overlapping windows.

Both add the same border: the image is padded by `patch_size // 2` pixels
on every side, by reflection (`"reflect"`, numpy's and `tf.pad`'s REFLECT:
the edge pixel is not repeated) or with black pixels (`"zero"`: value 0 in
the raw [0, 255] input). The patch of pixel `(y, x)` is the square of side
`patch_size` centred on it in that padded image, and each method returns at
`(y, x)` what the patch classifier returns on that patch, to float rounding.

Only TensorFlow ops that lower to builtin TFLite ops are used (pads,
strided slices, concatenations, reshapes, rank-6 transposes), so
`dense_predict` traced for a fixed image size exports to TFLite with builtin
ops only; in TensorFlow it also runs on unknown sizes inside a `tf.function`.
"""

import keras
import numpy as np
import tensorflow as tf

from keras_segattn.core.validation import check_int
from keras_segattn.layers.image_preprocessing import ImagePreprocessing, check_image_shape

METHODS = ("shift_and_stitch", "shifted_pooling")
PADDINGS = ("reflect", "zero")
POOLING_LAYERS = (keras.layers.MaxPooling2D, keras.layers.AveragePooling2D)
# Layers that act on each position alone: they commute with shifts and crops.
POINTWISE_LAYERS = (
    keras.layers.InputLayer,
    ImagePreprocessing,
    keras.layers.Activation,
    keras.layers.ReLU,
    keras.layers.LeakyReLU,
    keras.layers.BatchNormalization,
    keras.layers.Dropout,
    keras.layers.Dense,
)


def _check_layer(layer):
    """Returns `(kernel, stride)` of a conv or pooling layer, `(1, 1)` otherwise."""
    if isinstance(layer, keras.layers.Conv2D) and not isinstance(
        layer, keras.layers.Conv2DTranspose
    ):
        if layer.padding != "valid" or tuple(layer.strides) != (1, 1):
            raise ValueError(
                f"model_or_trunk: convolution {layer.name!r} must have padding='valid' and "
                f"strides 1 (got padding={layer.padding!r}, strides={layer.strides}); any "
                "padding would make border patches differ from the whole-image result."
            )
        if tuple(layer.dilation_rate) != (1, 1) or layer.kernel_size[0] != layer.kernel_size[1]:
            raise ValueError(
                f"model_or_trunk: convolution {layer.name!r} must have a square kernel "
                f"and no dilation; got kernel_size={layer.kernel_size}, "
                f"dilation_rate={layer.dilation_rate}."
            )
        return layer.kernel_size[0], 1
    if isinstance(layer, POOLING_LAYERS):
        pool, strides = tuple(layer.pool_size), tuple(layer.strides)
        if layer.padding != "valid" or pool[0] != pool[1] or strides[0] != strides[1]:
            raise ValueError(
                f"model_or_trunk: pooling {layer.name!r} must be square with "
                f"padding='valid'; got pool_size={pool}, strides={strides}, "
                f"padding={layer.padding!r}."
            )
        return pool[0], strides[0]
    if isinstance(layer, POINTWISE_LAYERS):
        return 1, 1
    raise ValueError(
        f"model_or_trunk: unsupported layer {layer.name!r} ({type(layer).__name__}). "
        "The trunk must be a chain of 'valid' stride-1 convolutions, square 'valid' "
        "poolings and position-wise layers."
    )


def trunk_geometry(trunk):
    """Returns `(receptive_field, stride)` of a fully convolutional trunk.

    The stride is the product of the pooling strides; the receptive field
    grows by `(kernel - 1) * stride-so-far` at each convolution and pooling.

    Raises:
        ValueError: if a layer is not a "valid" stride-1 convolution, a
            square "valid" pooling or a position-wise layer, or the layers
            do not form a single chain.
    """
    receptive_field, stride = 1, 1
    previous = None
    for layer in trunk.layers:
        kernel, layer_stride = _check_layer(layer)
        if previous is not None and layer.input is not previous.output:
            raise ValueError(
                f"model_or_trunk: layer {layer.name!r} does not take the output of "
                f"{previous.name!r}; the trunk must be a single chain of layers."
            )
        receptive_field += (kernel - 1) * stride
        stride *= layer_stride
        previous = layer
    return receptive_field, stride


def find_trunk(model_or_trunk):
    """Returns `(trunk, half)`: the trunk and the labelled pixel's offset.

    `half` is the distance from the top-left corner of what the trunk sees to
    the pixel it labels: `patch_size // 2` for a patch classifier (a model
    with a fixed square input and a layer named `"trunk"`), half the
    receptive field for a bare trunk (the same for `patch_cnn`, whose
    receptive field is `patch_size - 1`).
    """
    if not isinstance(model_or_trunk, keras.Model):
        raise ValueError(
            f"model_or_trunk must be a keras.Model; got {type(model_or_trunk).__name__}."
        )
    shape = tuple(model_or_trunk.inputs[0].shape)
    if len(shape) != 4:
        raise ValueError(f"model_or_trunk: expected an image input of rank 4; got {shape}.")
    if shape[1] is None and shape[2] is None:
        trunk = model_or_trunk
        return trunk, trunk_geometry(trunk)[0] // 2
    patch_size = patch_size_of(model_or_trunk)
    try:
        trunk = model_or_trunk.get_layer("trunk")
    except ValueError:
        trunk = None
    if not isinstance(trunk, keras.Model):
        raise ValueError(
            "model_or_trunk: a patch classifier must contain its fully convolutional "
            f"trunk as a sub-model named 'trunk' (as patch_cnn does); {model_or_trunk.name!r} "
            "has none. Pass the trunk itself instead."
        )
    if trunk_geometry(trunk)[0] > patch_size:
        raise ValueError(
            f"model_or_trunk: the trunk's receptive field exceeds patch_size={patch_size}."
        )
    return trunk, patch_size // 2


def patch_size_of(patch_model):
    """Returns the odd side of a patch classifier's square input."""
    shape = tuple(patch_model.inputs[0].shape)
    if len(shape) != 4 or shape[1] is None or shape[1] != shape[2] or shape[1] % 2 == 0:
        raise ValueError(
            "patch_model: expected a classifier of odd square patches, input "
            f"(batch, patch_size, patch_size, 3); got input shape {shape}."
        )
    return shape[1]


def _check_method(method, padding):
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}; got method={method!r}.")
    if padding not in PADDINGS:
        raise ValueError(f"padding must be one of {PADDINGS}; got padding={padding!r}.")


def _check_arguments(images_shape, half, method, padding, channels=3):
    _check_method(method, padding)
    check_image_shape(images_shape, min_size=1, channels=channels, where="images")
    if padding == "reflect":
        for axis, size in (("height", images_shape[1]), ("width", images_shape[2])):
            if size is not None and size <= half:
                raise ValueError(
                    f"images: image {axis} {size} is too small for padding='reflect', "
                    f"which needs more than patch_size // 2 = {half} pixels; use "
                    f"padding='zero' or larger images. Got shape {tuple(images_shape)}."
                )


def _dims(x):
    """Static dimensions where known, dynamic scalars otherwise."""
    dynamic = tf.shape(x)
    return [d if d is not None else dynamic[i] for i, d in enumerate(x.shape)]


def _pad(images, half, padding, receptive_field, stride):
    """Pads by `half` on every side, then at the bottom and right with zeros
    (or crops) so that each axis holds `stride * ceil(n / stride) - 1 +
    receptive_field` pixels: what the last output row of the last shift reads.

    The extra pixels only reach outputs beyond the image, which are cropped.
    """
    x = tf.cast(images, "float32")
    mode = "REFLECT" if padding == "reflect" else "CONSTANT"
    x = tf.pad(x, [[0, 0], [half, half], [half, half], [0, 0]], mode=mode)
    _, height, width, _ = _dims(images)
    sizes = [stride * -(-size // stride) - 1 + receptive_field for size in (height, width)]
    # At most this many more pixels are needed. Padding by a constant and
    # slicing keeps the static channels, which TFLite's CONV_2D needs (a pad
    # by a computed amount loses every static dimension).
    extra = max(0, stride - 1 + receptive_field - 2 * half)
    x = tf.pad(x, [[0, 0], [0, extra], [0, extra], [0, 0]])
    return x[:, : sizes[0], : sizes[1]]


def _interleave(maps, offsets, height, width):
    """Unfolds shifted maps into one full-resolution map.

    Args:
        maps: `(prod(offsets) ** 2 * batch, h, w, c)`, batch index ordered
            `(dy_1, dx_1, ..., dy_k, dx_k, image)`, coarsest offset first.
        offsets: the `k` offset ranges, coarsest first; output row
            `i * prod(offsets) + dy_1 * prod(offsets[1:]) + ... + dy_k`.
        height, width: the output size to crop to.
    """
    x = maps
    # One level at a time, coarsest first: row i becomes i * s + dy. Each
    # step is a rank-6 transpose; TFLite's TRANSPOSE takes at most rank 6.
    for step in offsets:
        _, h, w, c = _dims(x)
        x = tf.reshape(x, [step, step, -1, h, w, c])
        x = tf.transpose(x, [2, 3, 0, 4, 1, 5])
        x = tf.reshape(x, [-1, h * step, w * step, c])
    return x[:, :height, :width]


def _shift_and_stitch(trunk, padded, receptive_field, stride, height, width):
    coarse_height, coarse_width = -(-height // stride), -(-width // stride)
    length_h = stride * (coarse_height - 1) + receptive_field
    length_w = stride * (coarse_width - 1) + receptive_field
    # All stride ** 2 shifted copies in one batch: one trunk call.
    shifted = [
        padded[:, dy : dy + length_h, dx : dx + length_w]
        for dy in range(stride)
        for dx in range(stride)
    ]
    coarse = trunk(tf.concat(shifted, axis=0), training=False)
    return _interleave(coarse, [stride], height, width)


def _shifted_pooling(trunk, padded, height, width):
    x = padded
    offsets = []
    for layer in trunk.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        if isinstance(layer, POOLING_LAYERS) and layer.strides[0] > 1:
            pool, step = layer.pool_size[0], layer.strides[0]
            _, h, w, _ = _dims(x)
            # The same number of windows at every offset: as many as the
            # last offset, step - 1, leaves room for.
            length_h = ((h - step + 1 - pool) // step) * step + pool
            length_w = ((w - step + 1 - pool) // step) * step + pool
            pooled = [
                layer(x[:, oy : oy + length_h, ox : ox + length_w])
                for oy in range(step)
                for ox in range(step)
            ]
            # Offset-major: the new offsets become the slowest batch index.
            x = tf.concat(pooled, axis=0)
            offsets.insert(0, step)
        else:
            x = layer(x, training=False)
    if not offsets:
        return x[:, :height, :width]
    return _interleave(x, offsets, height, width)


def dense_predict(model_or_trunk, images, method="shift_and_stitch", padding="reflect"):
    """Labels every pixel with a fully convolutional patch classifier.

    `output[b, y, x]` equals the patch classifier's logits on the
    `patch_size` square centred at `(y, x)` of the padded image `b` (see the
    module docstring), what `brute_force_predict` computes patch by patch,
    but with the trunk run on whole images.

    Args:
        model_or_trunk: `keras.Model`. A patch classifier holding its trunk as
            layer `"trunk"` (e.g. `patch_cnn`), or a trunk itself (a chain of
            "valid" stride-1 convolutions, square "valid" poolings and
            position-wise layers accepting any image size). The stride, the
            product of the pooling strides, is read from the trunk's layers.
        images: `(batch, height, width, channels)`, what the trunk takes
            (RGB pixels in [0, 255], uint8 or float, for `patch_cnn`); any
            height and width (more than `patch_size // 2` with
            `padding="reflect"`).
        method: str. `"shift_and_stitch"`: the trunk on the `stride ** 2`
            shifted copies, outputs interleaved. `"shifted_pooling"`: the
            trunk once, each pooling at all its offsets folded into the
            batch, unfolded at the end. Both give the same result. Defaults
            to `"shift_and_stitch"`.
        padding: str. Border of the image: `"reflect"` (mirror without
            repeating the edge pixel) or `"zero"` (black pixels, 0 in the
            raw input). Defaults to `"reflect"`.

    Returns:
        A float32 `tf.Tensor` of shape `(batch, height, width, num_classes)`:
        the logits of every pixel.

    Raises:
        ValueError: naming the argument at fault: `images` of the wrong rank
            or channels, or too small to reflect; an unknown `method` or
            `padding`; a `model_or_trunk` that is not fully convolutional.

    Examples:

    ```python
    model = patch_cnn(num_classes=8)
    logits = dense_predict(model, images, method="shifted_pooling")
    labels = tf.argmax(logits, axis=-1)
    ```
    """
    trunk, half = find_trunk(model_or_trunk)
    receptive_field, stride = trunk_geometry(trunk)
    images = tf.convert_to_tensor(images)
    channels = trunk.inputs[0].shape[-1]
    _check_arguments(tuple(images.shape), half, method, padding, channels)
    _, height, width, _ = _dims(images)
    padded = _pad(images, half, padding, receptive_field, stride)
    if method == "shift_and_stitch":
        return _shift_and_stitch(trunk, padded, receptive_field, stride, height, width)
    return _shifted_pooling(trunk, padded, height, width)


def brute_force_predict(patch_model, images, padding="reflect", batch_size=2048):
    """Labels every pixel by cutting out its patch and classifying it.

    The slow reference for `dense_predict`: the image is padded with numpy
    (`np.pad`, the same border as `dense_predict`), every `patch_size`
    square is copied out, and the patches go through `patch_model` in
    batches.

    Args:
        patch_model: `keras.Model`. Maps `(n, patch_size, patch_size, 3)`
            patches (odd `patch_size`) to `(n, num_classes)` logits.
        images: `(batch, height, width, 3)` RGB pixels in [0, 255].
        padding: str. `"reflect"` or `"zero"`, as in `dense_predict`.
            Defaults to `"reflect"`.
        batch_size: int. Patches per call of `patch_model`. Defaults to
            `2048`.

    Returns:
        A float32 numpy array `(batch, height, width, num_classes)`.
    """
    patch_size = patch_size_of(patch_model)
    half = patch_size // 2
    images = np.asarray(images, dtype="float32")
    channels = patch_model.inputs[0].shape[-1]
    _check_arguments(images.shape, half, "shift_and_stitch", padding, channels)
    batch_size = check_int(batch_size, "batch_size")
    border = ((0, 0), (half, half), (half, half), (0, 0))
    padded = np.pad(images, border, mode="reflect" if padding == "reflect" else "constant")
    # A view (batch, height, width, 3, patch, patch): patch (y, x) starts at
    # padded row y, column x, i.e. is centred on image pixel (y, x).
    windows = np.lib.stride_tricks.sliding_window_view(padded, (patch_size, patch_size), (1, 2))
    batch, height, width = images.shape[:3]
    rows_per_call = max(1, batch_size // width)
    outputs = []
    for b in range(batch):
        for top in range(0, height, rows_per_call):
            block = windows[b, top : top + rows_per_call]
            patches = block.transpose(0, 1, 3, 4, 2).reshape(-1, patch_size, patch_size, 3)
            outputs.append(keras.ops.convert_to_numpy(patch_model(patches, training=False)))
    logits = np.concatenate(outputs, axis=0)
    return logits.reshape(batch, height, width, -1).astype("float32")


@keras.saving.register_keras_serializable(package="keras_segattn")
class DenseLabeller(keras.layers.Layer):
    """A fully convolutional trunk applied densely: `dense_predict` as a layer.

    Wraps a trunk (see `dense_predict`) so a functional model can label
    every pixel with it; the layer owns the trunk's weights, and calling the
    same `DenseLabeller` several times shares them (as `recurrent_cnn`
    does). Differentiable: a model built on it trains with `fit`.

    Args:
        trunk: `keras.Model`. A chain of "valid" stride-1 convolutions,
            square "valid" poolings and position-wise layers accepting any
            image size.
        method: str. `"shift_and_stitch"` or `"shifted_pooling"`, as in
            `dense_predict`. Defaults to `"shifted_pooling"`.
        padding: str. `"reflect"` or `"zero"`, as in `dense_predict`.
            Defaults to `"zero"`: any input size works.

    Call arguments:
        inputs: `(batch, height, width, channels)` with the trunk's channels.

    Returns:
        `(batch, height, width, trunk outputs)`: the trunk's output on the
        receptive field centred on every pixel.
    """

    def __init__(self, trunk, method="shifted_pooling", padding="zero", **kwargs):
        super().__init__(**kwargs)
        if isinstance(trunk, dict):
            trunk = keras.saving.deserialize_keras_object(trunk)
        if not isinstance(trunk, keras.Model):
            raise ValueError(f"trunk must be a keras.Model; got {type(trunk).__name__}.")
        _check_method(method, padding)
        trunk_geometry(trunk)  # validates the layers
        self.trunk = trunk
        self.method = method
        self.padding = padding

    def build(self, input_shape):
        channels = self.trunk.inputs[0].shape[-1]
        check_image_shape(input_shape, min_size=1, channels=channels, where=f"{self.name} inputs")
        self.built = True

    def call(self, inputs):
        return dense_predict(self.trunk, inputs, method=self.method, padding=self.padding)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:3]) + (self.trunk.outputs[0].shape[-1],)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "trunk": keras.saving.serialize_keras_object(self.trunk),
                "method": self.method,
                "padding": self.padding,
            }
        )
        return config


def dense_model(patch_model, method="shifted_pooling", padding="zero"):
    """A patch classifier as a model labelling every pixel of any image.

    `images (batch, h, w, 3) -> logits (batch, h, w, num_classes)`, through
    a `DenseLabeller` on the patch model's trunk (its weights are shared,
    not copied): what scoring, `segattn evaluate` and export use for
    `patch_cnn`.

    Args:
        patch_model: a patch classifier holding its trunk as layer
            `"trunk"` (e.g. `patch_cnn`).
        method: as `DenseLabeller`'s.
        padding: as `DenseLabeller`'s.

    Returns:
        A `keras.Model` named `"<patch model name>_dense"`.
    """
    try:
        trunk = patch_model.get_layer("trunk")
    except (ValueError, AttributeError):
        raise ValueError(
            f"patch_model must be a patch classifier with a 'trunk' layer (patch_cnn); "
            f"got {getattr(patch_model, 'name', patch_model)!r}."
        ) from None
    inputs = keras.Input(shape=(None, None, 3), name="images")
    logits = DenseLabeller(trunk, method=method, padding=padding, name="dense")(inputs)
    outputs = keras.layers.Activation("linear", dtype="float32", name="logits")(logits)
    return keras.Model(inputs, outputs, name=f"{patch_model.name}_dense")
