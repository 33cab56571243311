"""Streaming metrics for dense labelling, all from one confusion matrix.

Ignored pixels are dropped before counting. Class-averaged figures follow
the FCN/SegNet evaluation code: a class absent from the ground truth (and,
for IoU, from the predictions) is left out of the mean rather than counted
as 0 or 1.

Counts are exact integers in int32, which every accelerator has (TPUs have
no float64, and float32 stops counting single pixels at 2**24, about 100
CamVid frames of one class). A count of one batch is at most the batch's
pixel count, under 2**31 for any batch that fits in memory. The running
matrix is split in two int32 variables, `count = high * 2**16 + low` with
`low` in `[0, 2**16)` after every update, so one cell holds up to
2**31 * 2**16 = 1.4e14 pixels: 70 million 2-megapixel images. Under a
`tf.distribute` strategy each replica keeps its own words (Keras >= 3.10
makes metric variables synchronised on read) and a read sums them, exact up
to 2**15 replicas, where the summed `low` parts would reach 2**31.
"""

import keras
import numpy as np
import tensorflow as tf

from keras_segattn.losses import flatten_labels


def predicted_labels(y_pred):
    """Class ids from `(B, H, W, C)` scores, or `(B, H, W)` ids unchanged."""
    y_pred = tf.convert_to_tensor(y_pred)
    if y_pred.shape.rank == 4 and y_pred.shape[-1] != 1:
        return tf.argmax(y_pred, axis=-1, output_type=tf.int32)
    return flatten_labels(y_pred)


def confusion_matrix_update(y_true, y_pred, num_classes, ignore_class=None):
    """A `(num_classes, num_classes)` int32 count matrix of one batch, rows = truth."""
    y_true = tf.reshape(flatten_labels(y_true), [-1])
    y_pred = tf.reshape(predicted_labels(y_pred), [-1])
    valid = (y_true >= 0) & (y_true < num_classes)
    if ignore_class is not None:
        valid &= tf.not_equal(y_true, ignore_class)
    index = tf.where(valid, y_true * num_classes + y_pred, 0)
    counts = tf.math.unsorted_segment_sum(
        tf.cast(valid, tf.int32), index, num_classes * num_classes
    )
    return tf.reshape(counts, [num_classes, num_classes])


def scores_from_confusion_matrix(confusion_matrix):
    """Global accuracy, mean class accuracy, mean IoU and per-class IoU.

    Works on NumPy arrays of counts; absent classes give NaN per class and
    are left out of the means.
    """
    cm = np.asarray(confusion_matrix, dtype=np.float64)
    true_positive = np.diag(cm)
    gt_count = cm.sum(axis=1)
    union = gt_count + cm.sum(axis=0) - true_positive
    with np.errstate(divide="ignore", invalid="ignore"):
        class_accuracy = np.where(gt_count > 0, true_positive / gt_count, np.nan)
        iou = np.where(union > 0, true_positive / union, np.nan)
    total = cm.sum()
    return {
        "global_accuracy": float(true_positive.sum() / total) if total else float("nan"),
        "mean_class_accuracy": float(np.nanmean(class_accuracy))
        if np.any(gt_count > 0)
        else float("nan"),
        "mean_iou": float(np.nanmean(iou)) if np.any(union > 0) else float("nan"),
        "per_class_iou": iou,
        "per_class_accuracy": class_accuracy,
    }


_LOW_BASE = 2**16


