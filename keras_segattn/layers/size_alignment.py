import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="keras_segattn")
class PadToMultiple(keras.layers.Layer):
    """Zero-pads height and width at the bottom and right to a multiple.

    With `CropToReference` at the end, this lets a network of total stride
    `multiple` take any image size and return an output of exactly that
    size: FCN's `pad=100` plus crop offsets do the same job in Caffe, but
    tie the network to one input layout.

    Args:
        multiple: int. Height and width are padded up to a multiple of it.
    """

    def __init__(self, multiple, **kwargs):
        super().__init__(**kwargs)
        self.multiple = int(multiple)
        if self.multiple < 1:
            raise ValueError(f"multiple must be >= 1; got multiple={multiple!r}.")

    def call(self, inputs):
        shape = tf.shape(inputs)
        height = (shape[1] + self.multiple - 1) // self.multiple * self.multiple
        width = (shape[2] + self.multiple - 1) // self.multiple * self.multiple
        # Constant paddings then a slice, rather than computed paddings: the
        # TFLite converter cannot infer any dimension of a PAD whose paddings
        # are computed, and its convolutions need a static channel count.
        extra = self.multiple - 1
        padded = tf.pad(inputs, [[0, 0], [0, extra], [0, extra], [0, 0]])
        return padded[:, :height, :width]

    def compute_output_shape(self, input_shape):
        def padded(size):
            return None if size is None else -(-size // self.multiple) * self.multiple

        return (input_shape[0], padded(input_shape[1]), padded(input_shape[2])) + tuple(
            input_shape[3:]
        )

    def get_config(self):
        config = super().get_config()
        config.update({"multiple": self.multiple})
        return config


@keras.saving.register_keras_serializable(package="keras_segattn")
class CropToReference(keras.layers.Layer):
    """Crops `inputs[0]` to the height and width of `inputs[1]` (top-left)."""

    def call(self, inputs):
        tensor, reference = inputs
        reference_shape = tf.shape(reference)
        return tensor[:, : reference_shape[1], : reference_shape[2]]

    def compute_output_shape(self, input_shape):
        tensor_shape, reference_shape = input_shape
        return (tensor_shape[0],) + tuple(reference_shape[1:3]) + tuple(tensor_shape[3:])
