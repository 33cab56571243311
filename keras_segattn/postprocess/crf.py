"""Fully connected CRF refinement (Krähenbühl & Koltun 2011) via pydensecrf2.

NumPy post-processing of one image at a time, run after the network on the
host: it is not part of the exported SavedModel or TFLite graph. DeconvNet
(Noh et al. 2015) and DeepLab refine their outputs this way.
"""

import numpy as np

from keras_segattn.postprocess.superpixels import _check_inputs

# The unary is -log(p); clipping keeps it finite for p == 0. 1e-5 (an energy
# of about 11.5) is what pydensecrf.utils.unary_from_softmax uses.
_PROBABILITY_FLOOR = 1e-5


def _densecrf_module():
    try:
        import pydensecrf.densecrf as densecrf
    except ImportError as error:
        raise ImportError(
            "dense_crf needs pydensecrf2 (Krähenbühl's dense CRF): pip install pydensecrf2==1.1"
        ) from error
    return densecrf


def _check_positive(name, value, allow_zero=False):
    if not np.isscalar(value) or not (value >= 0 if allow_zero else value > 0):
        expected = "a non-negative number" if allow_zero else "a positive number"
        raise ValueError(f"{name} must be {expected}; got {name}={value!r}.")


def dense_crf(
    image,
    probabilities,
    iterations=5,
    gaussian_sxy=3,
    gaussian_compat=3,
    bilateral_sxy=20,
    bilateral_srgb=13,
    bilateral_compat=5,
):
    """Refines per-pixel probabilities with a fully connected CRF.

    Mean-field inference in the dense CRF of Krähenbühl & Koltun (2011):
    the unary energy is `-log(probabilities)` (clipped at 1e-5), the
    pairwise terms are Potts models weighted by a Gaussian kernel on pixel
    positions (smoothness) and a bilateral kernel on positions and RGB
    colours (appearance). Runs on the host in NumPy, one image at a time;
    it is not part of the exported TFLite graph.

    The defaults are DeconvNet's released CRF settings (Gaussian `sxy=3`,
    compat 3; bilateral `sxy=20`, compat 5) except `bilateral_srgb`: 13
    (pydensecrf's example value) rather than DeconvNet's 3. With `srgb=3`,
    two pixels of one flat region whose colours differ by sensor or
    compression noise of std 3 per channel get a bilateral weight of about
    `exp(-3) = 0.05`, so the appearance term all but vanishes on video
    frames such as CamVid's; with 13 the weight is about 0.85. Pass
    `iterations=10, bilateral_srgb=3` to reproduce DeconvNet exactly, and
    tune on a validation set for a new dataset.

    Args:
        image: uint8 array `(H, W, 3)`. The RGB image for the bilateral
            kernel.
        probabilities: float array `(H, W, num_classes)`. Per-pixel class
            probabilities (after a softmax), at the size of `image`.
        iterations: int. Mean-field iterations. Defaults to `5`.
        gaussian_sxy: float. Spatial standard deviation, in pixels, of the
            smoothness kernel. Defaults to `3`.
        gaussian_compat: float. Potts weight of the smoothness kernel.
            Defaults to `3`.
        bilateral_sxy: float. Spatial standard deviation, in pixels, of the
            appearance kernel. Defaults to `20`.
        bilateral_srgb: float. Colour standard deviation, in uint8 levels,
            of the appearance kernel. Defaults to `13`.
        bilateral_compat: float. Potts weight of the appearance kernel;
            `0` leaves it out. Defaults to `5`.

    Returns:
        A tuple `(class_map, refined_probabilities)`: an int32 array
        `(H, W)` and a float32 array `(H, W, num_classes)` (the mean-field
        marginals, summing to 1 per pixel).

    Raises:
        ValueError: on inputs of the wrong shape, dtype or not summing to 1
            per pixel, or non-positive kernel parameters.
        ImportError: if pydensecrf2 is not installed.
    """
    image, probabilities = _check_inputs(image, probabilities)
    if isinstance(iterations, bool) or not isinstance(iterations, (int, np.integer)):
        raise ValueError(f"iterations must be an int; got iterations={iterations!r}.")
    _check_positive("iterations", iterations, allow_zero=True)
    _check_positive("gaussian_sxy", gaussian_sxy)
    _check_positive("gaussian_compat", gaussian_compat, allow_zero=True)
    _check_positive("bilateral_sxy", bilateral_sxy)
    _check_positive("bilateral_srgb", bilateral_srgb)
    _check_positive("bilateral_compat", bilateral_compat, allow_zero=True)
    densecrf = _densecrf_module()

    height, width, num_classes = probabilities.shape
    # pydensecrf wants C-contiguous float32 (num_classes, H * W) energies and
    # a C-contiguous uint8 (H, W, 3) image; it raises or reads garbage
    # otherwise (e.g. on a transposed or sliced view).
    probabilities = np.clip(probabilities.astype(np.float32), _PROBABILITY_FLOOR, 1.0)
    unary = np.ascontiguousarray(-np.log(probabilities).reshape(-1, num_classes).T)
    crf = densecrf.DenseCRF2D(width, height, num_classes)
    crf.setUnaryEnergy(unary)
    if gaussian_compat > 0:
        crf.addPairwiseGaussian(sxy=float(gaussian_sxy), compat=float(gaussian_compat))
    if bilateral_compat > 0:
        crf.addPairwiseBilateral(
            sxy=float(bilateral_sxy),
            srgb=float(bilateral_srgb),
            rgbim=np.ascontiguousarray(image),
            compat=float(bilateral_compat),
        )
    marginals = np.asarray(crf.inference(int(iterations)), np.float32)
    refined = np.ascontiguousarray(marginals.reshape(num_classes, height, width).transpose(1, 2, 0))
    return np.argmax(refined, axis=-1).astype(np.int32), refined
