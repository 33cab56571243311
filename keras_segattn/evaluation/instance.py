"""COCO-style evaluation of instance segmentations and detections.

`evaluate_instances` runs `pycocotools`' `COCOeval` on per-image
predictions against ground truth given as a COCO JSON, a `COCO` object or
an instance dataset (`keras_segattn.data.instances`), and reports COCO's AP
together with the mean region AP at IoU 0.5 and 0.7 (mAP^r) of SDS
(Hariharan et al., ECCV 2014) and MNC (Dai, He and Sun, CVPR 2016).
"""

import contextlib
import copy
import io
import math
import numbers
import os
import time

import numpy as np
import tensorflow as tf

from keras_segattn.core.instances import (  # noqa: F401 (jitter_box: re-exported)
    jitter_box,
    mask_iou,
    real_instance_indices,
    real_instances,
)
from keras_segattn.core.kernels import in_tensorflow
from keras_segattn.core.validation import check_int
from keras_segattn.models.instance.common import box_masks, unpad_detections
from keras_segattn.models.instance.hypercolumns import (
    model_num_classes,
    segment_boxes,
)

IOU_TYPES = ("segm", "bbox")
# COCOeval's default IoU thresholds, np.linspace(0.5, 0.95, 10); the mAP^r
# thresholds are looked up among them with np.isclose, as linspace gives
# 0.7000000000000001, not 0.7.
MAP_R_THRESHOLDS = (0.5, 0.7)


def _quiet(function, *args):
    # pycocotools prints progress; keep it out of training logs.
    with contextlib.redirect_stdout(io.StringIO()):
        return function(*args)


def _encode_masks(masks):
    from pycocotools import mask as mask_utils

    masks = np.asarray(masks)
    if masks.shape[0] == 0:
        return []
    binary = masks > 0.5 if np.issubdtype(masks.dtype, np.floating) else masks != 0
    return mask_utils.encode(np.asfortranarray(binary.transpose(1, 2, 0).astype(np.uint8)))


def _new_coco(dataset):
    from pycocotools.coco import COCO

    coco = COCO()
    coco.dataset = dataset
    _quiet(coco.createIndex)
    return coco


def build_coco_ground_truth(dataset, num_classes):
    """Builds a `pycocotools` `COCO` ground truth from an instance dataset.

    Instances are those with a label `>= 0` among the first
    `num_instances` (the shapes' -1 padding is left out); crowd regions
    (`is_crowd`) become `iscrowd` annotations, which COCOeval ignores.
    Masks are RLE-encoded and an annotation's `area` is its mask area (box
    area without masks), as in COCO. Category ids are the class ids
    `1..num_classes - 1`. Building it once and passing it to
    `evaluate_instances` saves reading the dataset at every evaluation.

    Args:
        dataset: `tf.data.Dataset` of instance dicts (`image_id`, `images`,
            `bounding_boxes`, optionally `instance_masks`, `is_crowd`,
            `num_instances`), unbatched or batched with equal-size images.
        num_classes: int. Number of class ids, background included.

    Returns:
        A `pycocotools.coco.COCO` object.

    Raises:
        ValueError: if elements lack the keys, an image id repeats, or a
            label is outside `1..num_classes - 1`.

    Examples:
        >>> from keras_segattn.data.instances import shapes_instances
        >>> ds, info = shapes_instances(2, image_size=32)
        >>> gt = build_coco_ground_truth(ds, info.num_classes)
        >>> sorted(gt.getImgIds())
        [0, 1]
    """
    from pycocotools import mask as mask_utils

    num_classes = _check_num_classes(num_classes)
    spec = dataset.element_spec if isinstance(dataset, tf.data.Dataset) else None
    if not isinstance(spec, dict) or not {"images", "image_id", "bounding_boxes"} <= set(spec):
        raise ValueError(
            "dataset must be a tf.data.Dataset of instance dicts with 'images', 'image_id' "
            f"and 'bounding_boxes'; got {spec if spec is not None else type(dataset).__name__}"
        )
    if spec["images"].shape.rank == 4:
        dataset = dataset.unbatch()
    images, annotations = [], []
    seen = set()
    for example in dataset.as_numpy_iterator():
        image_id = int(example["image_id"])
        if image_id in seen:
            raise ValueError(f"dataset yields image_id {image_id} more than once")
        seen.add(image_id)
        height, width = example["images"].shape[:2]
        images.append({"id": image_id, "height": int(height), "width": int(width)})
        boxes = np.asarray(example["bounding_boxes"]["boxes"], np.float64).reshape(-1, 4)
        labels = np.asarray(example["bounding_boxes"]["labels"]).astype(np.int64).reshape(-1)
        count = int(example.get("num_instances", len(labels)))
        bad = sorted({int(v) for v in labels[:count] if v != -1 and not 1 <= v < num_classes})
        keep = real_instance_indices(labels, count, keep_crowd=True)
        if bad:
            raise ValueError(
                f"Ground truth of image_id {image_id} has labels {bad}; expected class ids "
                f"1..{num_classes - 1} (num_classes={num_classes}) or -1 padding"
            )
        crowd = np.asarray(example.get("is_crowd", np.zeros(len(labels), bool))).reshape(-1)
        rles = None
        if "instance_masks" in example:
            rles = _encode_masks(np.asarray(example["instance_masks"])[keep])
        for n, j in enumerate(keep):
            x1, y1, x2, y2 = boxes[j]
            annotation = {
                "id": len(annotations) + 1,
                "image_id": image_id,
                "category_id": int(labels[j]),
                "bbox": [x1, y1, x2 - x1, y2 - y1],
                "area": float((x2 - x1) * (y2 - y1)),
                "iscrowd": int(bool(crowd[j])) if j < len(crowd) else 0,
            }
            if rles is not None:
                annotation["segmentation"] = rles[n]
                annotation["area"] = float(mask_utils.area(rles[n]))
            annotations.append(annotation)
    categories = [{"id": c, "name": str(c)} for c in range(1, num_classes)]
    return _new_coco({"images": images, "annotations": annotations, "categories": categories})