class ConfusionMatrixMetric(keras.metrics.Metric):
    """Base class: accumulates the confusion matrix over batches.

    Args:
        num_classes: int. Number of classes.
        ignore_class: int or `None`. Label excluded from every count.
            Defaults to `None`.
        name: str. Metric name.

    `y_pred` may be scores `(B, H, W, C)` (the argmax is taken) or class ids.
    Labels outside `[0, num_classes)` other than `ignore_class` are not
    counted; the data pipelines reject them before they get here.
    """

    def __init__(self, num_classes, ignore_class=None, name=None, **kwargs):
        super().__init__(name=name, **kwargs)
        self.num_classes = int(num_classes)
        self.ignore_class = ignore_class
        shape = (self.num_classes, self.num_classes)
        # Exact counts: `high * _LOW_BASE + low` (see the module docstring).
        self.counts_low = self.add_variable(
            shape=shape, initializer="zeros", dtype="int32", name="confusion_low"
        )
        self.counts_high = self.add_variable(
            shape=shape, initializer="zeros", dtype="int32", name="confusion_high"
        )

    def update_state(self, y_true, y_pred, sample_weight=None):
        if sample_weight is not None:
            raise ValueError(f"{self.name} does not take sample_weight.")
        batch = confusion_matrix_update(y_true, y_pred, self.num_classes, self.ignore_class)
        # This replica's own words (the variables are synchronised on read).
        low = tf.convert_to_tensor(self.counts_low) + batch
        self.counts_low.assign_add(tf.math.floormod(low, _LOW_BASE) - self.counts_low)
        self.counts_high.assign_add(tf.math.floordiv(low, _LOW_BASE))

    def reset_state(self):
        for variable in (self.counts_low, self.counts_high):
            variable.assign(tf.zeros_like(variable))

    @property
    def confusion(self):
        """The running confusion matrix, exact, as an int64 NumPy array."""
        high = keras.ops.convert_to_numpy(self.counts_high).astype(np.int64)
        return high * _LOW_BASE + keras.ops.convert_to_numpy(self.counts_low)

    def _confusion_float32(self):
        # Inside the graph, for result(): ratios need no more than float32.
        high = tf.cast(self.counts_high, tf.float32)
        return high * float(_LOW_BASE) + tf.cast(self.counts_low, tf.float32)

    def scores(self):
        """All the figures of `scores_from_confusion_matrix`, as NumPy."""
        return scores_from_confusion_matrix(self.confusion)

    def get_config(self):
        config = super().get_config()
        config.update({"num_classes": self.num_classes, "ignore_class": self.ignore_class})
        return config


def _safe_divide(numerator, denominator):
    return tf.math.divide_no_nan(numerator, denominator)


@keras.saving.register_keras_serializable(package="keras_segattn")
class PixelAccuracy(ConfusionMatrixMetric):
    """Global pixel accuracy: correct labelled pixels / labelled pixels."""

    def __init__(self, num_classes, ignore_class=None, name="pixel_accuracy", **kwargs):
        super().__init__(num_classes, ignore_class, name=name, **kwargs)

    def result(self):
        confusion = self._confusion_float32()
        return _safe_divide(tf.linalg.trace(confusion), tf.reduce_sum(confusion))


def _mean_over_present(values, present):
    present = tf.cast(present, values.dtype)
    return _safe_divide(tf.reduce_sum(values * present), tf.reduce_sum(present))


@keras.saving.register_keras_serializable(package="keras_segattn")
class MeanClassAccuracy(ConfusionMatrixMetric):
    """Class-average accuracy: recall averaged over classes present in the truth."""

    def __init__(self, num_classes, ignore_class=None, name="mean_class_accuracy", **kwargs):
        super().__init__(num_classes, ignore_class, name=name, **kwargs)

    def result(self):
        confusion = self._confusion_float32()
        gt_count = tf.reduce_sum(confusion, axis=1)
        recall = _safe_divide(tf.linalg.diag_part(confusion), gt_count)
        return _mean_over_present(recall, gt_count > 0)


@keras.saving.register_keras_serializable(package="keras_segattn")
class MeanIoU(ConfusionMatrixMetric):
    """Mean intersection over union, over classes present in truth or prediction.

    `per_class_iou()` returns each class's IoU (NaN for absent classes).
    """

    def __init__(self, num_classes, ignore_class=None, name="mean_iou", **kwargs):
        super().__init__(num_classes, ignore_class, name=name, **kwargs)

    def result(self):
        confusion = self._confusion_float32()
        true_positive = tf.linalg.diag_part(confusion)
        union = tf.reduce_sum(confusion, 0) + tf.reduce_sum(confusion, 1) - true_positive
        return _mean_over_present(_safe_divide(true_positive, union), union > 0)

    def per_class_iou(self):
        return self.scores()["per_class_iou"]


def segmentation_metrics(num_classes, ignore_class=None):
    """The three streaming metrics of the semantic results tables."""
    return [
        PixelAccuracy(num_classes, ignore_class),
        MeanClassAccuracy(num_classes, ignore_class),
        MeanIoU(num_classes, ignore_class),
    ]
