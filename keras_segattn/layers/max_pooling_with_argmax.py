import keras
import numpy as np
import tensorflow as tf

from keras_segattn.core.kernels import fused_kernels
from keras_segattn.core.validation import check_size
from keras_segattn.layers.window_utils import unpool, window_slices


def fused_max_pool_with_argmax(inputs, pool_size, padding):
    """`tf.nn.max_pool_with_argmax`, its flat indices turned into switches.

    The fused kernel (2-6x faster than strided slices on CPU) takes the
    first maximum of a window on ties, as `builtin_max_pool_with_argmax`
    does, and the gradient goes there too. On CPU its indices are int32
    when an image's `height * width * channels` fits (twice as fast as
    int64; with a GPU, int64, the only type of TensorFlow's GPU kernel).
    The kernel's own gradient takes int64 indices only, so the gradient is
    the unpooling of the upstream one through the switches.
    """

    def forward(inputs):
        if tf.config.list_logical_devices("GPU"):
            # TensorFlow's GPU kernel takes int64 indices only.
            return _fused_pool(inputs, pool_size, padding, tf.int64)
        static = inputs.shape[1:]
        if None not in static:
            size = int(np.prod(static))
            return _fused_pool(inputs, pool_size, padding, tf.int32 if size < 2**31 else tf.int64)
        shape = tf.shape(inputs, out_type=tf.int64)
        return tf.cond(
            shape[1] * shape[2] * shape[3] < 2**31,
            lambda: _fused_pool(inputs, pool_size, padding, tf.int32),
            lambda: _fused_pool(inputs, pool_size, padding, tf.int64),
        )

    return _gradient_to_switches(forward, inputs, pool_size)


def _gradient_to_switches(forward, inputs, pool_size):
    """`forward(inputs)` -> `(pooled, switches)`, its gradient sent to each
    window's switch (the first maximum)."""

    @tf.custom_gradient
    def pool(inputs):
        pooled, switches = forward(inputs)

        def gradient(upstream, _):
            return unpool(upstream, switches, pool_size, reference=inputs)

        return (pooled, switches), gradient

    return pool(inputs)


def _fused_pool(inputs, pool_size, padding, index_dtype):
    ph, pw = pool_size
    pooled, argmax = tf.nn.max_pool_with_argmax(
        inputs,
        [1, ph, pw, 1],
        [1, ph, pw, 1],
        padding.upper(),
        output_dtype=index_dtype,
        include_batch_in_index=False,
    )
    # Without the batch, argmax is (y * width + x) * channels + c. Minus the
    # index of its window's first cell, that is (dy * width + dx) * channels:
    # comparisons then give dy and dx, with no integer division.
    shape = tf.shape(inputs, out_type=index_dtype)
    row, cell = shape[2] * shape[3], shape[3]
    out = tf.shape(pooled, out_type=index_dtype)
    first = (
        tf.range(out[1], dtype=index_dtype)[:, None, None] * (ph * row)
        + tf.range(out[2], dtype=index_dtype)[None, :, None] * (pw * cell)
        + tf.range(out[3], dtype=index_dtype)[None, None, :]
    )
    offset = argmax - first
    dy = sum(tf.cast(offset >= k * row, tf.int32) for k in range(1, ph))
    rest = offset - tf.cast(dy, index_dtype) * row if ph > 1 else offset
    dx = sum(tf.cast(rest >= k * cell, tf.int32) for k in range(1, pw))
    switches = dy * pw + dx  # a Python 0 only for a 1x1 window
    return pooled, switches if tf.is_tensor(switches) else tf.zeros_like(offset, tf.int32)


def builtin_max_pool_with_argmax(inputs, pool_size, padding):
    """Pooling with switches in TFLite builtins: strided slices, `MAXIMUM`,
    `ARG_MAX`. The gradient goes to the window's first maximum (a plain
    `reduce_max` would share it among ties), as the fused kernel's does."""

    def forward(inputs):
        windows = tf.stack(window_slices(inputs, pool_size, padding), -1)
        return tf.reduce_max(windows, axis=-1), tf.argmax(windows, axis=-1, output_type=tf.int32)

    return _gradient_to_switches(forward, inputs, pool_size)


@keras.saving.register_keras_serializable(package="keras_segattn")
class MaxPoolingWithArgmax2D(keras.layers.Layer):
    """Non-overlapping max pooling that also returns the argmax switches.

    The switches are what DeconvNet (Noh et al. 2015) hands from each
    encoder pooling to the mirrored `MaxUnpooling2D`. They are stored as
    the position of the maximum inside its window, row-major, in
    `[0, pool_h * pool_w)`, with the same shape as the pooled output; on
    ties the first position wins, and so does the gradient. In TensorFlow
    it runs `tf.nn.max_pool_with_argmax`; traced for TFLite, which runs
    that only through Flex, strided slices, `MAXIMUM` and `ARG_MAX` (see
    `keras_segattn.core.kernels`). With `"same"` padding and a window over
    2, TensorFlow would pad the top and left too, so the builtin
    formulation runs everywhere.

    Args:
        pool_size: int or tuple of 2 ints. Window size, also the stride.
            Defaults to `2`.
        padding: string, `"valid"` (drop the trailing odd row or column, as
            `keras.layers.MaxPooling2D`) or `"same"` (pad bottom and right so
            every input pixel lies in a window). Defaults to `"valid"`.

    Call arguments:
        inputs: a `(batch, height, width, channels)` tensor.

    Returns:
        A tuple `(pooled, switches)`; `switches` is `int32`.

    Examples:

    ```python
    pooled, switches = MaxPoolingWithArgmax2D()(features)
    restored = MaxUnpooling2D()([pooled, switches, features])
    ```
    """

    def __init__(self, pool_size=2, padding="valid", **kwargs):
        super().__init__(**kwargs)
        self.pool_size = check_size(pool_size, "pool_size")
        if padding not in ("valid", "same"):
            raise ValueError(f"padding must be 'valid' or 'same'; got padding={padding!r}.")
        self.padding = padding
        self.input_spec = keras.layers.InputSpec(ndim=4)

    def call(self, inputs):
        # TensorFlow's "SAME" puts floor(total / 2) padding rows on top: none
        # only for windows of at most 2.
        same_windows = self.padding == "valid" or max(self.pool_size) <= 2
        if fused_kernels() and same_windows:
            return fused_max_pool_with_argmax(inputs, self.pool_size, self.padding)
        return builtin_max_pool_with_argmax(inputs, self.pool_size, self.padding)

    def compute_output_shape(self, input_shape):
        batch, height, width, channels = input_shape

        def pooled(size, window):
            if size is None:
                return None
            return -(-size // window) if self.padding == "same" else size // window

        shape = (
            batch,
            pooled(height, self.pool_size[0]),
            pooled(width, self.pool_size[1]),
            channels,
        )
        return shape, shape

    def compute_output_spec(self, inputs):
        pooled_shape, switch_shape = self.compute_output_shape(inputs.shape)
        return (
            keras.KerasTensor(pooled_shape, dtype=inputs.dtype),
            keras.KerasTensor(switch_shape, dtype="int32"),
        )

    def get_config(self):
        config = super().get_config()
        config.update({"pool_size": self.pool_size, "padding": self.padding})
        return config
