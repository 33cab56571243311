import numpy as np
import pytest

from keras_segattn.postprocess import (
    SEGMENTATION_DEFAULTS,
    dense_crf,
    refine_batch,
    superpixel_vote,
)

NUM_CLASSES = 3


def softmax(logits):
    exps = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return exps / exps.sum(axis=-1, keepdims=True)


def two_region_scene(rng, height=48, width=64, correct=0.7):
    """Two flat colours with mild pixel noise, and noisy probabilities.

    The noisy argmax is right on about `correct` of the pixels, spread at
    random, so only spatial/colour context can recover the truth.
    """
    truth = np.zeros((height, width), np.int64)
    truth[:, width // 2 :] = 1
    colours = np.array([[200, 60, 40], [40, 90, 200]], np.float64)
    image = colours[truth] + rng.normal(0.0, 3.0, (height, width, 3))
    image = np.clip(image, 0, 255).astype(np.uint8)
    wrong = truth + rng.integers(1, NUM_CLASSES, truth.shape)
    noisy = np.where(rng.random(truth.shape) < correct, truth, wrong % NUM_CLASSES)
    logits = 1.5 * np.eye(NUM_CLASSES)[noisy] + 0.3 * rng.normal(size=noisy.shape + (3,))
    probabilities = softmax(logits).astype(np.float32)
    return image, probabilities, truth


def accuracy(class_map, truth):
    return float(np.mean(class_map == truth))


@pytest.fixture
def scene(rng):
    image, probabilities, truth = two_region_scene(rng)
    baseline = accuracy(probabilities.argmax(-1), truth)
    assert 0.6 < baseline < 0.8  # the noise is as intended
    return image, probabilities, truth


# slic's default n_segments=400 is sized for 360x480 images: on 48x64 it
# leaves about 8 pixels per segment, too few to outvote 30% noise. 12
# segments give a similar ~250 pixels each.
@pytest.mark.parametrize("method, options", [("felzenszwalb", {}), ("slic", {"n_segments": 12})])
def test_superpixel_vote_recovers_regions(scene, method, options):
    image, probabilities, truth = scene
    class_map, segments = superpixel_vote(image, probabilities, method=method, **options)
    assert class_map.shape == segments.shape == truth.shape
    assert class_map.dtype == segments.dtype == np.int32
    assert accuracy(class_map, truth) > 0.95
    for label in np.unique(segments):
        assert len(np.unique(class_map[segments == label])) == 1


def test_superpixel_vote_is_argmax_of_segment_mean(rng):
    image, probabilities, _ = two_region_scene(rng, 16, 20)
    class_map, segments = superpixel_vote(image, probabilities, scale=10, min_size=5)
    for label in np.unique(segments):
        inside = segments == label
        assert class_map[inside][0] == np.argmax(probabilities[inside].mean(axis=0))


def test_superpixel_kwargs_override_defaults(scene):
    image, probabilities, _ = scene
    _, coarse = superpixel_vote(image, probabilities, method="slic", n_segments=4)
    _, fine = superpixel_vote(image, probabilities, method="slic", n_segments=200)
    assert len(np.unique(coarse)) < len(np.unique(fine))
    assert SEGMENTATION_DEFAULTS["felzenszwalb"]["scale"] == 40  # not changed by the override


def test_felzenszwalb_defaults_on_street_scene_size():
    data = pytest.importorskip("skimage.data")
    transform = pytest.importorskip("skimage.transform")
    image = (transform.resize(data.coffee(), (360, 480)) * 255).astype(np.uint8)
    probabilities = np.full((360, 480, 2), 0.5, np.float32)
    _, segments = superpixel_vote(image, probabilities)
    assert 50 < len(np.unique(segments)) < 1000


def test_dense_crf_recovers_regions(scene):
    image, probabilities, truth = scene
    class_map, refined = dense_crf(image, probabilities)
    assert class_map.shape == truth.shape and class_map.dtype == np.int32
    assert refined.shape == probabilities.shape and refined.dtype == np.float32
    np.testing.assert_allclose(refined.sum(-1), 1.0, atol=1e-4)
    np.testing.assert_array_equal(class_map, refined.argmax(-1))
    assert accuracy(class_map, truth) > 0.95


def test_dense_crf_accepts_non_contiguous_inputs(scene):
    image, probabilities, _ = scene
    expected, _ = dense_crf(image, probabilities)
    # Fortran-ordered copies with the same values: pydensecrf itself needs
    # C order, so dense_crf must convert.
    class_map, _ = dense_crf(
        np.asfortranarray(image), np.asfortranarray(probabilities.astype(np.float64))
    )
    np.testing.assert_array_equal(class_map, expected)


def test_dense_crf_zero_iterations_keeps_argmax(scene):
    image, probabilities, _ = scene
    class_map, _ = dense_crf(image, probabilities, iterations=0)
    np.testing.assert_array_equal(class_map, probabilities.argmax(-1))


@pytest.mark.parametrize("method", ["superpixels", "crf", None])
def test_refine_batch_matches_per_image(rng, method):
    scenes = [two_region_scene(rng, 24, 32) for _ in range(3)]
    images = np.stack([s[0] for s in scenes])
    probabilities = np.stack([s[1] for s in scenes])
    kwargs = {"bilateral_srgb": 10} if method == "crf" else {}
    maps = refine_batch(images, probabilities, method=method, **kwargs)
    assert maps.shape == (3, 24, 32) and maps.dtype == np.int32
    for i in range(3):
        if method == "superpixels":
            expected, _ = superpixel_vote(images[i], probabilities[i])
        elif method == "crf":
            expected, _ = dense_crf(images[i], probabilities[i], bilateral_srgb=10)
        else:
            expected = probabilities[i].argmax(-1)
        np.testing.assert_array_equal(maps[i], expected)


def test_refine_batch_slic(rng):
    image, probabilities, _ = two_region_scene(rng, 24, 32)
    maps = refine_batch(image[None], probabilities[None], segmentation_method="slic")
    expected, _ = superpixel_vote(image, probabilities, method="slic")
    np.testing.assert_array_equal(maps[0], expected)


@pytest.mark.parametrize("refine", [superpixel_vote, dense_crf])
@pytest.mark.parametrize(
    "image_shape, image_dtype, prob_shape, prob_dtype, match",
    [
        ((8, 8), np.uint8, (8, 8, 2), np.float32, "image must be an"),
        ((8, 8, 4), np.uint8, (8, 8, 2), np.float32, "image must be an"),
        ((8, 8, 3), np.float32, (8, 8, 2), np.float32, "image must be uint8"),
        ((8, 8, 3), np.uint8, (8, 2), np.float32, r"probabilities must be \(H, W"),
        ((8, 8, 3), np.uint8, (8, 8, 2), np.int32, "must be a float"),
        ((8, 8, 3), np.uint8, (8, 9, 2), np.float32, "at the size of image"),
    ],
)
def test_shape_and_dtype_errors(refine, image_shape, image_dtype, prob_shape, prob_dtype, match):
    image = np.zeros(image_shape, image_dtype)
    probabilities = np.full(prob_shape, 1.0 / prob_shape[-1]).astype(prob_dtype)
    with pytest.raises(ValueError, match=match):
        refine(image, probabilities)


@pytest.mark.parametrize("refine", [superpixel_vote, dense_crf])
def test_logits_are_rejected_with_softmax_hint(refine, rng):
    image = np.zeros((8, 8, 3), np.uint8)
    logits = rng.normal(size=(8, 8, 2)).astype(np.float32)
    with pytest.raises(ValueError, match="sum to 1.*softmax"):
        refine(image, logits)
    with pytest.raises(ValueError, match="NaN"):
        refine(image, np.full((8, 8, 2), np.nan, np.float32))


def test_argument_errors(scene):
    image, probabilities, _ = scene
    with pytest.raises(ValueError, match="method must be one of"):
        superpixel_vote(image, probabilities, method="quickshift")
    with pytest.raises(ValueError, match="iterations must be"):
        dense_crf(image, probabilities, iterations=2.5)
    with pytest.raises(ValueError, match="bilateral_srgb must be a positive number"):
        dense_crf(image, probabilities, bilateral_srgb=0)
    with pytest.raises(ValueError, match="method must be one of"):
        refine_batch(image[None], probabilities[None], method="cfr")
    with pytest.raises(ValueError, match="same B"):
        refine_batch(image[None], np.stack([probabilities] * 2))
    with pytest.raises(ValueError, match="takes no options"):
        refine_batch(image[None], probabilities[None], method=None, scale=3)
