"""Object proposals for proposal-wise inference: selective search.

DeconvNet (Noh, Hong and Han, ICCV 2015) runs its fixed-size network on
object proposals of an image (the top 50 of Edge Boxes) and merges the
predictions. Edge Boxes needs OpenCV's contrib build and a trained
structured-edge model file, neither of which this package can install, so
the proposals here are selective search's (Uijlings, van de Sande, Gevers
and Smeulders, IJCV 2013), written on scikit-image's Felzenszwalb
segmentation: the regions of an over-segmentation are merged greedily, the
most similar neighbours first, and every region of the hierarchy is a
proposal. Host-side NumPy, like the rest of `postprocess`.
"""

import heapq

import numpy as np

from keras_segattn.core.validation import check_int

_BINS = 25  # colour histogram bins per channel (the paper's)


def _neighbours(labels):
    """Sorted pairs `(a, b)`, `a < b`, of regions that touch (4-connected)."""
    pairs = []
    for a, b in ((labels[:, :-1], labels[:, 1:]), (labels[:-1, :], labels[1:, :])):
        touching = a != b
        pairs.append(np.stack([a[touching], b[touching]], axis=1))
    pairs = np.sort(np.concatenate(pairs), axis=1)
    return {tuple(p) for p in np.unique(pairs, axis=0)}


def _hierarchy(image, labels):
    """Every region's box `(x1, y1, x2, y2)` (inclusive pixel corners),
    those of the segmentation first, then each merge's in merge order."""
    count = int(labels.max()) + 1
    height, width = labels.shape
    area = float(height * width)
    ys, xs = np.indices(labels.shape)
    flat = labels.ravel()
    size = np.bincount(flat, minlength=count).astype(np.float64)
    boxes = np.stack(
        [np.full(count, width), np.full(count, height), np.full(count, -1), np.full(count, -1)],
        axis=1,
    )
    np.minimum.at(boxes[:, 0], flat, xs.ravel())
    np.minimum.at(boxes[:, 1], flat, ys.ravel())
    np.maximum.at(boxes[:, 2], flat, xs.ravel())
    np.maximum.at(boxes[:, 3], flat, ys.ravel())
    bins = np.minimum((image.astype(np.int64) * _BINS) // 256, _BINS - 1)
    histograms = np.zeros((count, 3 * _BINS))
    for channel in range(3):
        np.add.at(histograms, (flat, channel * _BINS + bins[..., channel].ravel()), 1.0)
    histograms /= np.maximum(histograms.sum(axis=1, keepdims=True), 1.0)
    regions = {i: (size[i], boxes[i].copy(), histograms[i]) for i in range(count)}
    neighbours = _neighbours(labels)

    def similarity(a, b):
        (size_a, box_a, hist_a), (size_b, box_b, hist_b) = regions[a], regions[b]
        colour = np.minimum(hist_a, hist_b).sum()
        small = 1.0 - (size_a + size_b) / area
        joint = np.concatenate([np.minimum(box_a[:2], box_b[:2]), np.maximum(box_a[2:], box_b[2:])])
        box_area = (joint[2] - joint[0] + 1) * (joint[3] - joint[1] + 1)
        fill = 1.0 - (box_area - size_a - size_b) / area
        return colour + small + fill

    adjacent = {i: set() for i in range(count)}
    for a, b in neighbours:
        adjacent[a].add(b)
        adjacent[b].add(a)
    # The most similar pair first (ties: the lower ids); merged regions'
    # pairs are left in the heap and skipped when they come up.
    heap = [(-similarity(a, b), a, b) for a, b in sorted(neighbours)]
    heapq.heapify(heap)
    order = [regions[i][1] for i in range(count)]
    new = count
    while heap:
        _, a, b = heapq.heappop(heap)
        if a not in regions or b not in regions:
            continue
        (size_a, box_a, hist_a), (size_b, box_b, hist_b) = regions.pop(a), regions.pop(b)
        merged_size = size_a + size_b
        box = np.concatenate([np.minimum(box_a[:2], box_b[:2]), np.maximum(box_a[2:], box_b[2:])])
        regions[new] = (merged_size, box, (size_a * hist_a + size_b * hist_b) / merged_size)
        order.append(box)
        adjacent[new] = (adjacent.pop(a) | adjacent.pop(b)) - {a, b}
        for other in adjacent[new]:
            adjacent[other] -= {a, b}
            adjacent[other].add(new)
            heapq.heappush(heap, (-similarity(other, new), other, new))
        new += 1
    return np.array(order, np.int64).reshape(-1, 4)


def selective_search(image, max_proposals=50, scales=(100, 300), min_size=20, min_side=8):
    """Selective-search boxes of an image, the largest hierarchy levels first.

    Each scale `k` of Felzenszwalb's segmentation (`skimage.segmentation.
    felzenszwalb(scale=k)`) is grouped into a hierarchy by colour-histogram,
    size and fill similarity (the paper's, without its texture term). Boxes
    are ranked by merge order from the last (the region of the last merge,
    usually the whole image, first; the segmentation's own regions last),
    the scales' hierarchies interleaved; duplicate boxes and boxes with a
    side under `min_side` pixels are dropped.

    Args:
        image: uint8 `(H, W, 3)`.
        max_proposals: int. The number of boxes returned at most.
        scales: Felzenszwalb's `scale` of each segmentation.
        min_size: int. Felzenszwalb's `min_size` (pixels).
        min_side: int. The smallest box side kept (pixels).

    Returns:
        int64 `(N, 4)` boxes `(x1, y1, x2, y2)`, inclusive pixel corners
        (`x2 <= W - 1`), best first, `N <= max_proposals`.
    """
    from skimage.segmentation import felzenszwalb

    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
        raise ValueError(
            f"image must be uint8 (H, W, 3); got {image.dtype} with shape {image.shape}."
        )
    max_proposals = check_int(max_proposals, "max_proposals")
    ranked = []
    for scale in scales:
        labels = felzenszwalb(image, scale=scale, sigma=0.8, min_size=min_size)
        boxes = _hierarchy(image, labels)
        # Merge order reversed: the last merge (the whole image) is level 0.
        for level, box in enumerate(boxes[::-1]):
            ranked.append((level, box))
    ranked.sort(key=lambda item: item[0])  # stable: scales interleave level by level
    kept, seen = [], set()
    for _, box in ranked:
        key = tuple(int(v) for v in box)
        if key in seen or min(box[2] - box[0], box[3] - box[1]) + 1 < min_side:
            continue
        seen.add(key)
        kept.append(box)
        if len(kept) == max_proposals:
            break
    return np.array(kept, np.int64).reshape(-1, 4)
