import numpy as np
import pytest

from keras_segattn.layers import CropToReference, ImagePreprocessing, PadToMultiple
from keras_segattn.layers.image_preprocessing import CAFFE_BGR_MEAN
from keras_segattn.testing import run_layer_test


@pytest.mark.parametrize("mode", ["caffe", "unit", "symmetric"])
def test_image_preprocessing(mode, rng):
    images = rng.integers(0, 256, size=(2, 5, 7, 3)).astype("float32")
    out = np.asarray(run_layer_test(ImagePreprocessing, {"mode": mode}, images, fit=False))
    expected = {
        "caffe": images[..., ::-1] - np.array(CAFFE_BGR_MEAN),
        "unit": images / 255.0,
        "symmetric": images / 127.5 - 1.0,
    }[mode]
    np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-4)


def test_image_preprocessing_errors():
    with pytest.raises(ValueError, match="mode"):
        ImagePreprocessing("imagenet")
    with pytest.raises(ValueError, match="channels=3"):
        ImagePreprocessing("caffe", channels=1)
    with pytest.raises(ValueError, match="smaller than the minimum 8"):
        ImagePreprocessing(min_size=8)(np.zeros((1, 7, 9, 3), "float32"))
    with pytest.raises(ValueError, match="expected 1 channels"):
        ImagePreprocessing("unit", channels=1)(np.zeros((1, 7, 9, 3), "float32"))


@pytest.mark.parametrize("shape", [(2, 5, 7, 3), (1, 8, 16, 2), (3, 1, 9, 1)])
def test_pad_to_multiple_then_crop_back(shape, rng):
    x = rng.normal(size=shape).astype("float32")
    padded = np.asarray(run_layer_test(PadToMultiple, {"multiple": 8}, x))
    assert padded.shape[1] % 8 == 0 and padded.shape[2] % 8 == 0
    assert padded.shape[1] - shape[1] < 8 and padded.shape[2] - shape[2] < 8
    np.testing.assert_array_equal(padded[:, : shape[1], : shape[2]], x)
    assert np.all(padded[:, shape[1] :] == 0) and np.all(padded[:, :, shape[2] :] == 0)
    cropped = run_layer_test(CropToReference, {}, [padded, x])
    np.testing.assert_array_equal(cropped, x)
