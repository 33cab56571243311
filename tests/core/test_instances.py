import numpy as np
import pytest

from keras_segattn.core.instances import (
    box_iou,
    mask_iou,
    real_instance_indices,
    real_instances,
)


def reference_iou(a, b):
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - ix * iy
    return ix * iy / union if union > 0 else 0.0


def test_box_iou_matches_a_loop_and_is_symmetric(rng):
    corners = rng.uniform(0, 50, size=(2, 7, 2, 2))
    boxes = np.concatenate([corners.min(axis=2), corners.max(axis=2)], axis=-1)  # (2, 7, 4)
    a, b = boxes[0], boxes[1][:5]
    expected = [[reference_iou(x, y) for y in b] for x in a]
    np.testing.assert_allclose(box_iou(a, b), expected, rtol=1e-12)
    np.testing.assert_allclose(box_iou(b, a), np.transpose(expected), rtol=1e-12)
    assert box_iou([0, 0, 4, 4], [0, 0, 4, 4]) == 1.0
    assert box_iou([0, 0, 0, 0], [0, 0, 0, 0]) == 0.0  # empty union: 0, not NaN
    assert box_iou(np.zeros((0, 4)), b).shape == (0, 5)


def test_mask_iou():
    a = np.zeros((2, 4, 4), bool)
    a[0, :2] = True
    b = np.zeros((1, 4, 4), bool)
    b[0, :, :2] = True
    np.testing.assert_allclose(mask_iou(a, b), [[4 / 12], [0.0]])


def test_one_rule_for_real_instances():
    labels = np.array([2, -1, 0, 1, 3])
    # padding (-1) and background (0) never count; num_instances cuts the tail
    assert real_instance_indices(labels).tolist() == [0, 3, 4]
    assert real_instance_indices(labels, num_instances=4).tolist() == [0, 3]
    crowd = np.array([False, False, False, True, False])
    assert real_instance_indices(labels, is_crowd=crowd).tolist() == [0, 4]
    assert real_instance_indices(labels, is_crowd=crowd, keep_crowd=True).tolist() == [0, 3, 4]


def test_real_instances_of_an_example():
    example = {
        "bounding_boxes": {
            "boxes": np.arange(12, dtype=np.float32).reshape(3, 4),
            "labels": np.array([1, 2, -1]),
        },
        "instance_masks": np.stack([np.full((2, 2), i, np.uint8) for i in range(3)]),
        "num_instances": 2,
        "is_crowd": np.array([False, True, False]),
    }
    boxes, labels, masks = real_instances(example)
    assert labels.tolist() == [1] and boxes.tolist() == [[0, 1, 2, 3]] and masks[0, 0, 0] == 0
    _, labels, _ = real_instances(example, keep_crowd=True)
    assert labels.tolist() == [1, 2]


@pytest.mark.parametrize("bad", [None, "abc"])
def test_box_iou_rejects_non_boxes(bad):
    with pytest.raises((ValueError, TypeError)):
        box_iou(bad, [0, 0, 1, 1])
