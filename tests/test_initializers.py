import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_segattn.initializers import (
    BilinearUpsampling,
    bilinear_kernel,
    upsampling_kernel_size,
)


@pytest.mark.parametrize("factor", [2, 3, 4, 5, 8, 32])
def test_transposed_conv_with_bilinear_kernel_equals_resize_in_the_interior(factor, rng):
    channels = 3
    x = rng.normal(size=(2, 9, 10, channels)).astype("float32")
    layer = keras.layers.Conv2DTranspose(
        channels,
        upsampling_kernel_size(factor),
        strides=factor,
        padding="same",
        use_bias=False,
        kernel_initializer=BilinearUpsampling(),
    )
    upsampled = np.asarray(layer(x))
    expected = tf.image.resize(x, (9 * factor, 10 * factor), method="bilinear").numpy()
    assert upsampled.shape == expected.shape
    # Away from the border (where resize clamps and the deconvolution sees
    # zeros) the two agree.
    m = 2 * factor
    np.testing.assert_allclose(upsampled[:, m:-m, m:-m], expected[:, m:-m, m:-m], atol=1e-5)


def test_kernel_size_of_odd_strides_is_one_less():
    assert [upsampling_kernel_size(s) for s in (1, 2, 3, 4, 5)] == [1, 4, 5, 8, 9]
    with pytest.raises(ValueError, match="stride must be a positive int; got stride=0"):
        upsampling_kernel_size(0)


def test_kernel_is_the_fcn_reference_kernel():
    # surgery.upsample_filt(4): outer product of [0.25, 0.75, 0.75, 0.25].
    k = bilinear_kernel(4, 2)
    row = np.array([0.25, 0.75, 0.75, 0.25])
    np.testing.assert_allclose(k[:, :, 0, 0], np.outer(row, row))
    assert np.all(k[:, :, 0, 1] == 0)
    odd = bilinear_kernel(3, 1)[:, :, 0, 0]
    np.testing.assert_allclose(odd, np.outer([0.5, 1, 0.5], [0.5, 1, 0.5]))


def test_mismatched_channels_raise():
    with pytest.raises(ValueError, match="channels"):
        BilinearUpsampling()((4, 4, 3, 5))
    config = BilinearUpsampling().get_config()
    assert isinstance(BilinearUpsampling.from_config(config), BilinearUpsampling)
