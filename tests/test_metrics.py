import numpy as np
import pytest

from keras_segattn.metrics import (
    MeanClassAccuracy,
    MeanIoU,
    PixelAccuracy,
    scores_from_confusion_matrix,
)
from tests.references import confusion_matrix


def numpy_scores(cm):
    tp = np.diag(cm).astype(float)
    gt, pred = cm.sum(1), cm.sum(0)
    union = gt + pred - tp
    return {
        "global_accuracy": tp.sum() / cm.sum(),
        "mean_class_accuracy": np.mean(tp[gt > 0] / gt[gt > 0]),
        "mean_iou": np.mean(tp[union > 0] / union[union > 0]),
    }


@pytest.mark.parametrize("ignore_class", [None, 0, 4, 255])
def test_streaming_metrics_match_numpy_confusion_matrix(rng, ignore_class):
    num_classes = 4
    metrics = [m(num_classes, ignore_class) for m in (PixelAccuracy, MeanClassAccuracy, MeanIoU)]
    all_labels, all_predictions = [], []
    for _ in range(3):
        labels = rng.integers(0, num_classes, size=(2, 6, 5))
        labels[labels == 2] = 1  # class 2 never in the truth...
        if ignore_class is not None:
            labels[rng.random(labels.shape) < 0.25] = ignore_class
        scores = rng.normal(size=(2, 6, 5, num_classes)).astype("float32")
        scores[..., 3] -= 10  # ...and class 3 almost never predicted
        for metric in metrics:
            metric.update_state(labels, scores)
        all_labels.append(labels)
        all_predictions.append(scores.argmax(-1))
    cm = confusion_matrix(
        np.concatenate(all_labels), np.concatenate(all_predictions), num_classes, ignore_class
    )
    expected = numpy_scores(cm)
    np.testing.assert_allclose(metrics[0].result(), expected["global_accuracy"], rtol=1e-6)
    np.testing.assert_allclose(metrics[1].result(), expected["mean_class_accuracy"], rtol=1e-6)
    np.testing.assert_allclose(metrics[2].result(), expected["mean_iou"], rtol=1e-6)
    np.testing.assert_array_equal(metrics[2].confusion.numpy(), cm)
    per_class = metrics[2].per_class_iou()
    tp = np.diag(cm)
    union = cm.sum(0) + cm.sum(1) - tp
    np.testing.assert_allclose(per_class[union > 0], (tp / np.maximum(union, 1))[union > 0])


def test_class_ids_are_accepted_as_predictions_and_reset_works():
    metric = MeanIoU(3)
    labels = np.array([[[0, 1], [2, 2]]])
    metric.update_state(labels, labels)
    assert float(metric.result()) == 1.0
    metric.reset_state()
    metric.update_state(labels, np.zeros_like(labels))
    np.testing.assert_allclose(float(metric.result()), (1 / 4) / 3)


def test_scores_handle_absent_classes():
    cm = np.array([[5, 0, 0], [1, 3, 0], [0, 0, 0]])
    scores = scores_from_confusion_matrix(cm)
    assert np.isnan(scores["per_class_iou"][2])
    np.testing.assert_allclose(scores["mean_iou"], np.mean([5 / 6, 3 / 4]))


def test_config_round_trip():
    metric = MeanIoU(11, ignore_class=11)
    clone = MeanIoU.from_config(metric.get_config())
    assert clone.num_classes == 11 and clone.ignore_class == 11
