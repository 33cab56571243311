"""Farabet-style superpixel voting over predicted class distributions.

NumPy post-processing of one image at a time, run after the network on the
host: it is not part of the exported SavedModel or TFLite graph.
"""

import numpy as np
from skimage import segmentation

# Over-segmentations of a ~360x480 street scene (CamVid size): felzenszwalb
# at scale=40 gives about 400 segments and slic about 300-400 on such
# images, small enough that poles and signs keep segments of their own yet
# large enough to average out pixel noise. scale=40 beat scale=100 (about
# 250 segments) by 1.4 mean IoU when voting over the 30-epoch multiscale
# ConvNet on the CamVid test frames, and by 0.6 over a 4-epoch one, and is
# faster (docs/speed.md, "Host-side work"). skimage's own felzenszwalb defaults
# (scale=1, min_size=20) give over 2000 tiny segments, which barely smooth
# anything.
SEGMENTATION_DEFAULTS = {
    "felzenszwalb": {"scale": 40, "sigma": 0.8, "min_size": 50},
    "slic": {"n_segments": 400, "compactness": 10.0, "start_label": 0},
}

# Softmax outputs sum to 1 up to float32 rounding; bilinear resizing keeps
# the sum. A larger gap means scores that are not probabilities.
_SUM_TOLERANCE = 1e-3


def _check_inputs(image, probabilities):
    """Validated `(image, probabilities)` as uint8 and float arrays.

    Raises:
        ValueError: if `image` is not `(H, W, 3)` uint8, if `probabilities`
            is not a float `(H, W, C)` array of the same height and width,
            or if it is not a distribution per pixel.
    """
    image = np.asarray(image)
    probabilities = np.asarray(probabilities)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(
            f"image must be an (H, W, 3) RGB array of one image; got image.shape={image.shape}."
        )
    if image.dtype != np.uint8:
        raise ValueError(
            f"image must be uint8 in [0, 255]; got image.dtype={image.dtype}. "
            "Convert with np.clip(image, 0, 255).astype(np.uint8)."
        )
    if probabilities.ndim != 3:
        raise ValueError(
            "probabilities must be (H, W, num_classes) for one image; "
            f"got probabilities.shape={probabilities.shape}."
        )
    if not np.issubdtype(probabilities.dtype, np.floating):
        raise ValueError(
            f"probabilities must be a float array; got probabilities.dtype={probabilities.dtype}."
        )
    if probabilities.shape[:2] != image.shape[:2] or probabilities.shape[-1] < 1:
        raise ValueError(
            "probabilities must be (H, W, num_classes) at the size of image; got "
            f"probabilities.shape={probabilities.shape} for image.shape={image.shape}. "
            "Resize the scores to the image (bilinearly) before post-processing."
        )
    if not np.all(np.isfinite(probabilities)):
        raise ValueError("probabilities contains NaN or infinite values.")
    sums = probabilities.sum(axis=-1, dtype=np.float64)
    worst = float(np.max(np.abs(sums - 1.0))) if sums.size else 0.0
    if probabilities.min(initial=0.0) < 0 or worst > _SUM_TOLERANCE:
        raise ValueError(
            "probabilities must be non-negative and sum to 1 over the last axis; got "
            f"min={float(probabilities.min(initial=0.0)):.4g} and sums off by up to "
            f"{worst:.4g}. These look like logits: apply a softmax over the classes first."
        )
    return image, probabilities


def segment(image, method="felzenszwalb", **segmentation_kwargs):
    """Superpixels of one RGB image.

    Args:
        image: uint8 array `(H, W, 3)`.
        method: str. `"felzenszwalb"` (graph-based, follows colour edges,
            irregular sizes) or `"slic"` (k-means in Lab + position, compact
            and regular). Defaults to `"felzenszwalb"`.
        **segmentation_kwargs: passed to `skimage.segmentation.felzenszwalb`
            or `skimage.segmentation.slic`, overriding
            `SEGMENTATION_DEFAULTS[method]`.

    Returns:
        int32 array `(H, W)` of segment ids.
    """
    if method not in SEGMENTATION_DEFAULTS:
        raise ValueError(
            f"method must be one of {sorted(SEGMENTATION_DEFAULTS)}; got method={method!r}."
        )
    options = {**SEGMENTATION_DEFAULTS[method], **segmentation_kwargs}
    segment_fn = getattr(segmentation, method)
    return np.asarray(segment_fn(image, **options), np.int32)


def superpixel_vote(image, probabilities, method="felzenszwalb", **segmentation_kwargs):
    """Labels each superpixel with the argmax of its mean class distribution.

    The superpixel step of Farabet et al. (TPAMI 2013): the image is
    over-segmented, the predicted distributions are averaged inside each
    segment, and every pixel of the segment takes the winning class. Runs
    on the host in NumPy, one image at a time; it is not part of the
    exported TFLite graph.

    Args:
        image: uint8 array `(H, W, 3)`. The RGB image the superpixels are
            computed on.
        probabilities: float array `(H, W, num_classes)`. Per-pixel class
            probabilities (after a softmax), at the size of `image`.
        method: str. `"felzenszwalb"` or `"slic"`. Defaults to
            `"felzenszwalb"`.
        **segmentation_kwargs: options of the skimage segmentation function,
            overriding `SEGMENTATION_DEFAULTS[method]` (felzenszwalb:
            `scale=40, sigma=0.8, min_size=50`; slic: `n_segments=400,
            compactness=10.0, start_label=0`).

    Returns:
        A tuple `(class_map, segments)`: int32 arrays `(H, W)`, the voted
        classes (constant within each segment) and the segment ids.

    Raises:
        ValueError: on an unknown `method`, or inputs of the wrong shape,
            dtype or not summing to 1 per pixel.
    """
    image, probabilities = _check_inputs(image, probabilities)
    segments = segment(image, method, **segmentation_kwargs)
    num_segments = int(segments.max()) + 1
    num_classes = probabilities.shape[-1]
    flat_segments = segments.ravel()
    flat_probabilities = probabilities.reshape(-1, num_classes).astype(np.float64)
    # Per-segment sums, one bincount per class (vectorised over pixels). The
    # argmax of the sum is that of the mean: the pixel count is the same for
    # every class of a segment.
    totals = np.stack(
        [
            np.bincount(flat_segments, weights=flat_probabilities[:, c], minlength=num_segments)
            for c in range(num_classes)
        ],
        axis=-1,
    )
    segment_classes = np.argmax(totals, axis=-1).astype(np.int32)
    return segment_classes[segments], segments
