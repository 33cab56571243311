"""Bottom-up region proposals and superpixel refinement, on the host in NumPy.

SDS (Hariharan et al., ECCV 2014) classifies *regions*, not boxes: free-form
candidate segments that come from a bottom-up grouping of the image before
any network runs. The paper used MCG (Arbeláez et al., CVPR 2014), about
2000 regions per image; MCG needs trained contour detectors and is not on
PyPI, so this module implements the other classic source of segment
proposals, the hierarchical grouping of selective search (Uijlings, van de
Sande, Gevers and Smeulders, IJCV 2013):

1. Over-segment the image with Felzenszwalb and Huttenlocher's graph-based
   method (`skimage.segmentation.felzenszwalb`) at a few scales.
2. In each segmentation, repeatedly merge the two *adjacent* regions that
   are most similar, where similarity is the sum of (Uijlings et al.,
   section 3.2) colour-histogram intersection (25 bins per channel, L1
   normalised), size (`1 - (size_a + size_b) / image_size`, which merges
   small regions first) and fill (`1 - (box_area(a u b) - size_a - size_b)
   / image_size`, which merges regions that fit into each other), until one
   region is left per connected component. Every region met on the way,
   the initial segments included, is a candidate.
3. Pool the candidates of every (scale, colour space) strategy, rank them
   as selective search does (hierarchy position times a uniform random
   number, the top of each hierarchy first), drop exact duplicates and
   regions smaller than `min_region_area`, and keep at most
   `max_regions`.

Selective search's texture similarity (SIFT-like Gaussian derivative
histograms) is left out: the brief asked for colour, size and fill.
Felzenszwalb always runs on the RGB image; the colour space only changes
the histograms.

None of this is part of an exported graph: it runs in NumPy and
scikit-image on one image at a time, before the network.
"""

import heapq

import numpy as np

from keras_segattn.core.instances import mask_iou  # noqa: F401  (public here too)
from keras_segattn.core.validation import check_int

HISTOGRAM_BINS = 25
COLOR_SPACES = ("rgb", "hsv", "lab")
SIMILARITIES = ("color", "size", "fill")
# Felzenszwalb options of the default proposal strategies; scales of 50 to
# 200 give 30 to 300 segments on 64 to 500 pixel images.
DEFAULT_SCALES = (50, 100, 200)


def _check_image(image, name="image"):
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"{name} must be an (H, W, 3) RGB array; got {name}.shape={image.shape}.")
    if image.dtype != np.uint8:
        raise ValueError(
            f"{name} must be uint8 in [0, 255]; got {name}.dtype={image.dtype}. Convert with "
            "np.clip(image, 0, 255).astype(np.uint8)."
        )
    if min(image.shape[:2]) < 2:
        raise ValueError(f"{name} must be at least 2x2 pixels; got {name}.shape={image.shape}.")
    return image


def check_masks(masks, image_shape, name="masks"):
    """Returns `masks` as a bool `(R, H, W)` array, checking it fits the image.

    Raises:
        ValueError: if `masks` is not 3-D or its height and width are not
            those of the image.
    """
    masks = np.asarray(masks)
    if masks.ndim == 2:
        masks = masks[None]
    height, width = image_shape[:2]
    if masks.ndim != 3 or masks.shape[1:] != (height, width):
        raise ValueError(
            f"{name} must be (num_masks, {height}, {width}), at the image's height and width; "
            f"got {name}.shape={masks.shape} for an image of shape {tuple(image_shape)}."
        )
    if np.issubdtype(masks.dtype, np.floating):
        return masks > 0.5
    return masks != 0


def masks_to_boxes(masks):
    """Tight `"xyxy"` boxes of bool masks `(R, H, W)`, pixel edges (a mask on
    columns 0..9 spans x 0 to 10); an empty mask gets `(0, 0, 0, 0)`."""
    masks = np.asarray(masks, bool)
    boxes = np.zeros((len(masks), 4), np.float32)
    rows_any = masks.any(axis=2)
    cols_any = masks.any(axis=1)
    for i in range(len(masks)):
        rows = np.flatnonzero(rows_any[i])
        cols = np.flatnonzero(cols_any[i])
        if rows.size:
            boxes[i] = (cols[0], rows[0], cols[-1] + 1, rows[-1] + 1)
    return boxes


