import numpy as np
import pytest

from keras_segattn.losses import SegmentationCrossEntropy


def numpy_loss(labels, logits, ignore_class=None, class_weights=None):
    logits = logits - logits.max(-1, keepdims=True)
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    per_image = []
    for y, lp in zip(labels, log_probs):
        valid = np.ones_like(y, bool) if ignore_class is None else y != ignore_class
        safe = np.where(valid, y, 0)
        nll = -np.take_along_axis(lp, safe[..., None], -1)[..., 0]
        w = valid.astype(float)
        if class_weights is not None:
            w = w * np.asarray(class_weights)[safe]
        per_image.append((nll * w).sum() / max(valid.sum(), 1))
    return np.mean(per_image)


@pytest.mark.parametrize(
    "ignore_class, class_weights",
    [
        (None, None),
        (255, None),
        (3, [0.5, 2.0, 1.0]),
        (255, [1.0, 0.0, 3.0]),
    ],
)
def test_matches_numpy_reference(rng, ignore_class, class_weights):
    logits = rng.normal(size=(3, 5, 7, 3)).astype("float32")
    labels = rng.integers(0, 3, size=(3, 5, 7))
    if ignore_class is not None:
        labels[rng.random(labels.shape) < 0.3] = ignore_class
        labels[2] = ignore_class  # an image with no labelled pixel counts 0
    loss = SegmentationCrossEntropy(ignore_class=ignore_class, class_weights=class_weights)
    expected = numpy_loss(labels, logits, ignore_class, class_weights)
    np.testing.assert_allclose(float(loss(labels, logits)), expected, rtol=1e-5)


def test_ignored_pixels_carry_no_loss(rng):
    logits = rng.normal(size=(1, 4, 4, 2)).astype("float32")
    labels = np.zeros((1, 4, 4), "int32")
    labels[0, :2] = 11
    loss = SegmentationCrossEntropy(ignore_class=11)
    changed = logits.copy()
    changed[0, :2] += 100.0
    np.testing.assert_allclose(float(loss(labels, logits)), float(loss(labels, changed)))


def test_bad_class_weights_raise(rng):
    with pytest.raises(ValueError, match="class_weights has 2 entries"):
        SegmentationCrossEntropy(class_weights=[1, 1])(
            np.zeros((1, 2, 2)), rng.normal(size=(1, 2, 2, 3)).astype("float32")
        )
    with pytest.raises(ValueError, match=">= 0"):
        SegmentationCrossEntropy(class_weights=[1, -1])


def test_config_round_trip():
    loss = SegmentationCrossEntropy(ignore_class=11, class_weights=[1, 2])
    clone = SegmentationCrossEntropy.from_config(loss.get_config())
    assert clone.get_config() == loss.get_config()