def _check_num_classes(num_classes):
    if isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral):
        raise ValueError(f"num_classes must be an int >= 2; got {num_classes!r}")
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2 (background and one class); got {num_classes}")
    return int(num_classes)


def _ground_truth(ground_truth, num_classes):
    """Returns `(coco, category_ids)` with `category_ids[label]` the COCO id."""
    from pycocotools.coco import COCO

    if isinstance(ground_truth, tf.data.Dataset):
        if num_classes is None:
            raise ValueError(
                "num_classes is needed when ground_truth is a dataset (it fixes the valid "
                "class ids 1..num_classes - 1); pass info.num_classes"
            )
        coco = build_coco_ground_truth(ground_truth, num_classes)
        return coco, tuple(range(_check_num_classes(num_classes)))
    if isinstance(ground_truth, (str, os.PathLike)):
        path = os.fspath(ground_truth)
        if not os.path.isfile(path):
            raise ValueError(f"Ground-truth annotation file '{path}' does not exist")
        coco = _quiet(COCO, path)
    elif isinstance(ground_truth, COCO):
        coco = ground_truth
    else:
        raise ValueError(
            "ground_truth must be a COCO JSON path, a pycocotools COCO object or a "
            f"tf.data.Dataset of instance dicts; got {type(ground_truth).__name__}"
        )
    # The same contiguous ids as keras_segattn.data.instances: rank of the id.
    category_ids = (0,) + tuple(sorted(coco.getCatIds()))
    if num_classes is not None and _check_num_classes(num_classes) != len(category_ids):
        raise ValueError(
            f"num_classes={num_classes} but the ground truth has {len(category_ids) - 1} "
            f"categories (num_classes {len(category_ids)} with background)"
        )
    return coco, category_ids


def _as_array(prediction, key, image_id, dtype, shape_tail=()):
    if key not in prediction:
        raise ValueError(f"Prediction for image_id {image_id} lacks {key!r}")
    value = np.asarray(prediction[key])
    try:
        value = value.astype(dtype).reshape((-1,) + shape_tail)
    except (TypeError, ValueError):
        raise ValueError(
            f"Prediction for image_id {image_id}: {key!r} has shape {value.shape}; expected "
            f"(K{''.join(f', {s}' for s in shape_tail)})"
        ) from None
    if np.issubdtype(dtype, np.integer) and not np.array_equal(
        value, np.asarray(prediction[key]).reshape(value.shape)
    ):
        raise ValueError(
            f"Prediction for image_id {image_id}: {key!r} must hold integer class ids; got "
            f"{np.asarray(prediction[key]).reshape(-1)[:5].tolist()}"
        )
    return value


