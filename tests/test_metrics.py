import subprocess
import sys

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
    np.testing.assert_array_equal(metrics[2].confusion, cm)
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


def test_counts_are_exact_integers_past_float32_and_the_low_word():
    # float32 stops counting single pixels at 2**24; the split int32 words
    # carry past 2**16 into the high word and stay exact.
    metric = PixelAccuracy(2)
    assert {v.dtype for v in metric.variables} == {"int32"}  # TPUs have no float64
    metric.counts_low.assign([[2**16 - 3, 0], [0, 5]])
    metric.counts_high.assign([[2**9 - 1, 0], [0, 0]])  # count 2**25 - 3 for (0, 0)
    labels = np.zeros((1, 70, 1000), "int32")  # 70,000 pixels: more than 2**16
    labels[0, 0, :7] = 1
    metric.update_state(labels, labels)
    expected = np.array([[2**25 - 3 + 70_000 - 7, 0], [0, 5 + 7]])
    np.testing.assert_array_equal(metric.confusion, expected)
    assert np.all(metric.counts_low.numpy() < 2**16) and np.all(metric.counts_low.numpy() >= 0)
    assert float(metric.result()) == 1.0
    metric.reset_state()
    np.testing.assert_array_equal(metric.confusion, 0)


def test_scores_handle_absent_classes():
    cm = np.array([[5, 0, 0], [1, 3, 0], [0, 0, 0]])
    scores = scores_from_confusion_matrix(cm)
    assert np.isnan(scores["per_class_iou"][2])
    np.testing.assert_allclose(scores["mean_iou"], np.mean([5 / 6, 3 / 4]))


def test_config_round_trip():
    metric = MeanIoU(11, ignore_class=11)
    clone = MeanIoU.from_config(metric.get_config())
    assert clone.num_classes == 11 and clone.ignore_class == 11


TWO_REPLICAS = """
import numpy as np, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from keras_segattn.metrics import MeanIoU
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
with strategy.scope():
    metric = MeanIoU(3)
rng = np.random.default_rng(0)
# 2 x 300 x 300 = 180,000 pixels a replica a step: every step carries past 2**16.
labels = rng.integers(0, 3, (6, 2, 300, 300)).astype("int32")
predictions = np.where(rng.random(labels.shape) < 0.8, labels, (labels + 1) % 3).astype("int32")
step = tf.function(lambda y, p: strategy.run(metric.update_state, args=(y, p)))
for y, p in zip(labels, predictions):
    data = tf.data.Dataset.from_tensor_slices((y, p)).batch(2)
    batch = next(iter(strategy.experimental_distribute_dataset(data)))
    step(*batch)
expected = np.zeros((3, 3), np.int64)
np.add.at(expected, (labels.ravel(), predictions.ravel()), 1)
assert (metric.confusion == expected).all(), (metric.confusion, expected)
print("ok", int(expected.sum()))
"""


def test_counts_stay_exact_over_two_replicas_past_the_low_word():
    # Logical devices must be set before TensorFlow starts: a fresh process.
    result = subprocess.run(
        [sys.executable, "-c", TWO_REPLICAS], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr[-3000:]


@pytest.mark.parametrize("ignore_class", [None, 1])
def test_out_of_range_labels_a_one_pixel_class_and_an_absent_class(ignore_class):
    # Truth: class 0 has one pixel, class 3 is in neither truth nor
    # prediction, and 4, 7 and -1 are not class ids (nor the ignore class):
    # they are not counted, and neither is the ignore class.
    labels = np.array([[[0, 1, 1, 2], [2, 4, 7, -1]]])
    predictions = np.array([[[0, 1, 2, 2], [2, 0, 1, 1]]])
    counted = (labels >= 0) & (labels < 4) & (labels != ignore_class)
    cm = np.zeros((4, 4), np.int64)
    np.add.at(cm, (labels[counted], predictions[counted]), 1)
    if ignore_class is None:  # the hand count, for the reference itself
        np.testing.assert_array_equal(cm, [[1, 0, 0, 0], [0, 1, 1, 0], [0, 0, 2, 0], [0] * 4])
    expected = numpy_scores(cm)
    for metric, key in [
        (PixelAccuracy(4, ignore_class), "global_accuracy"),
        (MeanClassAccuracy(4, ignore_class), "mean_class_accuracy"),
        (MeanIoU(4, ignore_class), "mean_iou"),
    ]:
        metric.update_state(labels, predictions)
        np.testing.assert_array_equal(metric.confusion, cm)
        np.testing.assert_allclose(float(metric.result()), expected[key], rtol=1e-6, err_msg=key)
    if ignore_class is None:
        assert expected["mean_class_accuracy"] == pytest.approx((1 + 1 / 2 + 1) / 3)
        assert expected["mean_iou"] == pytest.approx((1 + 1 / 2 + 2 / 3) / 3)