def _color_channels(image, color_space):
    """The image in `color_space` as uint8 `(H, W, 3)`, for histograms."""
    if color_space == "rgb":
        return image
    from skimage import color

    if color_space == "hsv":
        converted = color.rgb2hsv(image)  # [0, 1]
        return np.clip(converted * 255.0, 0, 255).astype(np.uint8)
    lab = color.rgb2lab(image)  # L in [0, 100], a and b in about [-128, 127]
    scaled = np.stack([lab[..., 0] * 2.55, lab[..., 1] + 128.0, lab[..., 2] + 128.0], axis=-1)
    return np.clip(scaled, 0, 255).astype(np.uint8)


def _initial_regions(labels, channels):
    """Sizes, normalised colour histograms, boxes and adjacent pairs of the segments."""
    num = int(labels.max()) + 1
    flat = labels.ravel()
    sizes = np.bincount(flat, minlength=num).astype(np.float64)
    bins = (channels.reshape(-1, 3).astype(np.int64) * HISTOGRAM_BINS) // 256
    histograms = np.concatenate(
        [
            np.bincount(flat * HISTOGRAM_BINS + bins[:, c], minlength=num * HISTOGRAM_BINS).reshape(
                num, HISTOGRAM_BINS
            )
            for c in range(3)
        ],
        axis=1,
    ).astype(np.float64)
    histograms /= np.maximum(histograms.sum(axis=1, keepdims=True), 1.0)
    height, width = labels.shape
    rows, cols = np.indices((height, width))
    boxes = np.zeros((num, 4), np.float64)
    boxes[:, 0] = np.full(num, width)
    boxes[:, 1] = np.full(num, height)
    np.minimum.at(boxes[:, 0], flat, cols.ravel())
    np.minimum.at(boxes[:, 1], flat, rows.ravel())
    np.maximum.at(boxes[:, 2], flat, cols.ravel() + 1)
    np.maximum.at(boxes[:, 3], flat, rows.ravel() + 1)
    pairs = np.concatenate(
        [
            np.stack([labels[:, :-1].ravel(), labels[:, 1:].ravel()], axis=1),
            np.stack([labels[:-1, :].ravel(), labels[1:, :].ravel()], axis=1),
        ]
    )
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    pairs = np.unique(np.sort(pairs, axis=1), axis=0)
    return sizes, histograms, boxes, pairs


def hierarchical_grouping(labels, image, color_space="rgb", similarities=SIMILARITIES):
    """Selective search's greedy grouping of one over-segmentation.

    Args:
        labels: int array `(H, W)`, segment ids `0..n - 1` (every id used).
        image: uint8 `(H, W, 3)` RGB image.
        color_space: str. Space of the colour histograms, one of
            `COLOR_SPACES`. Defaults to `"rgb"`.
        similarities: tuple of str. Terms summed into the similarity, a
            subset of `SIMILARITIES`. Defaults to all three.

    Returns:
        A tuple `(members, positions)`: `members` is a list with, for every
        region (the `n` segments, then one per merge in merge order), the
        int array of segment ids it is made of; `positions` is an int array
        of each region's position in the hierarchy as selective search
        counts it, 1 for the last merge (the top) and growing downwards,
        the initial segments last.
    """
    labels = np.asarray(labels)
    if color_space not in COLOR_SPACES:
        raise ValueError(f"color_space must be one of {COLOR_SPACES}; got {color_space!r}.")
    unknown = set(similarities) - set(SIMILARITIES)
    if unknown or not similarities:
        raise ValueError(
            f"similarities must be a non-empty subset of {SIMILARITIES}; got {similarities!r}."
        )
    use_color, use_size, use_fill = (s in similarities for s in SIMILARITIES)
    sizes, histograms, boxes, pairs = _initial_regions(labels, _color_channels(image, color_space))
    image_size = float(labels.size)
    sizes, histograms, boxes = list(sizes), list(histograms), list(boxes)
    neighbours = [set() for _ in sizes]
    for a, b in pairs:
        neighbours[a].add(int(b))
        neighbours[b].add(int(a))

    def similarity(a, b):
        value = 0.0
        if use_color:
            value += float(np.minimum(histograms[a], histograms[b]).sum())
        if use_size:
            value += 1.0 - (sizes[a] + sizes[b]) / image_size
        if use_fill:
            x1 = min(boxes[a][0], boxes[b][0])
            y1 = min(boxes[a][1], boxes[b][1])
            x2 = max(boxes[a][2], boxes[b][2])
            y2 = max(boxes[a][3], boxes[b][3])
            value += 1.0 - ((x2 - x1) * (y2 - y1) - sizes[a] - sizes[b]) / image_size
        return value

    # A max-heap with lazy deletion: entries of merged regions are skipped.
    heap = [(-similarity(int(a), int(b)), int(a), int(b)) for a, b in pairs]
    heapq.heapify(heap)
    alive = [True] * len(sizes)
    children = [None] * len(sizes)
    while heap:
        _, a, b = heapq.heappop(heap)
        if not (alive[a] and alive[b]):
            continue
        new = len(sizes)
        alive[a] = alive[b] = False
        total = sizes[a] + sizes[b]
        histograms.append((sizes[a] * histograms[a] + sizes[b] * histograms[b]) / total)
        sizes.append(total)
        boxes.append(
            np.array(
                [
                    min(boxes[a][0], boxes[b][0]),
                    min(boxes[a][1], boxes[b][1]),
                    max(boxes[a][2], boxes[b][2]),
                    max(boxes[a][3], boxes[b][3]),
                ]
            )
        )
        alive.append(True)
        children.append((a, b))
        merged = (neighbours[a] | neighbours[b]) - {a, b}
        neighbours.append(merged)
        for k in merged:
            neighbours[k] -= {a, b}
            neighbours[k].add(new)
            heapq.heappush(heap, (-similarity(new, k), min(new, k), max(new, k)))

    num_segments = int(labels.max()) + 1
    members = []
    for region, pair in enumerate(children):
        if pair is None:
            members.append(np.array([region]))
        else:
            members.append(np.concatenate([members[pair[0]], members[pair[1]]]))
    num_merges = len(children) - num_segments
    positions = np.concatenate(
        [num_merges + 1 + np.arange(num_segments), num_merges - np.arange(num_merges)]
    )
    return members, positions.astype(np.int64)


