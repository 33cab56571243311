"""Weight initializers."""

import keras
import numpy as np


def upsampling_kernel_size(stride):
    """The `Conv2DTranspose` kernel size at which `BilinearUpsampling` equals
    bilinear resizing by `stride`: `2 * stride` if even, `2 * stride - 1` if
    odd (FCN's strides, 2, 8, 16 and 32, are even)."""
    if isinstance(stride, bool) or not isinstance(stride, (int, np.integer)) or stride < 1:
        raise ValueError(f"stride must be a positive int; got stride={stride!r}.")
    return 2 * int(stride) - int(stride) % 2


def bilinear_kernel(kernel_size, channels, dtype="float32"):
    """Returns the bilinear-upsampling kernel of FCN (Long et al. 2015).

    The kernel is separable, `(1 - |x - c| / f) * (1 - |y - c| / f)` with
    `f = (k + 1) // 2` and `c = f - 1` for odd `k`, `f - 0.5` for even `k`,
    as in the reference `surgery.interp`. Channel `i` maps to channel `i`
    only. With `kernel_size = upsampling_kernel_size(stride)` (`2 * stride`
    for an even stride, `2 * stride - 1` for an odd one) and
    `padding="same"`, a `Conv2DTranspose` carrying this kernel equals
    half-pixel bilinear resizing (`tf.image.resize(..., "bilinear")`) away
    from the border. (`2 * stride` at an odd stride shifts the output by
    half a pixel.)

    Args:
        kernel_size: int or tuple of 2 ints. Kernel height and width.
        channels: int. Number of input (= output) channels.
        dtype: string. Numpy dtype of the result. Defaults to `"float32"`.

    Returns:
        A `(kh, kw, channels, channels)` array, the layout of a Keras
        `Conv2DTranspose` kernel.
    """
    kh, kw = (kernel_size, kernel_size) if np.isscalar(kernel_size) else kernel_size
    weights_1d = []
    for k in (kh, kw):
        f = (k + 1) // 2
        center = f - 1 if k % 2 == 1 else f - 0.5
        weights_1d.append(1.0 - np.abs(np.arange(k) - center) / f)
    kernel_2d = np.outer(*weights_1d)
    kernel = np.zeros((kh, kw, channels, channels), dtype=dtype)
    kernel[:, :, np.arange(channels), np.arange(channels)] = kernel_2d[..., None]
    return kernel


@keras.saving.register_keras_serializable(package="keras_segattn")
class BilinearUpsampling(keras.initializers.Initializer):
    """Initializes a `Conv2DTranspose` kernel to bilinear upsampling.

    FCN's in-network upsampling layers start as bilinear interpolation and
    are either frozen (the reference code) or learned from there (the CVPR
    text). The layer must map `C` channels to `C` channels.

    Examples:

    ```python
    up = keras.layers.Conv2DTranspose(
        21, kernel_size=upsampling_kernel_size(2), strides=2, padding="same",
        use_bias=False, kernel_initializer=keras_segattn.initializers.BilinearUpsampling())
    ```
    """

    def __call__(self, shape, dtype=None):
        if len(shape) != 4 or shape[2] != shape[3]:
            raise ValueError(
                "BilinearUpsampling expects a Conv2DTranspose kernel of shape "
                "(kh, kw, channels, channels) with as many filters as input "
                f"channels; got shape={tuple(shape)}."
            )
        dtype = keras.backend.standardize_dtype(dtype or "float32")
        return keras.ops.convert_to_tensor(bilinear_kernel(shape[:2], shape[2]), dtype=dtype)

    def get_config(self):
        return {}
