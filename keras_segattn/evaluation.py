"""Evaluating a segmentation model on a dataset at the labels' resolution."""

import numpy as np
import tensorflow as tf

from keras_segattn.metrics import confusion_matrix_update, scores_from_confusion_matrix


def predict_scores(model, images, image_size=None):
    """Per-pixel scores at the size of `images`.

    With `image_size`, the images are resized to it for the network (the
    size it was trained at) and the scores resized back bilinearly.
    """
    height, width = tf.shape(images)[1], tf.shape(images)[2]
    inputs = images
    if image_size is not None:
        inputs = tf.image.resize(tf.cast(images, tf.float32), image_size)
    scores = model(inputs, training=False)
    if image_size is not None:
        scores = tf.image.resize(scores, tf.stack([height, width]), method="bilinear")
    return scores


def evaluate_segmentation(
    model, dataset, num_classes, ignore_class=None, image_size=None, batch_size=4
):
    """Global accuracy, class-average accuracy and IoU over a dict dataset.

    Args:
        model: a semantic segmentation `keras.Model`.
        dataset: `tf.data.Dataset` of unbatched dicts with `images` and
            `segmentation_masks` (any sizes).
        num_classes: int.
        ignore_class: int or `None`. Pixels with this label are not scored.
        image_size: `(height, width)` or `None`. The size the network sees;
            scores are compared with the labels at their own resolution.
        batch_size: int. Only images of the same size share a batch, so no
            padding ever reaches the network and results do not depend on
            the order of the dataset.

    Returns:
        The dict of `scores_from_confusion_matrix` plus `"confusion_matrix"`
        and `"num_images"`.
    """
    pairs = dataset.map(lambda e: (e["images"], tf.cast(e["segmentation_masks"], tf.int32)))
    batches = pairs.group_by_window(
        key_func=lambda image, _: tf.cast(
            tf.shape(image)[0] * 65536 + tf.shape(image)[1], tf.int64
        ),
        reduce_func=lambda _, window: window.batch(batch_size),
        window_size=batch_size,
    )

    @tf.function(reduce_retracing=True)
    def step(images, masks):
        scores = predict_scores(model, images, image_size)
        return confusion_matrix_update(masks, scores, num_classes, ignore_class)

    confusion = np.zeros((num_classes, num_classes), np.float64)
    count = 0
    for images, masks in batches:
        confusion += step(images, masks).numpy()
        count += int(images.shape[0])
    report = scores_from_confusion_matrix(confusion)
    report.update({"confusion_matrix": confusion, "num_images": count})
    return report


def format_report(report, class_names=None):
    """A short human-readable table of an `evaluate_segmentation` report."""
    lines = [
        f"images: {report['num_images']}",
        f"global accuracy:     {report['global_accuracy']:.4f}",
        f"class-avg accuracy:  {report['mean_class_accuracy']:.4f}",
        f"mean IoU:            {report['mean_iou']:.4f}",
        "per-class IoU:",
    ]
    for i, iou in enumerate(report["per_class_iou"]):
        name = class_names[i] if class_names else str(i)
        lines.append(f"  {name:<14} {iou:.4f}" if np.isfinite(iou) else f"  {name:<14} -")
    return "\n".join(lines)
