import math

import keras
import numpy as np
import tensorflow as tf

from keras_segattn.core.kernels import tracing_for_tflite
from keras_segattn.core.precision import keep_float
from keras_segattn.core.validation import check_int

# Burt and Adelson's 5-tap binomial kernel. Its expansion filter (twice the
# kernel, applied to the zero-inserted image) factors as the 2-tap box of a
# pixel replication times [1, 3, 3, 1] / 8, which is how `_expand` computes it.
BINOMIAL_5 = np.array([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0
EXPAND_AFTER_REPLICATION = np.array([1.0, 3.0, 3.0, 1.0]) / 8.0
KINDS = ("laplacian", "gaussian")
# Floor of the local variance in LCN: keeps sqrt (and its gradient) finite on
# flat regions, where the output is 0 whatever the divisor.
LCN_EPSILON = 1e-6


def lcn_kernel(size):
    """The normalised 1-D Gaussian of the local contrast normalisation.

    sigma is `size / 4` (Torch's `image.gaussian(size)` default, which the
    scene-labelling code of Farabet et al. used).
    """
    offsets = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    kernel = np.exp(-0.5 * (offsets / (size / 4.0)) ** 2)
    return kernel / kernel.sum()


def replicate(images, factor):
    """Repeats every pixel `factor` x `factor` times (nearest upsampling).

    In TensorFlow a broadcast and a reshape rather than
    `tf.image.resize(method="nearest")`, whose gradient
    (`ResizeNearestNeighborGrad`) has no XLA kernel. Traced for TFLite,
    `RESIZE_NEAREST_NEIGHBOR`, which gives the same values: TFLite runs
    `BROADCAST_TO` on its slow reference kernel (90x120x64 replicated 4x:
    186 ms against 2.6 ms). The channel count stays static.
    """
    shape = tf.shape(images)
    if tracing_for_tflite():
        # Without half-pixel centres, output pixel i reads floor(i / factor).
        return tf.raw_ops.ResizeNearestNeighbor(
            images=images,
            size=shape[1:3] * factor,
            align_corners=False,
            half_pixel_centers=False,
        )
    channels = images.shape[-1] if images.shape[-1] is not None else shape[3]
    # A reshape, not `images[:, :, None, :, None]`: TFLite's builtin
    # STRIDED_SLICE has no new-axis mask.
    spaced = tf.reshape(images, tf.stack([shape[0], shape[1], 1, shape[2], 1, channels]))
    tiled = tf.broadcast_to(
        spaced,
        tf.stack([shape[0], shape[1], factor, shape[2], factor, channels]),
    )
    return tf.reshape(tiled, tf.stack([shape[0], shape[1] * factor, shape[2] * factor, channels]))


@keras.saving.register_keras_serializable(package="keras_segattn")
class ImagePyramid(keras.layers.Layer):
    """A Gaussian or Laplacian image pyramid, optionally contrast-normalised.

    Gaussian level `k + 1` is level `k` blurred by the 5-tap binomial kernel
    `[1, 4, 6, 4, 1] / 16` along each axis (edge-symmetric padding: the
    border pixel is repeated, `d c b a | a b c d`) and decimated by 2 (rows
    and columns 0, 2, 4, ...), so level `k` of an `h` x `w` image is
    `ceil(h / 2**k)` x `ceil(w / 2**k)`. Laplacian level `k` is
    `G_k - expand(G_{k+1})` for `k < levels - 1` and the last level is
    `G_{levels - 1}` (Burt and Adelson's definition; `expand` inserts zeros
    between the samples and blurs with twice the kernel, the coarse level
    extended by edge-symmetric padding). Farabet et al. (TPAMI 2013) feed
    the bands of a Laplacian pyramid to their multiscale ConvNet.

    With `lcn_size`, every level goes through the local contrast
    normalisation of Farabet et al., channel by channel: subtract the local
    mean (weights of a `lcn_size` x `lcn_size` Gaussian, sigma
    `lcn_size / 4`), then divide by the local standard deviation of the
    result (same weights), clamped below by its mean over the image (per
    image and channel, as Torch's `SpatialDivisiveNormalization`) so that
    flat regions are not amplified to noise. Near the borders the weights
    are renormalised over the pixels inside the image. The variance gets
    `1e-6` added before the square root to keep gradients finite.

    Only builtin TFLite ops: a constant-size `MIRROR_PAD`, depthwise
    convolutions, a broadcast and reshape (pixel replication) and strided
    slices.

    Args:
        levels: int. Number of levels, scales 1, 1/2, ..., 1/2**(levels-1);
            images must be at least `2 ** (levels - 1)` pixels high and
            wide. Defaults to `3`.
        kind: str. `"laplacian"` (band-pass levels, the last one low-pass)
            or `"gaussian"` (low-pass levels). Defaults to `"laplacian"`.
        lcn_size: int or `None`. Odd window side of the local contrast
            normalisation of each level; `None` turns it off. Defaults to
            `15` (the paper's 15x15 neighbourhood).

    Returns (when called):
        A list of `levels` tensors, finest first, level `k` of shape
        `(batch, ceil(h / 2**k), ceil(w / 2**k), channels)`.
    """

    def __init__(self, levels=3, kind="laplacian", lcn_size=15, **kwargs):
        super().__init__(**kwargs)
        levels = check_int(levels, "levels")
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}; got kind={kind!r}.")
        if lcn_size is not None and (
            isinstance(lcn_size, bool)
            or not isinstance(lcn_size, int)
            or lcn_size < 3
            or lcn_size % 2 == 0
        ):
            raise ValueError(
                f"lcn_size must be None or an odd int >= 3; got lcn_size={lcn_size!r}."
            )
        self.levels = levels
        self.kind = kind
        self.lcn_size = lcn_size

    @property
    def min_size(self):
        return 2 ** (self.levels - 1)

    def _check_shape(self, shape):
        shape = tuple(shape)
        if len(shape) != 4:
            raise ValueError(
                f"{self.name}: expected images of rank 4 (batch, height, width, channels); "
                f"got shape {shape}."
            )
        if shape[-1] is None:
            raise ValueError(f"{self.name}: the channel axis must be known; got shape {shape}.")
        for axis, size in (("height", shape[1]), ("width", shape[2])):
            if size is not None and size < self.min_size:
                raise ValueError(
                    f"{self.name}: image {axis} {size} is smaller than 2 ** (levels - 1) = "
                    f"{self.min_size}, the least levels={self.levels} needs; got shape {shape}."
                )

    def build(self, input_shape):
        self._check_shape(input_shape)
        self.built = True

    def _depthwise(self, x, kernel_1d_rows, kernel_1d_cols, strides=1):
        channels = x.shape[-1]
        kernel = np.outer(kernel_1d_rows, kernel_1d_cols)[:, :, None, None]
        kernel = tf.constant(np.tile(kernel, (1, 1, channels, 1)), x.dtype)
        return tf.nn.depthwise_conv2d(x, kernel, [1, strides, strides, 1], "VALID")

    def _reduce(self, x):
        # One 5x5 depthwise convolution of stride 2 computes only the kept
        # samples: a quarter of the work of blurring everything.
        padded = tf.pad(x, [[0, 0], [2, 2], [2, 2], [0, 0]], mode="SYMMETRIC")
        return self._depthwise(padded, BINOMIAL_5, BINOMIAL_5, strides=2)

    def _expand(self, coarse, fine):
        # Replicating each sample twice is the zero insertion convolved with a
        # 2-tap box, so a 4-tap kernel completes the 5-tap expansion filter.
        padded = tf.pad(coarse, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="SYMMETRIC")
        replicated = replicate(padded, 2)
        expanded = self._depthwise(replicated, EXPAND_AFTER_REPLICATION, EXPAND_AFTER_REPLICATION)
        fine_shape = tf.shape(fine)
        return expanded[:, 1 : 1 + fine_shape[1], 1 : 1 + fine_shape[2]]

    def _local_mean(self, x, kernel, coefficients):
        half = len(kernel) // 2
        padded = tf.pad(x, [[0, 0], [half, half], [half, half], [0, 0]])
        rows = self._depthwise(padded, kernel, [1.0])
        return self._depthwise(rows, [1.0], kernel) / coefficients

    def _normalise(self, x):
        kernel = lcn_kernel(self.lcn_size)
        half = self.lcn_size // 2
        # The weight of the pixels inside the image, separable like the
        # window: zero padding plus this division renormalises at borders.
        shape = tf.shape(x)
        ones_rows = tf.ones(tf.stack([1, shape[1], 1, 1]), x.dtype)
        ones_cols = tf.ones(tf.stack([1, 1, shape[2], 1]), x.dtype)
        kernel_tensor = tf.constant(kernel.reshape(-1, 1, 1, 1), x.dtype)
        row_weights = tf.nn.depthwise_conv2d(
            tf.pad(ones_rows, [[0, 0], [half, half], [0, 0], [0, 0]]),
            kernel_tensor,
            [1, 1, 1, 1],
            "VALID",
        )
        col_weights = tf.nn.depthwise_conv2d(
            tf.pad(ones_cols, [[0, 0], [0, 0], [half, half], [0, 0]]),
            tf.reshape(kernel_tensor, (1, -1, 1, 1)),
            [1, 1, 1, 1],
            "VALID",
        )
        coefficients = row_weights * col_weights
        # The result does not change when a constant is taken off first, but
        # float32 rounding does: about 1e-7 of the pixel values, which the
        # division by a tiny local deviation turns into visible noise on flat
        # regions (a flat 128 gave 0.015 instead of 0).
        x = x - tf.reduce_mean(x, axis=[1, 2], keepdims=True)
        centred = x - self._local_mean(x, kernel, coefficients)
        std = tf.sqrt(self._local_mean(tf.square(centred), kernel, coefficients) + LCN_EPSILON)
        divisor = tf.maximum(std, tf.reduce_mean(std, axis=[1, 2], keepdims=True))
        return centred / divisor

    def call(self, inputs):
        self._check_shape(inputs.shape)
        # float32 whatever the policy, as Keras' normalization layers: the
        # division by a small local deviation magnifies bfloat16's rounding
        # (2**-8 of the pixel values) into visible noise. The pyramid is a
        # sliver of the network's cost.
        # Likewise in a full-integer TFLite file: a flat region's local
        # deviation quantised to zero was a division by zero there.
        with keep_float():
            x = tf.cast(inputs, tf.float32)
            gaussian = [x]
            for _ in range(self.levels - 1):
                gaussian.append(self._reduce(gaussian[-1]))
            if self.kind == "gaussian":
                pyramid = gaussian
            else:
                pyramid = [
                    fine - self._expand(coarse, fine)
                    for fine, coarse in zip(gaussian, gaussian[1:])
                ] + [gaussian[-1]]
            if self.lcn_size is not None:
                pyramid = [self._normalise(level) for level in pyramid]
        return [tf.cast(level, self.compute_dtype) for level in pyramid]

    def compute_output_shape(self, input_shape):
        def scaled(size, k):
            return None if size is None else math.ceil(size / 2**k)

        batch, height, width, channels = tuple(input_shape)
        return [(batch, scaled(height, k), scaled(width, k), channels) for k in range(self.levels)]

    def get_config(self):
        config = super().get_config()
        config.update({"levels": self.levels, "kind": self.kind, "lcn_size": self.lcn_size})
        return config
