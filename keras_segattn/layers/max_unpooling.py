import keras

from keras_segattn.core.validation import check_size
from keras_segattn.layers.window_utils import unpool


@keras.saving.register_keras_serializable(package="keras_segattn")
class MaxUnpooling2D(keras.layers.Layer):
    """Max unpooling through argmax switches (DeconvNet, Noh et al. 2015).

    Places each value at the position its pooling window took the maximum
    from (the switch) and zeros elsewhere, giving a sparse map of the
    pre-pooling size that the following deconvolutions densify. The switch
    format is that of `MaxPoolingWithArgmax2D`. Built from `EQUAL`, `MUL`,
    `PACK` and `RESHAPE`, so TFLite runs it with builtin ops. (In TensorFlow
    `tf.scatter_nd` of `tf.nn.max_pool_with_argmax` indices measured slower
    (`docs/speed.md`), so this runs everywhere.)

    Args:
        pool_size: int or tuple of 2 ints. The pooling window that made the
            switches. Defaults to `2`.

    Call arguments:
        inputs: a list `[values, switches]` or `[values, switches,
            reference]`. `values` is `(batch, h, w, channels)`; `switches`
            is an integer tensor of the same shape. With `reference` (the
            tensor that was pooled), the output has its height and width:
            what `"same"` padding added is cropped, what `"valid"` pooling
            dropped of an odd size comes back as zeros.

    Returns:
        A `(batch, h * pool_h, w * pool_w, channels)` tensor, or the size of
        `reference`.
    """

    def __init__(self, pool_size=2, **kwargs):
        super().__init__(**kwargs)
        self.pool_size = check_size(pool_size, "pool_size")

    def call(self, inputs):
        reference = inputs[2] if len(inputs) == 3 else None
        return unpool(inputs[0], inputs[1], self.pool_size, reference)

    def compute_output_shape(self, input_shape):
        if len(input_shape) not in (2, 3):
            raise ValueError(
                "MaxUnpooling2D expects [values, switches] or [values, switches, "
                f"reference]; got {len(input_shape)} inputs."
            )
        batch, height, width, channels = input_shape[0]
        if len(input_shape) == 3:
            return (batch, input_shape[2][1], input_shape[2][2], channels)
        return (
            batch,
            None if height is None else height * self.pool_size[0],
            None if width is None else width * self.pool_size[1],
            channels,
        )

    def build(self, input_shape):
        if not isinstance(input_shape, (list, tuple)) or len(input_shape) not in (2, 3):
            raise ValueError(
                "MaxUnpooling2D expects inputs [values, switches] or [values, switches, reference]."
            )
        values_shape, switches_shape = input_shape[0], input_shape[1]
        if len(values_shape) != 4 or tuple(values_shape[1:]) != tuple(switches_shape[1:]):
            raise ValueError(
                "MaxUnpooling2D expects 4-D values and switches of the same shape; "
                f"got values {tuple(values_shape)} and switches "
                f"{tuple(switches_shape)}."
            )
        self.built = True

    def get_config(self):
        config = super().get_config()
        config.update({"pool_size": self.pool_size})
        return config
