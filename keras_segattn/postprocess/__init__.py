"""Post-processing of predicted class probabilities: superpixels and dense
CRF; and the object proposals of DeconvNet's proposal-wise inference.

Host-side NumPy code run after the network, one image at a time; none of it
is part of the exported SavedModel or TFLite graph.
"""

import numpy as np

from keras_segattn.postprocess.crf import dense_crf
from keras_segattn.postprocess.proposals import selective_search
from keras_segattn.postprocess.superpixels import (
    SEGMENTATION_DEFAULTS,
    _check_inputs,
    segment,
    superpixel_vote,
)

METHODS = ("superpixels", "crf", None)


def refine_batch(images, probabilities, method="superpixels", **kwargs):
    """Class maps of a batch, refined image by image.

    A convenience loop for evaluation code: `superpixel_vote` or
    `dense_crf` on each image, or a plain argmax.

    Args:
        images: uint8 array (or tensor) `(B, H, W, 3)`.
        probabilities: float array (or tensor) `(B, H, W, num_classes)`.
            Per-pixel class probabilities (after a softmax).
        method: `"superpixels"`, `"crf"` or `None` (argmax, no refinement).
            Defaults to `"superpixels"`.
        **kwargs: passed to `dense_crf` (its kernel parameters) or to
            `superpixel_vote` (the skimage segmentation options, plus
            `segmentation_method`: `"felzenszwalb"` or `"slic"`, its
            `method` argument, renamed as `method` is taken here).

    Returns:
        int32 array `(B, H, W)` of class ids.

    Raises:
        ValueError: on an unknown `method`, batches of different sizes,
            keyword arguments with `method=None`, or invalid images or
            probabilities.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}; got method={method!r}.")
    images = np.asarray(images)
    probabilities = np.asarray(probabilities)
    if images.ndim != 4 or probabilities.ndim != 4 or len(images) != len(probabilities):
        raise ValueError(
            "images and probabilities must be (B, H, W, 3) and (B, H, W, num_classes) "
            f"with the same B; got images.shape={images.shape} and "
            f"probabilities.shape={probabilities.shape}."
        )
    if method is None and kwargs:
        raise ValueError(f"method=None takes no options; got {sorted(kwargs)}.")
    class_maps = []
    for image, probability in zip(images, probabilities):
        if method == "superpixels":
            options = dict(kwargs)
            segmentation_method = options.pop("segmentation_method", "felzenszwalb")
            class_map, _ = superpixel_vote(image, probability, segmentation_method, **options)
        elif method == "crf":
            class_map, _ = dense_crf(image, probability, **kwargs)
        else:
            # Validated like the other methods, so a batch of logits fails
            # the same way whatever the method.
            _, probability = _check_inputs(image, probability)
            class_map = np.argmax(probability, axis=-1).astype(np.int32)
        class_maps.append(class_map)
    if not class_maps:
        return np.zeros(images.shape[:3], np.int32)
    return np.stack(class_maps)


__all__ = [
    "METHODS",
    "SEGMENTATION_DEFAULTS",
    "dense_crf",
    "refine_batch",
    "segment",
    "selective_search",
    "superpixel_vote",
]
