import math
import os

import numpy as np
import pytest
import tensorflow as tf

from keras_segattn.data.instances import coco_instances, shapes_instances
from keras_segattn.evaluation.instance import build_coco_ground_truth, evaluate_instances

KEYS = ("AP", "AP50", "AP75", "mAPr@0.5", "mAPr@0.7")


def _square(top, left, size, shape=(20, 20)):
    mask = np.zeros(shape, np.uint8)
    mask[top : top + size, left : left + size] = 1
    return mask


def _box_of(mask):
    rows, cols = np.nonzero(mask)
    return [cols.min(), rows.min(), cols.max() + 1, rows.max() + 1]


def _gt_dataset(images, max_instances=3):
    """Instance dataset from `[(masks, labels, is_crowd), ...]`, padded like the shapes."""
    count = len(images)
    height, width = images[0][0][0].shape
    masks = np.zeros((count, max_instances, height, width), np.uint8)
    boxes = np.full((count, max_instances, 4), -1, np.float32)
    labels = np.full((count, max_instances), -1, np.int32)
    crowd = np.zeros((count, max_instances), bool)
    for i, (image_masks, image_labels, image_crowd) in enumerate(images):
        for j, mask in enumerate(image_masks):
            masks[i, j], labels[i, j], crowd[i, j] = mask, image_labels[j], image_crowd[j]
            boxes[i, j] = _box_of(mask)
    return tf.data.Dataset.from_tensor_slices(
        {
            "images": np.zeros((count, height, width, 3), np.uint8),
            "image_id": np.arange(count, dtype=np.int64) + 100,
            "bounding_boxes": {"boxes": boxes, "labels": labels},
            "instance_masks": masks,
            "is_crowd": crowd,
            "num_instances": np.array([len(m[1]) for m in images], np.int32),
        }
    )


def _prediction(image_id, masks, labels, scores):
    masks = np.asarray(masks, np.uint8).reshape((-1, 20, 20))
    return {
        "image_id": image_id,
        "masks": masks,
        "boxes": np.array([_box_of(m) for m in masks], np.float32).reshape(-1, 4),
        "labels": np.asarray(labels),
        "scores": np.asarray(scores, np.float32),
    }


def _perfect_predictions(dataset):
    predictions = []
    for ex in dataset.as_numpy_iterator():
        n = int(ex["num_instances"])
        predictions.append(
            {
                "image_id": ex["image_id"],
                "boxes": ex["bounding_boxes"]["boxes"][:n],
                "labels": ex["bounding_boxes"]["labels"][:n],
                "scores": np.linspace(1.0, 0.5, n),
                "masks": ex["instance_masks"][:n],
            }
        )
    return predictions


@pytest.mark.parametrize("iou_type", ["segm", "bbox"])
def test_perfect_predictions_on_shapes(iou_type):
    dataset, info = shapes_instances(6, image_size=40, seed=2)
    metrics = evaluate_instances(
        _perfect_predictions(dataset), dataset, iou_type, num_classes=info.num_classes
    )
    for key in KEYS:
        assert metrics[key] == pytest.approx(1.0), key
    assert set(metrics["per_class_AP"]) <= {1, 2, 3}
    assert all(v == pytest.approx(1.0) for v in metrics["per_class_AP"].values())
    assert metrics["AR100"] == pytest.approx(1.0)