def _detections(predictions, coco, category_ids, iou_type):
    """Converts per-image predictions to COCO result annotations, checking them."""
    from pycocotools import mask as mask_utils

    if isinstance(predictions, dict):
        predictions = [predictions]
    num_classes = len(category_ids)
    results, seen = [], set()
    for prediction in predictions:
        if not isinstance(prediction, dict) or "image_id" not in prediction:
            raise ValueError(
                "Each prediction must be a dict with 'image_id', 'scores', 'labels' and "
                f"'boxes' or 'masks'; got {type(prediction).__name__}"
            )
        image_id = int(np.asarray(prediction["image_id"]))
        if image_id not in coco.imgs:
            raise ValueError(f"Prediction image_id {image_id} is not in the ground truth")
        if image_id in seen:
            raise ValueError(f"Predictions list image_id {image_id} more than once")
        seen.add(image_id)
        scores = _as_array(prediction, "scores", image_id, np.float64)
        labels = _as_array(prediction, "labels", image_id, np.int64)
        if len(labels) != len(scores) or not np.all(np.isfinite(scores)):
            raise ValueError(
                f"Prediction for image_id {image_id} has {len(scores)} scores and "
                f"{len(labels)} labels; expected one finite score per label"
            )
        bad = sorted({int(v) for v in labels if not 1 <= v < num_classes})
        if bad:
            raise ValueError(
                f"Prediction for image_id {image_id} has labels {bad}; expected class ids "
                f"1..{num_classes - 1}"
            )
        image = coco.imgs[image_id]
        if iou_type == "segm":
            masks = np.asarray(prediction["masks"]) if "masks" in prediction else None
            expected = (len(labels), int(image["height"]), int(image["width"]))
            if masks is not None and not len(labels) and not masks.size:
                continue
            if masks is None or masks.shape != expected:
                got = "no 'masks'" if masks is None else f"masks of shape {masks.shape}"
                raise ValueError(
                    f"Prediction for image_id {image_id} has {got}; expected (K, height, "
                    f"width) = {expected}, masks at the image's resolution"
                )
            rles = _encode_masks(masks)
            for k, rle in enumerate(rles):
                rle["counts"] = rle["counts"].decode("ascii")
                results.append(
                    {
                        "image_id": image_id,
                        "category_id": category_ids[labels[k]],
                        "score": float(scores[k]),
                        "segmentation": rle,
                        "area": float(mask_utils.area(rle)),
                        "bbox": [float(v) for v in mask_utils.toBbox(rle)],
                    }
                )
        else:
            boxes = _as_array(prediction, "boxes", image_id, np.float64, (4,))
            if len(boxes) != len(labels):
                raise ValueError(
                    f"Prediction for image_id {image_id} has {len(boxes)} boxes and "
                    f"{len(labels)} labels"
                )
            for k, (x1, y1, x2, y2) in enumerate(boxes):
                results.append(
                    {
                        "image_id": image_id,
                        "category_id": category_ids[labels[k]],
                        "score": float(scores[k]),
                        "bbox": [x1, y1, x2 - x1, y2 - y1],
                        "area": float((x2 - x1) * (y2 - y1)),
                    }
                )
    for n, result in enumerate(results, 1):
        result["id"], result["iscrowd"] = n, 0
    return results


def _mean_precision(evaluator, iou=None, area="all"):
    """Mean over categories of the 101-point precision, as COCOeval.summarize.

    Categories without ground truth (precision -1) are left out; `nan` if
    none is left.
    """
    params = evaluator.params
    precision = evaluator.eval["precision"]  # [T, R, K, A, M]
    if iou is not None:
        thresholds = np.flatnonzero(np.isclose(params.iouThrs, iou))
        if thresholds.size != 1:
            raise ValueError(f"IoU threshold {iou} is not among {params.iouThrs.tolist()}")
        precision = precision[thresholds]
    precision = precision[:, :, :, params.areaRngLbl.index(area), -1]
    valid = precision[precision > -1]
    return float(np.mean(valid)) if valid.size else math.nan


def _mean_recall(evaluator, max_detections_index, area="all"):
    recall = evaluator.eval["recall"]  # [T, K, A, M]
    recall = recall[:, :, evaluator.params.areaRngLbl.index(area), max_detections_index]
    valid = recall[recall > -1]
    return float(np.mean(valid)) if valid.size else math.nan


