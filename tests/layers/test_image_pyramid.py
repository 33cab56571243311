import keras
import numpy as np
import pytest

from keras_segattn.layers.image_pyramid import ImagePyramid
from keras_segattn.testing import run_layer_test

BINOMIAL = np.array([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0


def _reduce_axis(x, axis):
    """Textbook REDUCE along one axis: edge-symmetric blur, keep samples 0, 2, ..."""
    n = x.shape[axis]
    out = np.zeros_like(x, dtype=np.float64)
    for i in range(n):
        for m in range(-2, 3):
            j = i + m
            j = -j - 1 if j < 0 else (2 * n - 1 - j if j >= n else j)  # d c b a | a b c d
            index = [slice(None)] * x.ndim
            index[axis] = i
            source = [slice(None)] * x.ndim
            source[axis] = j
            out[tuple(index)] += BINOMIAL[m + 2] * x[tuple(source)]
    keep = [slice(None)] * x.ndim
    keep[axis] = slice(None, None, 2)
    return out[tuple(keep)]


def _expand_axis(coarse, size, axis):
    """Textbook EXPAND: zero insertion, then 2 * the kernel; coarse edges repeated."""
    n = coarse.shape[axis]
    shape = list(coarse.shape)
    shape[axis] = size
    out = np.zeros(shape)
    for j in range(size):
        for m in range(-2, 3):
            if (j - m) % 2:
                continue  # a zero of the zero insertion
            i = min(max((j - m) // 2, 0), n - 1)
            index = [slice(None)] * coarse.ndim
            index[axis] = j
            source = [slice(None)] * coarse.ndim
            source[axis] = i
            out[tuple(index)] += 2 * BINOMIAL[m + 2] * coarse[tuple(source)]
    return out


def _lcn(x, size):
    """Local contrast normalisation, 2-D window, weights renormalised inside the image."""
    offsets = np.arange(size) - (size - 1) / 2
    g = np.exp(-0.5 * (offsets / (size / 4)) ** 2)
    window = np.outer(g, g) / g.sum() ** 2
    half = size // 2
    h, w = x.shape[1:3]

    def local_mean(v):
        total = np.zeros_like(v)
        weight = np.zeros((1, h, w, 1))
        padded = np.pad(v, ((0, 0), (half, half), (half, half), (0, 0)))
        inside = np.pad(np.ones((1, h, w, 1)), ((0, 0), (half, half), (half, half), (0, 0)))
        for di in range(size):
            for dj in range(size):
                total += window[di, dj] * padded[:, di : di + h, dj : dj + w]
                weight += window[di, dj] * inside[:, di : di + h, dj : dj + w]
        return total / weight

    centred = x - local_mean(x)
    std = np.sqrt(local_mean(centred**2) + 1e-6)
    return centred / np.maximum(std, std.mean(axis=(1, 2), keepdims=True))


def pyramid_reference(images, levels=3, kind="laplacian", lcn_size=15):
    gaussian = [images.astype(np.float64)]
    for _ in range(levels - 1):
        gaussian.append(_reduce_axis(_reduce_axis(gaussian[-1], 1), 2))
    if kind == "gaussian":
        pyramid = gaussian
    else:
        pyramid = []
        for fine, coarse in zip(gaussian, gaussian[1:]):
            expanded = _expand_axis(_expand_axis(coarse, fine.shape[1], 1), fine.shape[2], 2)
            pyramid.append(fine - expanded)
        pyramid.append(gaussian[-1])
    if lcn_size is not None:
        pyramid = [_lcn(level, lcn_size) for level in pyramid]
    return pyramid


def test_reference_expand_of_a_constant_is_the_constant():
    # A sanity check of the reference itself: the kernel's even and odd taps
    # each sum to 1/2, so EXPAND (with repeated edges) keeps a constant.
    coarse = np.full((1, 4, 3, 1), 7.0)
    expanded = _expand_axis(_expand_axis(coarse, 7, 1), 6, 2)
    np.testing.assert_allclose(expanded, 7.0)


@pytest.mark.parametrize("kind", ["laplacian", "gaussian"])
@pytest.mark.parametrize("lcn_size", [None, 5])
@pytest.mark.parametrize("shape", [(2, 13, 21, 3), (3, 8, 11, 1), (2, 4, 5, 2)])
def test_matches_numpy_reference(kind, lcn_size, shape, rng):
    images = rng.uniform(0, 255, size=shape).astype("float32")
    layer = ImagePyramid(levels=3, kind=kind, lcn_size=lcn_size)
    outputs = layer(images)
    expected = pyramid_reference(images, 3, kind, lcn_size)
    assert len(outputs) == 3
    for k, (out, ref) in enumerate(zip(outputs, expected)):
        h, w = -(-shape[1] // 2**k), -(-shape[2] // 2**k)
        assert out.shape == (shape[0], h, w, shape[3])
        scale = 1.0 if lcn_size else 255.0
        np.testing.assert_allclose(np.asarray(out), ref, atol=1e-5 * scale, rtol=0)


def test_default_lcn_15_and_levels(rng):
    images = rng.uniform(0, 1, size=(2, 19, 17, 3)).astype("float32")
    for levels in (1, 2, 4):
        outputs = ImagePyramid(levels=levels)(images)
        expected = pyramid_reference(images, levels, "laplacian", 15)
        assert len(outputs) == levels
        for out, ref in zip(outputs, expected):
            np.testing.assert_allclose(np.asarray(out), ref, atol=1e-5)


def test_laplacian_bands_reconstruct_the_image(rng):
    images = rng.uniform(0, 1, size=(2, 15, 22, 3)).astype("float32")
    bands = [np.asarray(b, np.float64) for b in ImagePyramid(4, lcn_size=None)(images)]
    image = bands[-1]
    for band in bands[-2::-1]:
        image = band + _expand_axis(_expand_axis(image, band.shape[1], 1), band.shape[2], 2)
    np.testing.assert_allclose(image, images, atol=1e-5)


def test_flat_image_normalises_to_zeros_with_finite_values():
    outputs = ImagePyramid()(np.full((1, 9, 9, 3), 128.0, "float32"))
    for out in outputs:
        assert np.all(np.isfinite(out)) and np.allclose(out, 0.0, atol=1e-4)


@pytest.mark.parametrize("kwargs", [{}, {"kind": "gaussian", "lcn_size": None, "levels": 2}])
def test_shared_layer_checks(kwargs, rng):
    images = rng.uniform(0, 255, size=(2, 13, 10, 3)).astype("float32")
    levels = kwargs.get("levels", 3)
    shapes = [(2, -(-13 // 2**k), -(-10 // 2**k), 3) for k in range(levels)]
    run_layer_test(
        ImagePyramid, kwargs, images, expected_output_shape=shapes, atol=1e-5, tflite_atol=1e-4
    )


def test_symbolic_shapes_with_unknown_size():
    outputs = ImagePyramid(levels=3)(keras.Input((None, 33, 3)))
    assert [tuple(o.shape) for o in outputs] == [
        (None, None, 33, 3),
        (None, None, 17, 3),
        (None, None, 9, 3),
    ]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"levels": 0}, "levels"),
        ({"levels": 2.0}, "levels"),
        ({"kind": "steerable"}, "kind"),
        ({"lcn_size": 4}, "lcn_size"),
        ({"lcn_size": 1}, "lcn_size"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ImagePyramid(**kwargs)


def test_bad_inputs():
    with pytest.raises(ValueError, match=r"height 3 is smaller than 2 \*\* \(levels - 1\) = 4"):
        ImagePyramid(levels=3)(np.zeros((1, 3, 9, 3), "float32"))
    with pytest.raises(ValueError, match="width 1 is smaller"):
        ImagePyramid(levels=2)(np.zeros((1, 8, 1, 3), "float32"))
    with pytest.raises(ValueError, match="rank 4"):
        ImagePyramid()(np.zeros((8, 8, 3), "float32"))
    with pytest.raises(ValueError, match="channel axis must be known"):
        ImagePyramid()(keras.Input((None, None, None)))


def test_a_full_integer_tflite_file_normalises_a_low_contrast_image(rng):
    # Local contrast normalisation divides by the local deviation. Calibrated
    # on contrasted images, int8 rounds a low-contrast image's deviation to
    # zero: the file converted and then failed at run time ("DIV ... !=
    # zero_point"). The pyramid stays in float inside an int8 file.
    from keras_segattn.export import convert_to_tflite, run_tflite

    inputs = keras.Input((32, 32, 3), batch_size=1, name="images")
    levels = ImagePyramid(levels=2, lcn_size=5)(inputs)
    model = keras.Model(inputs, keras.layers.Concatenate()([levels[0], levels[0]]))
    calibration = [rng.uniform(0, 255, (1, 32, 32, 3)).astype("float32") for _ in range(8)]
    flatbuffer = convert_to_tflite(model, quantization="int8", representative_images=calibration)
    image = (128 + rng.uniform(-0.1, 0.1, (1, 32, 32, 3))).astype("float32")
    (output,) = run_tflite(flatbuffer, image).values()
    expected = np.asarray(model(image))
    assert np.all(np.isfinite(output))
    np.testing.assert_allclose(output, expected, atol=0.05 * np.abs(expected).max())