def propose_regions(
    image,
    scales=DEFAULT_SCALES,
    sigma=0.8,
    min_size=20,
    color_spaces=("rgb", "hsv"),
    similarities=SIMILARITIES,
    max_regions=500,
    min_region_area=16,
    seed=0,
):
    """Selective-search-style region proposals of one image (host, NumPy).

    See the module docstring for the algorithm. Runs
    `skimage.segmentation.felzenszwalb` once per scale and the greedy
    grouping once per (scale, colour space).

    Args:
        image: uint8 array `(H, W, 3)`, RGB.
        scales: tuple of float. Felzenszwalb `scale` of each
            over-segmentation (larger: fewer, bigger segments). Defaults to
            `(50, 100, 200)`.
        sigma: float. Felzenszwalb's Gaussian pre-smoothing. Defaults to
            `0.8`.
        min_size: int. Felzenszwalb's smallest segment, in pixels.
            Defaults to `20`.
        color_spaces: tuple of str. Colour spaces of the histograms, each a
            separate strategy (`"rgb"`, `"hsv"`, `"lab"`). Defaults to
            `("rgb", "hsv")`.
        similarities: tuple of str. Similarity terms (`"color"`, `"size"`,
            `"fill"`). Defaults to all three.
        max_regions: int. Most regions returned. Defaults to `500`.
        min_region_area: int. Regions of fewer pixels are dropped. Defaults
            to `16`.
        seed: int. Seed of selective search's randomised ranking, which
            decides which regions survive the `max_regions` cap. Defaults to
            `0`.

    Returns:
        A tuple `(masks, boxes)`: bool `(R, H, W)` region masks, best
        ranked first, no two equal, and float32 `(R, 4)` their tight
        `"xyxy"` boxes in pixel edges.

    Examples:
        >>> image = np.zeros((32, 32, 3), np.uint8); image[8:20, 8:20] = 255
        >>> masks, boxes = propose_regions(image, scales=(50,))
        >>> any(np.array_equal(m, image[..., 0] > 0) for m in masks)
        True
    """
    from skimage.segmentation import felzenszwalb

    image = _check_image(image)
    max_regions = check_int(max_regions, "max_regions")
    if not scales or any(float(s) <= 0 for s in scales):
        raise ValueError(f"scales must be a non-empty tuple of positive numbers; got {scales!r}.")
    if not color_spaces or set(color_spaces) - set(COLOR_SPACES):
        raise ValueError(
            f"color_spaces must be a non-empty subset of {COLOR_SPACES}; got {color_spaces!r}."
        )
    rng = np.random.default_rng(seed)
    candidates = []  # (rank value, segmentation index, members)
    segmentations = []
    for scale in scales:
        labels = felzenszwalb(image, scale=float(scale), sigma=sigma, min_size=int(min_size))
        # felzenszwalb's ids are consecutive from 0.
        labels = np.unique(labels, return_inverse=True)[1].reshape(labels.shape)
        segmentations.append(labels)
        for color_space in color_spaces:
            members, positions = hierarchical_grouping(labels, image, color_space, similarities)
            values = positions * rng.uniform(size=len(positions))
            candidates.extend(
                (value, len(segmentations) - 1, m) for value, m in zip(values, members)
            )
    candidates.sort(key=lambda c: c[0])
    masks, seen = [], set()
    for _, index, members in candidates:
        labels = segmentations[index]
        lookup = np.zeros(int(labels.max()) + 1, bool)
        lookup[members] = True
        mask = lookup[labels]
        if mask.sum() < min_region_area:
            continue
        key = np.packbits(mask).tobytes()
        if key in seen:
            continue
        seen.add(key)
        masks.append(mask)
        if len(masks) == max_regions:
            break
    height, width = image.shape[:2]
    masks = np.stack(masks) if masks else np.zeros((0, height, width), bool)
    return masks, masks_to_boxes(masks)


