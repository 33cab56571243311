"""NumPy instance structures shared by the data, the models' host-side code,
the trainers and the scorers.

Instance annotations follow the data contract of `keras_segattn.data`: per
image, `bounding_boxes = {"boxes": (N, 4) "xyxy" pixels, "labels": (N,)}`
with class ids 1..num_classes - 1 (0 is background) and -1 for padding,
`instance_masks` `(N, H, W)`, optionally `num_instances` (slots past it are
padding) and `is_crowd` (COCO crowd regions, never trained on as objects).
"""

import numpy as np

PADDING_LABEL = -1


def box_iou(boxes1, boxes2):
    """Pairwise intersection over union of two sets of boxes, in NumPy.

    Boxes are `(x1, y1, x2, y2)` (or `(y1, x1, y2, x2)`: IoU does not care
    which axis comes first). An empty union gives 0.

    Args:
        boxes1: array-like `(N, 4)` or one box `(4,)`.
        boxes2: array-like `(M, 4)` or one box `(4,)`.

    Returns:
        float64 `(N, M)`; a float when both are single boxes.

    Examples:
        >>> box_iou([0, 0, 16, 16], [[8, 0, 24, 16], [32, 32, 40, 40]]).round(4).tolist()
        [[0.3333, 0.0]]
    """
    single = np.ndim(boxes1) == 1 and np.ndim(boxes2) == 1
    a = np.asarray(boxes1, np.float64).reshape(-1, 4)[:, None]
    b = np.asarray(boxes2, np.float64).reshape(-1, 4)[None]
    inter = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    inter = inter * np.clip(
        np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None
    )
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    union = area_a + area_b - inter
    iou = np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)
    return float(iou[0, 0]) if single else iou


def mask_iou(masks1, masks2):
    """Pairwise intersection over union of two sets of bool masks.

    Args:
        masks1: `(A, H, W)` masks (bool, or numbers where non-zero is inside).
        masks2: `(B, H, W)` masks.

    Returns:
        float64 `(A, B)`; two empty masks have IoU 0.
    """
    a = np.asarray(masks1).reshape(len(masks1), -1) != 0
    b = np.asarray(masks2).reshape(len(masks2), -1) != 0
    if a.shape[1] != b.shape[1]:
        raise ValueError(
            "masks1 and masks2 must have the same height and width; got "
            f"{np.shape(masks1)} and {np.shape(masks2)}."
        )
    intersection = a.astype(np.float32) @ b.T.astype(np.float32)
    union = a.sum(1)[:, None] + b.sum(1)[None, :] - intersection
    return np.where(union > 0, intersection / np.maximum(union, 1), 0.0).astype(np.float64)


def real_instance_indices(labels, num_instances=None, is_crowd=None, keep_crowd=False):
    """The slots of one image's annotations that hold a real object.

    The one rule of the package (`instance_pipeline` applies it in-graph):
    a slot is an instance when it comes before `num_instances` and its label
    is a class id (>= 1; 0 is background, -1 padding); crowd regions are
    left out unless `keep_crowd`.

    Args:
        labels: int array-like `(N,)`.
        num_instances: int or `None` (every slot counts).
        is_crowd: bool array-like `(N,)` or `None`.
        keep_crowd: bool. Keep crowd regions (the COCO scorer needs them
            to ignore detections on them). Defaults to `False`.

    Returns:
        int64 indices into the slots.
    """
    labels = np.asarray(labels).reshape(-1)
    keep = labels >= 1
    if num_instances is not None:
        keep &= np.arange(len(labels)) < int(num_instances)
    if is_crowd is not None and not keep_crowd:
        keep &= ~np.asarray(is_crowd, bool).reshape(-1)[: len(labels)]
    return np.flatnonzero(keep)


def real_instances(example, keep_crowd=False):
    """One image's real instances as NumPy arrays.

    Args:
        example: an instance dict (tensors or arrays) of `keras_segattn.data`.
        keep_crowd: bool. See `real_instance_indices`.

    Returns:
        `(boxes float32 (K, 4), labels int32 (K,), masks (K, H, W))`.
    """
    labels = np.asarray(example["bounding_boxes"]["labels"]).reshape(-1)
    count = example.get("num_instances")
    keep = real_instance_indices(
        labels,
        None if count is None else int(np.asarray(count)),
        example.get("is_crowd"),
        keep_crowd=keep_crowd,
    )
    boxes = np.asarray(example["bounding_boxes"]["boxes"], np.float32).reshape(-1, 4)[keep]
    return boxes, labels[keep].astype(np.int32), np.asarray(example["instance_masks"])[keep]


def jitter_box(box, image_shape, rng, min_iou=0.7, scale=0.1, tries=50):
    """A random box around `box` with IoU >= `min_iou` with it, inside the image.

    Centre shifts of `N(0, scale)` box sizes and log-size changes of `N(0,
    scale)`, redrawn until the IoU holds (the box itself after `tries`).
    Stands in for detector boxes, as the paper trained on detections
    overlapping a ground truth by 70% or more.
    """
    height, width = image_shape[:2]
    x1, y1, x2, y2 = (float(v) for v in box)
    w, h = x2 - x1, y2 - y1
    for _ in range(tries):
        cx = (x1 + x2) / 2 + rng.normal(0, scale) * w
        cy = (y1 + y2) / 2 + rng.normal(0, scale) * h
        nw, nh = w * np.exp(rng.normal(0, scale)), h * np.exp(rng.normal(0, scale))
        new = (
            max(0.0, cx - nw / 2),
            max(0.0, cy - nh / 2),
            min(float(width), cx + nw / 2),
            min(float(height), cy + nh / 2),
        )
        if new[2] - new[0] >= 1 and new[3] - new[1] >= 1 and box_iou(new, box) >= min_iou:
            return np.array(new, np.float32)
    return np.array(box, np.float32)
