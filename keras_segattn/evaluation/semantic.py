"""Evaluating a segmentation model on a dataset at the labels' resolution."""

import time

import numpy as np
import tensorflow as tf

from keras_segattn.core.kernels import in_tensorflow
from keras_segattn.evaluation.predictors import WholeImage, predict_scores
from keras_segattn.metrics import confusion_matrix_update, scores_from_confusion_matrix


def evaluate_segmentation(
    model,
    dataset,
    num_classes,
    ignore_class=None,
    image_size=None,
    batch_size=4,
    postprocess=None,
    postprocess_options=None,
    predictor=None,
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
        postprocess: `None`, `"superpixels"` or `"crf"`. Refine each
            image's class probabilities (at the labels' resolution) on the
            host with `keras_segattn.postprocess.refine_batch` before
            scoring. Defaults to `None`.
        postprocess_options: dict. Keyword arguments of `refine_batch`
            (the CRF kernels, the superpixel segmentation). Defaults to
            `None`.
        predictor: a function from a batch of images to their class
            probabilities at their size (`evaluation.proposals`:
            `ProposalWise`, `EnsembleSegmenter`), run on the host instead
            of `model` on the whole image; `postprocess` refines its
            probabilities. Defaults to `None`.

    Returns:
        The dict of `scores_from_confusion_matrix` plus `"confusion_matrix"`,
        `"num_images"` and `"seconds_per_image"` (network, and
        post-processing when asked for, on the host running it).
    """
    from keras_segattn.postprocess import METHODS, refine_batch

    if postprocess not in METHODS:
        raise ValueError(f"postprocess must be one of {METHODS}; got postprocess={postprocess!r}.")
    pairs = dataset.map(lambda e: (e["images"], tf.cast(e["segmentation_masks"], tf.int32)))
    batches = pairs.group_by_window(
        key_func=lambda image, _: tf.cast(
            tf.shape(image)[0] * 65536 + tf.shape(image)[1], tf.int64
        ),
        reduce_func=lambda _, window: window.batch(batch_size),
        window_size=batch_size,
    )

    @tf.function(reduce_retracing=True)
    @in_tensorflow
    def step(images, masks):
        scores = predict_scores(model, images, image_size)
        return confusion_matrix_update(masks, scores, num_classes, ignore_class)

    if predictor is None and postprocess is not None:
        predictor = WholeImage(model, image_size)

    confusion = np.zeros((num_classes, num_classes), np.int64)
    count = 0
    start = time.perf_counter()
    for images, masks in batches:
        if predictor is None:
            confusion += step(images, masks).numpy()
        else:
            class_maps = refine_batch(
                tf.cast(images, tf.uint8).numpy(),
                predictor(images),
                method=postprocess,
                **(postprocess_options or {}),
            )
            scores = tf.one_hot(class_maps, num_classes)
            confusion += confusion_matrix_update(masks, scores, num_classes, ignore_class).numpy()
        count += int(images.shape[0])
    seconds = time.perf_counter() - start
    report = scores_from_confusion_matrix(confusion)
    report.update(
        {
            "confusion_matrix": confusion,
            "num_images": count,
            "seconds_per_image": seconds / max(count, 1),
        }
    )
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