def superpixel_refine(
    image, probability, threshold=0.5, segments=None, scale=100, sigma=0.8, min_size=20
):
    """Snaps a figure-ground probability map to Felzenszwalb superpixels.

    Each superpixel takes the mean of `probability` over its pixels; the
    refined mask is the union of the superpixels whose mean is above
    `threshold` (SDS's refinement projects its coarse figure-ground
    prediction onto superpixels the same way). With `probability` a binary
    region mask, this snaps a jagged region to the image's edges.

    Args:
        image: uint8 `(H, W, 3)` RGB image.
        probability: float `(H, W)` in `[0, 1]` (or a bool mask).
        threshold: float. Defaults to `0.5`.
        segments: int array `(H, W)` of superpixel ids, to reuse one
            over-segmentation for many regions; computed with
            `felzenszwalb(scale, sigma, min_size)` when `None`. Defaults to
            `None`.
        scale: float. Felzenszwalb scale. Defaults to `100`.
        sigma: float. Defaults to `0.8`.
        min_size: int. Defaults to `20`.

    Returns:
        bool `(H, W)` mask.

    Raises:
        ValueError: if `probability` or `segments` does not match the image
            size.
    """
    image = _check_image(image)
    probability = np.asarray(probability)
    if probability.shape != image.shape[:2]:
        raise ValueError(
            f"probability must be (H, W) = {image.shape[:2]}, the image's size; got "
            f"probability.shape={probability.shape}."
        )
    if segments is None:
        from skimage.segmentation import felzenszwalb

        segments = felzenszwalb(image, scale=float(scale), sigma=sigma, min_size=int(min_size))
    segments = np.asarray(segments)
    if segments.shape != image.shape[:2]:
        raise ValueError(
            f"segments must be (H, W) = {image.shape[:2]}, the image's size; got "
            f"segments.shape={segments.shape}."
        )
    flat = segments.ravel().astype(np.int64)
    counts = np.bincount(flat)
    totals = np.bincount(
        flat, weights=probability.astype(np.float64).ravel(), minlength=len(counts)
    )
    means = totals / np.maximum(counts, 1)
    return means[segments] > threshold


def mask_nms(masks, scores, iou_threshold=0.3, max_output_size=None):
    """Greedy non-maximum suppression by mask IoU (host, NumPy).

    Keeps the highest-scoring mask, drops every mask whose IoU with it is
    above `iou_threshold`, and repeats.

    Returns:
        int64 indices of the kept masks, highest score first.
    """
    scores = np.asarray(scores, np.float64)
    order = np.argsort(-scores, kind="stable")
    if len(order) == 0:
        return order.astype(np.int64)
    ious = mask_iou(masks[order], masks[order])
    keep, suppressed = [], np.zeros(len(order), bool)
    for i in range(len(order)):
        if suppressed[i]:
            continue
        keep.append(order[i])
        if max_output_size is not None and len(keep) >= max_output_size:
            break
        suppressed |= ious[i] > iou_threshold
    return np.asarray(keep, np.int64)