@pytest.mark.parametrize(
    "pixels, ap, ap75, map_r_07",
    [
        # IoU 0.62: a match at IoU 0.5, 0.55 and 0.6 only, so AP = 3 / 10.
        (62, 0.3, 0.0, 0.0),
        # IoU 0.72: matched at 0.5 .. 0.7 (linspace's 0.7000000000000001
        # included), not at 0.75: AP = 5 / 10 and mAPr@0.7 = 1.
        (72, 0.5, 0.0, 1.0),
    ],
)
def test_partial_mask_gives_hand_checked_values(pixels, ap, ap75, map_r_07):
    gt = _gt_dataset([([_square(5, 5, 10)], [1], [False])])
    partial = np.zeros((20, 20), np.uint8)
    partial[5:15, 5 : 5 + pixels // 10] = 1
    partial[5 : 5 + pixels % 10, 5 + pixels // 10] = 1
    assert partial.sum() == pixels and partial[_square(5, 5, 10) == 0].sum() == 0
    metrics = evaluate_instances([_prediction(100, [partial], [1], [0.9])], gt, num_classes=2)
    assert metrics["AP"] == pytest.approx(ap)
    assert metrics["AP50"] == pytest.approx(1.0) and metrics["mAPr@0.5"] == pytest.approx(1.0)
    assert metrics["AP75"] == ap75 and metrics["mAPr@0.7"] == pytest.approx(map_r_07)


def test_shifted_box_gives_hand_checked_values():
    gt = _gt_dataset([([_square(5, 5, 10)], [1], [False])])
    # Shifted by 2 columns: box IoU 80 / 120 = 0.667, matched at 0.5..0.65.
    shifted = {
        "image_id": 100,
        "boxes": np.array([[7, 5, 17, 15]], np.float32),
        "labels": [1],
        "scores": [0.8],
    }
    metrics = evaluate_instances([shifted], gt, "bbox", num_classes=2)
    assert metrics["AP"] == pytest.approx(0.4)
    assert metrics["mAPr@0.5"] == pytest.approx(1.0) and metrics["mAPr@0.7"] == 0.0


def test_missed_object_and_false_positive():
    a, b = _square(0, 0, 8), _square(10, 10, 8)
    gt = _gt_dataset([([a, b], [1, 1], [False, False])])
    found_one = _prediction(100, [a], [1], [0.9])
    # Recall reaches 0.5 at precision 1: 51 of COCO's 101 recall points.
    expected = 51 / 101
    metrics = evaluate_instances([found_one], gt, num_classes=2)
    for key in KEYS:
        assert metrics[key] == pytest.approx(expected), key
    # A higher-scoring false positive halves the precision at that recall.
    with_false_positive = _prediction(100, [_square(0, 10, 8), a], [1, 1], [0.95, 0.9])
    metrics = evaluate_instances([with_false_positive], gt, num_classes=2)
    assert metrics["mAPr@0.5"] == pytest.approx(expected / 2)
    # Right mask, wrong class: class 1 is missed and class 2 has only a false
    # positive and no ground truth, so it is left out of the mean.
    wrong_class = _prediction(100, [a, b], [2, 1], [0.9, 0.8])
    metrics = evaluate_instances([wrong_class], gt, num_classes=3)
    assert metrics["AP"] == pytest.approx(expected)
    assert math.isnan(metrics["per_class_AP"][2])


def test_empty_predictions_give_zero():
    gt = _gt_dataset([([_square(5, 5, 10)], [1], [False]), ([_square(0, 0, 5)], [2], [False])])
    for predictions in ([], [_prediction(100, np.zeros((0, 20, 20)), [], [])]):
        for iou_type in ("segm", "bbox"):
            metrics = evaluate_instances(predictions, gt, iou_type, num_classes=3)
            for key in KEYS:
                assert metrics[key] == 0.0, (key, iou_type)


def test_crowd_ground_truth_is_ignored():
    person, crowd = _square(0, 0, 8), _square(10, 10, 10)
    gt = _gt_dataset([([person, crowd], [1, 1], [False, True])])
    # The crowd region is not a missed object ...
    only_person = _prediction(100, [person], [1], [0.5])
    assert evaluate_instances([only_person], gt, num_classes=2)["AP"] == pytest.approx(1.0)
    # ... and a detection on it, even above the true one, is no false positive.
    on_crowd = _prediction(100, [_square(10, 10, 9), person], [1, 1], [0.9, 0.5])
    for iou_type in ("segm", "bbox"):
        metrics = evaluate_instances([on_crowd], gt, iou_type, num_classes=2)
        assert metrics["AP"] == pytest.approx(1.0), iou_type
    # Without the crowd flag, the same detections score lower.
    plain = _gt_dataset([([person, crowd], [1, 1], [False, False])])
    assert evaluate_instances([on_crowd], plain, num_classes=2)["AP"] < 0.9


def test_prediction_errors_name_the_problem():
    gt = _gt_dataset([([_square(5, 5, 10)], [1], [False])])
    good = _prediction(100, [_square(5, 5, 10)], [1], [0.9])
    with pytest.raises(ValueError, match=r"image_id 100 has labels \[0, 3\]; expected .* 1\.\.2"):
        evaluate_instances(
            [_prediction(100, [good["masks"][0]] * 2, [0, 3], [1, 1])], gt, num_classes=3
        )
    bad_size = dict(good, masks=np.zeros((1, 10, 20), np.uint8))
    with pytest.raises(
        ValueError,
        match=r"image_id 100 has masks of shape \(1, 10, 20\); .*"
        r"\(1, 20, 20\)",
    ):
        evaluate_instances([bad_size], gt, num_classes=2)
    with pytest.raises(ValueError, match="image_id 5 is not in the ground truth"):
        evaluate_instances([dict(good, image_id=5)], gt, num_classes=2)
    with pytest.raises(ValueError, match="more than once"):
        evaluate_instances([good, good], gt, num_classes=2)
    with pytest.raises(ValueError, match="must hold integer class ids"):
        evaluate_instances([dict(good, labels=[1.5])], gt, num_classes=2)
    with pytest.raises(ValueError, match="lacks 'scores'"):
        evaluate_instances([{"image_id": 100, "labels": [1]}], gt, num_classes=2)
    with pytest.raises(ValueError, match="num_classes is needed"):
        evaluate_instances([good], gt)
    with pytest.raises(ValueError, match="iou_type"):
        evaluate_instances([good], gt, "keypoints", num_classes=2)
    two = _gt_dataset([([_square(5, 5, 10)], [2], [False])])
    with pytest.raises(ValueError, match=r"Ground truth of image_id 100 has labels \[2\]"):
        evaluate_instances([], two, num_classes=2)


def test_coco_mini_json_and_dataset_agree(shared_data):
    from pycocotools.coco import COCO

    root = os.path.join(shared_data, "coco_mini")
    dataset, info = coco_instances(root, "val")
    gt = COCO(info.annotation_file)
    label_of = info.category_id_to_label
    image_ids = sorted(gt.getImgIds())[:12]
    predictions, rng = [], np.random.default_rng(0)
    for image_id in image_ids:
        anns = [a for a in gt.loadAnns(gt.getAnnIds(imgIds=image_id)) if not a["iscrowd"]]
        masks = np.stack([gt.annToMask(a) for a in anns])
        # Erode some masks by dropping their first rows, so the AP is not 1.
        for k in np.flatnonzero(rng.random(len(masks)) < 0.5):
            rows = np.flatnonzero(masks[k].any(axis=1))
            masks[k, rows[: max(1, len(rows) // 3)]] = 0
        boxes = np.array([[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns)])
        predictions.append(
            {
                "image_id": image_id,
                "masks": masks,
                "boxes": boxes,
                "labels": [label_of[a["category_id"]] for a in anns],
                "scores": rng.uniform(0.1, 1.0, len(anns)),
            }
        )
    from_json = evaluate_instances(predictions, info.annotation_file, image_ids=image_ids)
    assert 0.2 < from_json["AP"] < 0.95 and from_json["mAPr@0.5"] >= from_json["mAPr@0.7"]
    subset = dataset.filter(lambda ex: tf.reduce_any(ex["image_id"] == image_ids))
    ground_truth = build_coco_ground_truth(subset, info.num_classes)
    from_dataset = evaluate_instances(predictions, ground_truth)
    for key in KEYS:
        assert from_dataset[key] == pytest.approx(from_json[key]), key
    boxes_json = evaluate_instances(predictions, gt, "bbox", image_ids=image_ids)
    assert boxes_json["AP"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="num_classes=5 but the ground truth has 80"):
        evaluate_instances(predictions, gt, num_classes=5)
