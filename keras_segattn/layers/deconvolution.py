import keras
import tensorflow as tf

from keras_segattn.core.kernels import tracing_for_tflite


@keras.saving.register_keras_serializable(package="keras_segattn")
class StrideOneConv2DTranspose(keras.layers.Conv2DTranspose):
    """A stride-1 `Conv2DTranspose` that TFLite runs as the `Conv2D` it equals.

    With stride 1 a transposed convolution is a convolution with the kernel
    flipped in both spatial axes and its channel axes swapped (padded by
    `kernel - 1 - p` where the convolution it transposes pads `p`). The
    weights, config and outputs are those of `keras.layers.Conv2DTranspose`,
    so a model can swap one for the other. In TensorFlow it runs as
    `Conv2DTranspose` (the flipped kernel, recomputed every call, is slower
    there); traced for TFLite (see
    `keras_segattn.core.kernels`) the graph holds a plain convolution,
    which TFLite's XNNPACK delegate runs at any input size. XNNPACK leaves
    a `TRANSPOSE_CONV` of dynamic height and width to TFLite's slow
    reference kernel, several times slower than the convolutions
    (`docs/speed.md`).

    Its arguments are those of `keras.layers.Conv2DTranspose`, with
    `strides=1`, `dilation_rate=1` and no `output_padding`.
    """

    def __init__(self, filters, kernel_size, strides=1, **kwargs):
        super().__init__(filters, kernel_size, strides=strides, **kwargs)
        if tuple(self.strides) != (1, 1):
            raise ValueError(
                "StrideOneConv2DTranspose needs strides=1 (use keras.layers.Conv2DTranspose "
                f"to upsample); got strides={strides!r}."
            )
        if self.data_format != "channels_last":
            raise ValueError(
                "StrideOneConv2DTranspose supports data_format='channels_last' only; got "
                f"data_format={self.data_format!r}."
            )
        if tuple(self.dilation_rate) != (1, 1) or self.output_padding is not None:
            raise ValueError(
                "StrideOneConv2DTranspose needs dilation_rate=1 and output_padding=None; got "
                f"dilation_rate={self.dilation_rate} and output_padding={self.output_padding}."
            )

    def call(self, inputs):
        if not tracing_for_tflite():
            return super().call(inputs)
        kernel = tf.transpose(tf.reverse(self.kernel, [0, 1]), [0, 1, 3, 2])
        pads = []
        for size in self.kernel_size:
            if self.padding == "valid":
                pads.append((size - 1, size - 1))
            else:  # "same" transposes a convolution padding (size - 1) // 2 before
                pads.append((size - 1 - (size - 1) // 2, (size - 1) // 2))
        if all(before == after for before, after in pads) and self.padding == "same":
            outputs = tf.nn.conv2d(inputs, kernel, 1, "SAME")
        else:
            paddings = [[0, 0], list(pads[0]), list(pads[1]), [0, 0]]
            outputs = tf.nn.conv2d(tf.pad(inputs, paddings), kernel, 1, "VALID")
        if self.use_bias:
            outputs = tf.nn.bias_add(outputs, self.bias)
        return self.activation(outputs) if self.activation is not None else outputs
