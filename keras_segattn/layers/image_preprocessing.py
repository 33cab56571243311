import keras
import tensorflow as tf

# keras.applications' "caffe" mode: the ImageNet VGG16 weights expect BGR
# images minus these per-channel means.
CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)


@keras.saving.register_keras_serializable(package="keras_segattn")
class ImagePreprocessing(keras.layers.Layer):
    """Turns raw pixels into what a backbone expects, inside the model.

    Every model of the package starts with this layer, so a SavedModel or a
    `.tflite` file needs no preprocessing code beside it: feed uint8 or float
    pixels in `[0, 255]`, NHWC, RGB.

    Args:
        mode: string. `"caffe"` (RGB to BGR, minus the ImageNet means, as the
            VGG16 weights expect), `"unit"` (scale to `[0, 1]`) or
            `"symmetric"` (scale to `[-1, 1]`). Defaults to `"caffe"`.
        min_size: int. Smallest height and width the model accepts; checked
            whenever the input size is known. Defaults to `1`.
        channels: int. Channels expected in the last axis: 3 for RGB, 1 for
            greyscale (`"caffe"` needs 3). Defaults to `3`.
    """

    MODES = ("caffe", "unit", "symmetric")

    def __init__(self, mode="caffe", min_size=1, channels=3, **kwargs):
        super().__init__(**kwargs)
        if mode not in self.MODES:
            raise ValueError(f"mode must be one of {self.MODES}; got mode={mode!r}.")
        if mode == "caffe" and channels != 3:
            raise ValueError(f"mode='caffe' needs channels=3; got channels={channels!r}.")
        self.mode = mode
        self.min_size = int(min_size)
        self.channels = int(channels)

    def build(self, input_shape):
        check_image_shape(input_shape, self.min_size, self.channels, where=self.name)
        self.built = True

    def call(self, inputs):
        check_image_shape(inputs.shape, self.min_size, self.channels, where=self.name)
        images = tf.cast(inputs, self.compute_dtype)
        if self.mode == "caffe":
            return images[..., ::-1] - tf.constant(CAFFE_BGR_MEAN, self.compute_dtype)
        if self.mode == "unit":
            return images / 255.0
        return images / 127.5 - 1.0

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"mode": self.mode, "min_size": self.min_size, "channels": self.channels})
        return config


def check_image_shape(shape, min_size=1, channels=3, where="images"):
    """Raises a ValueError unless `shape` is `(batch, h, w, channels)`, h, w >= min_size.

    Unknown dimensions pass: the check runs again once they are known.
    """
    shape = tuple(shape)
    if len(shape) != 4:
        raise ValueError(
            f"{where}: expected a batch of images of rank 4 (batch, height, "
            f"width, {channels}); got rank {len(shape)} with shape {shape}."
        )
    if shape[-1] is not None and shape[-1] != channels:
        raise ValueError(
            f"{where}: expected {channels} channels in the last axis; got shape {shape}."
        )
    for axis, size in (("height", shape[1]), ("width", shape[2])):
        if size is not None and size < min_size:
            raise ValueError(
                f"{where}: image {axis} {size} is smaller than the minimum "
                f"{min_size} this model accepts; got shape {shape}."
            )
