import keras
import tensorflow as tf

from keras_segattn.core.validation import check_size
from keras_segattn.layers.window_utils import window_slices


@keras.saving.register_keras_serializable(package="keras_segattn")
class MaxPoolingWithArgmax2D(keras.layers.Layer):
    """Non-overlapping max pooling that also returns the argmax switches.

    The switches are what DeconvNet (Noh et al. 2015) hands from each
    encoder pooling to the mirrored `MaxUnpooling2D`. They are stored as
    the position of the maximum inside its window, row-major, in
    `[0, pool_h * pool_w)`, with the same shape as the pooled output; on
    ties the first position wins. Unlike `tf.nn.max_pool_with_argmax`, which
    TFLite runs only through Flex, this is strided slices, `MAXIMUM` and
    `ARG_MAX`, all TFLite builtins.

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

    Example:

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
        windows = tf.stack(window_slices(inputs, self.pool_size, self.padding), -1)
        pooled = tf.reduce_max(windows, axis=-1)
        switches = tf.argmax(windows, axis=-1, output_type=tf.int32)
        return pooled, switches

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