def evaluate_instances(
    predictions,
    ground_truth,
    iou_type="segm",
    num_classes=None,
    image_ids=None,
    max_detections=100,
):
    """Scores instance predictions with `pycocotools`' `COCOeval`.

    `AP` is COCO's AP averaged over IoU 0.5:0.05:0.95; `AP50` and `AP75`
    at one IoU. `mAPr@0.5` and `mAPr@0.7` are the mAP^r of SDS and MNC:
    COCOeval's precision at that IoU threshold (its default thresholds
    `np.linspace(0.5, 0.95, 10)` include 0.7, found with `np.isclose`),
    averaged over the 101 recall points and then over the categories that
    have ground truth, all areas, `max_detections` per image. With
    `iou_type="segm"`, the IoU is between masks, which is what makes it
    region AP; `AP50` and `mAPr@0.5` are the same number. It is COCO's
    101-point interpolated AP, a little different from the VOC-style AP of
    the SDS evaluation code, and COCOeval matches at IoU >= the threshold
    where SDS asks for > 0.5.

    Crowd ground truth (`iscrowd`) is ignored: a detection matching it is
    neither a true nor a false positive. Every ground-truth image counts,
    including those without any prediction entry (their objects are
    missed), unless `image_ids` restricts the evaluation.

    Args:
        predictions: list of dicts, one per image: `image_id`, `scores`
            `(K,)`, `labels` `(K,)` class ids `1..num_classes - 1` (for a
            COCO JSON, the contiguous ids of `keras_segattn.data.instances`: the
            rank of the category id), `boxes` `(K, 4)` `"xyxy"` pixels (for
            `"bbox"`) and `masks` `(K, H, W)` at the image's resolution
            (for `"segm"`; floats are thresholded at 0.5, other types at 0).
        ground_truth: a COCO instances JSON path, a
            `pycocotools.coco.COCO`, or a `tf.data.Dataset` of instance
            dicts (see `build_coco_ground_truth`).
        iou_type: str. `"segm"` (mask IoU) or `"bbox"`. Defaults to
            `"segm"`.
        num_classes: int or `None`. Class ids, background included.
            Needed for a dataset; for a JSON or `COCO` object it is read
            from the categories and, if given, checked. Defaults to `None`.
        image_ids: iterable of int or `None`. The images to evaluate (e.g.
            `info.image_ids` when some images were missing on disk).
            Defaults to every ground-truth image.
        max_detections: int. Detections per image kept, by score (COCO's
            100). Defaults to `100`.

    Returns:
        A dict of floats: `AP`, `AP50`, `AP75`, `APs`, `APm`, `APl`,
        `AR1`, `AR10`, `AR{max_detections}`, `ARs`, `ARm`, `ARl`,
        `mAPr@0.5`, `mAPr@0.7`, with `nan` where COCOeval has nothing to
        average (no ground truth in that range), and `per_class_AP`, a dict
        from class id to its AP (`nan` without ground truth).

    Raises:
        ValueError: for an unknown `iou_type`, a prediction whose image is
            not in the ground truth, whose labels are out of range or whose
            masks do not match its image size (naming the image and what
            was expected), or ground truth that cannot be read.

    Examples:
        >>> from keras_segattn.data.instances import shapes_instances
        >>> ds, info = shapes_instances(1, image_size=32)
        >>> ex = next(ds.as_numpy_iterator())
        >>> n = ex["num_instances"]
        >>> perfect = [{"image_id": ex["image_id"], "scores": np.ones(n),
        ...             "labels": ex["bounding_boxes"]["labels"][:n],
        ...             "masks": ex["instance_masks"][:n]}]
        >>> evaluate_instances(perfect, ds, num_classes=info.num_classes)["AP"]
        1.0
    """
    from pycocotools.cocoeval import COCOeval

    if iou_type not in IOU_TYPES:
        raise ValueError(f"iou_type must be one of {IOU_TYPES}; got {iou_type!r}")
    if isinstance(max_detections, bool) or int(max_detections) < 1:
        raise ValueError(f"max_detections must be a positive integer; got {max_detections!r}")
    max_detections = int(max_detections)
    coco, category_ids = _ground_truth(ground_truth, num_classes)
    results = _detections(predictions, coco, category_ids, iou_type)
    if iou_type == "segm":
        missing = [a["id"] for a in coco.dataset["annotations"] if "segmentation" not in a]
        if missing:
            raise ValueError(
                f"iou_type='segm' needs ground-truth masks; annotations {missing[:5]} have none"
            )
    detections = _new_coco(
        {
            "images": list(coco.dataset["images"]),
            "categories": copy.deepcopy(coco.dataset["categories"]),
            "annotations": results,
        }
    )
    evaluator = COCOeval(coco, detections, iou_type)
    if image_ids is not None:
        image_ids = sorted({int(i) for i in image_ids})
        unknown = [i for i in image_ids if i not in coco.imgs]
        if unknown:
            raise ValueError(f"image_ids {unknown[:5]} are not in the ground truth")
        evaluator.params.imgIds = image_ids
    # COCOeval matches with the last entry; AR1 and AR10 use the others.
    evaluator.params.maxDets = [1, 10, max_detections]
    _quiet(evaluator.evaluate)
    _quiet(evaluator.accumulate)

    metrics = {
        "AP": _mean_precision(evaluator),
        "AP50": _mean_precision(evaluator, 0.5),
        "AP75": _mean_precision(evaluator, 0.75),
        "APs": _mean_precision(evaluator, area="small"),
        "APm": _mean_precision(evaluator, area="medium"),
        "APl": _mean_precision(evaluator, area="large"),
        "AR1": _mean_recall(evaluator, 0),
        "AR10": _mean_recall(evaluator, 1),
        f"AR{max_detections}": _mean_recall(evaluator, -1),
        "ARs": _mean_recall(evaluator, -1, "small"),
        "ARm": _mean_recall(evaluator, -1, "medium"),
        "ARl": _mean_recall(evaluator, -1, "large"),
    }
    for threshold in MAP_R_THRESHOLDS:
        metrics[f"mAPr@{threshold}"] = _mean_precision(evaluator, threshold)
    per_class = {}
    precision = evaluator.eval["precision"][:, :, :, 0, -1]
    for k, category in enumerate(evaluator.params.catIds):
        values = precision[:, :, k]
        values = values[values > -1]
        per_class[category_ids.index(category)] = (
            float(np.mean(values)) if values.size else math.nan
        )
    metrics["per_class_AP"] = per_class
    return metrics


def predict_instances(model, dataset, batch_size=16, score_threshold=0.0, in_graph=True, **options):
    """Runs `model.detect` over an instance dataset; returns per-image predictions.

    Args:
        model: any instance model (`rpn`, `mnc`, `sds`, `hypercolumns`):
            each has `detect(images)`, returning the padded structure of
            `models.instance.common.pad_detections`.
        dataset: unbatched instance dicts with `images` and `image_id`.
            Images of one static size are batched by `batch_size`, others
            one at a time.
        batch_size: int. Defaults to `16`.
        score_threshold: float. Detections scoring at or below it are
            dropped. Defaults to `0`.
        in_graph: bool. Whether `detect` runs as one TensorFlow graph (`rpn`,
            `mnc`: traced once) or on the host around the network (`sds`,
            `hypercolumns`: called on NumPy images). Defaults to `True`.
        **options: more arguments of `model.detect` (e.g. `detector=` for
            `hypercolumns`).

    Returns:
        A list of dicts `{"image_id", "boxes" (K, 4), "scores" (K,),
        "labels" (K,), "masks" (K, H, W) uint8}`, the format of
        `evaluate_instances`.
    """
    batch_size = check_int(batch_size, "batch_size")
    static = dataset.element_spec["images"].shape.is_fully_defined()
    # Only the images and ids are batched: instance counts differ per image.
    images = dataset.map(lambda e: {"images": e["images"], "image_id": e["image_id"]})
    batches = images.batch(batch_size if static else 1)
    if in_graph:
        traced = tf.function(in_tensorflow(model.detect), reduce_retracing=True)
        detect = lambda batch: traced(batch, **options)  # noqa: E731
    else:
        detect = lambda batch: model.detect(batch.numpy(), **options)  # noqa: E731
    predictions = []
    for example in batches:
        outputs = {k: np.asarray(v) for k, v in detect(example["images"]).items()}
        for row, image_id in enumerate(example["image_id"].numpy()):
            found = unpad_detections(outputs, row)
            keep = found["scores"] > score_threshold
            predictions.append(
                {"image_id": int(image_id), **{k: v[keep] for k, v in found.items()}}
            )
    return predictions


def evaluate_instance_model(model, dataset, num_classes, batch_size=16):
    """COCO-style scores of `model` on an instance dataset.

    Returns:
        A dict: `mask_AP`, `mAPr@0.5`, `mAPr@0.7` (mask IoU), `box_AP`,
        `box_AP50`, `seconds` (prediction and evaluation time),
        `predict_seconds_per_image` (`detect`, its masks pasted at image
        resolution, copied to NumPy).
    """
    return timed_coco_scores(
        lambda: predict_instances(model, dataset, batch_size), dataset, num_classes
    )


def timed_coco_scores(predict, dataset, num_classes):
    """`coco_scores` of the per-image predictions `predict()` returns, with
    `seconds` (prediction and scoring) and `predict_seconds_per_image`."""
    start = time.perf_counter()
    predictions = predict()
    predict_seconds = time.perf_counter() - start
    scores = coco_scores(predictions, dataset, num_classes)
    scores["seconds"] = time.perf_counter() - start
    scores["predict_seconds_per_image"] = predict_seconds / max(1, len(predictions))
    return scores


def coco_scores(predictions, dataset, num_classes):
    """The five numbers the instance tables of the docs report: mask AP, mAP^r
    at 0.5 and 0.7, box AP and box AP50 (`evaluate_instances`, both types)."""
    segm = evaluate_instances(predictions, dataset, "segm", num_classes)
    bbox = evaluate_instances(predictions, dataset, "bbox", num_classes)
    return {
        "mask_AP": segm["AP"],
        "mAPr@0.5": segm["mAPr@0.5"],
        "mAPr@0.7": segm["mAPr@0.7"],
        "box_AP": bbox["AP"],
        "box_AP50": bbox["AP50"],
    }


def mean_matched_iou(predictions, dataset):
    """Mean IoU of prediction `k` with ground-truth instance `k` (oracle order)."""
    ious = []
    for prediction, example in zip(predictions, dataset.as_numpy_iterator()):
        _, _, masks = real_instances(example)
        for predicted, truth in zip(prediction["masks"], masks):
            union = np.logical_or(predicted, truth).sum()
            ious.append(np.logical_and(predicted, truth).sum() / union if union else 0.0)
    return float(np.mean(ious)) if ious else float("nan")


def proposal_recall(dataset, proposals, thresholds=(0.5, 0.7)):
    """Fraction of ground-truth instances whose best proposal reaches each IoU."""
    best = []
    for example, (masks, _) in zip(dataset.as_numpy_iterator(), proposals):
        _, _, gt_masks = real_instances(example)
        if len(gt_masks) == 0:
            continue
        if len(masks) == 0:
            best.extend([0.0] * len(gt_masks))
            continue
        best.extend(mask_iou(gt_masks, masks).max(axis=1))
    best = np.asarray(best)
    return {
        f"recall@{t}": float(np.mean(best >= t)) if best.size else float("nan") for t in thresholds
    }


def oracle_predictions(model, dataset, num_images=None, min_iou=0.7, seed=1, threshold=0.5):
    """Segments jittered ground-truth boxes of each image with their true classes.

    "Oracle" detections isolate the segmentation quality from detection:
    every instance is found, with a box of IoU >= `min_iou`, so mAP^r
    measures how many of the masks reach each IoU (scores rank them by the
    network's confidence, `segment_boxes`). Also returns the same
    detections with the whole box as the mask, the baseline the paper
    compares against.

    Returns:
        `(predictions, box_predictions)`: lists of per-image dicts for
        `evaluate_instances`.
    """
    rng = np.random.default_rng(seed)
    predictions, box_predictions = [], []
    for index, example in enumerate(dataset.as_numpy_iterator()):
        if num_images is not None and index >= num_images:
            break
        image = example["images"]
        boxes, labels, _ = real_instances(example)
        jittered = np.array(
            [jitter_box(b, image.shape, rng, min_iou) for b in boxes], np.float32
        ).reshape(-1, 4)
        classes = labels if model_num_classes(model) is not None else None
        prediction = segment_boxes(
            model, image, jittered, classes, image_id=int(example["image_id"]), threshold=threshold
        )
        prediction["labels"] = labels
        prediction.pop("probabilities")
        predictions.append(prediction)
        whole_boxes = box_masks(jittered[None], image.shape[:2]).numpy()[0]
        box_predictions.append(
            {
                "image_id": int(example["image_id"]),
                "boxes": jittered,
                "scores": np.ones(len(jittered), np.float32),
                "labels": labels,
                "masks": whole_boxes,
            }
        )
    return predictions, box_predictions
