"""Simultaneous Detection and Segmentation (Hariharan, Arbeláez, Girshick and
Malik, ECCV 2014).

SDS detects objects as *regions*: bottom-up candidate segments are scored
by a CNN that looks at each region twice, and the winners are refined.

1. **Proposals** (`regions.propose_regions`, host NumPy): the paper used
   MCG's ~2000 regions per image; here selective-search-style hierarchical
   grouping of Felzenszwalb segments (see `regions`).
2. **Features** (the `sds` network, exportable): each region's bounding box
   is warped to `crop_size x crop_size` (R-CNN's anisotropic warp, without
   its 16-pixel context padding) and fed to two CNNs of the same
   architecture: the *box* pathway sees the crop; the *region* pathway sees
   the crop with every pixel outside the region set to the mean image,
   which is 0 after the network's mean subtraction (the region mask is an
   input and the masking happens inside, so the exported model needs
   nothing else). Their fc7 features are concatenated. The paper's "C"
   network has two separate pathways fine-tuned jointly: `shared=False`
   (default) builds two sub-models, `box_network` and `region_network`;
   `shared=True` one sub-model, `network`, applied to both inputs.
3. **Scores**: the paper trains per-class linear SVMs on the concatenated
   fc7 features; this model has a softmax over the `num_classes` (N + 1,
   background 0) trained with cross-entropy in the same `model.fit`, so
   that one training run yields the scorer.
4. **Non-maximum suppression** per class by *region (mask) IoU*, as the
   paper, on the host (`regions.mask_nms`; threshold 0.3 by default, the
   value R-CNN used for boxes; the paper's region-NMS threshold is not
   confirmed here).
5. **Refinement**: the paper predicts a coarse 10 x 10 figure-ground grid
   over each detection's box from the CNN features and the region's own
   mask projected onto that grid, projects the prediction onto
   superpixels and classifies superpixels with both. Here: the
   `figure_ground` output of the network (one logistic regression per grid
   cell over [fc7 box, fc7 region, the region mask averaged over the grid
   cells]) is pasted into the box bilinearly (`paste_box_masks`), averaged
   with the original region mask (`refine_weight` on the prediction), and
   every Felzenszwalb superpixel whose mean of that map exceeds 0.5 is
   foreground (`regions.superpixel_refine`). Exactly: `mask = mean_s(w *
   paste(fg) + (1 - w) * region) > 0.5` per superpixel `s` of one
   Felzenszwalb over-segmentation of the image (`REFINE_SUPERPIXELS`,
   finer than the proposals' segments); a detection left empty keeps its
   region. The figure-ground head is trained jointly with the classifier
   (the paper trained the refinement separately, on fixed features), and
   the paper learns the final superpixel classifier where this fixes its
   weights. The grid covers the region's box exactly (no enlargement).

`sds_detect` runs 1-5 on one image and returns the per-image dict
`keras_segattn.evaluation.instance.evaluate_instances` takes.
`sds_examples` builds training examples from an instance dataset (regions
with mask IoU >= 0.5 with a ground-truth instance are positives of its
class, < 0.3 background, in between unused; ground-truth masks are added
as positives as in R-CNN), and `train_sds` is a short CPU run on the
shapes.
"""

import dataclasses

import keras
import numpy as np
import tensorflow as tf

from keras_segattn.core.validation import check_int
from keras_segattn.layers import ImagePreprocessing, roi_align
from keras_segattn.models.backbones.vgg import (
    VGG16_BLOCKS,
    scaled,
    transplant_vgg16_fc,
    vgg16_encoder,
)
from keras_segattn.models.common import load_saved_weights
from keras_segattn.models.instance.common import (
    check_boxes,
    check_image_batch,
    pad_detections,
    paste_box_masks,
)
from keras_segattn.models.instance.regions import (
    _check_image,
    check_masks,
    mask_nms,
    masks_to_boxes,
    propose_regions,
    superpixel_refine,
)
from keras_segattn.models.registry import register_model

PAPER = (
    "Hariharan, Arbeláez, Girshick and Malik, Simultaneous Detection and Segmentation, ECCV 2014"
)
TINY = {"num_classes": 3, "crop_size": 32, "width": 0.0625, "fc_units": 8, "grid_size": 4}
# Five 2x2 poolings: the smallest crop that leaves a pool5 cell.
MIN_CROP = 2 ** len(VGG16_BLOCKS)
# Felzenszwalb superpixels of the refinement. Finer than the proposals' own
# segments, so that they can cut along the object where a proposal leaked:
# on 40 held-out ("val") shapes images, scale 25 / min_size 10 raised the
# mask AP of a trained model from 0.67 (no refinement) to 0.78, while scale
# 100 / min_size 20 lowered it to 0.66.
REFINE_SUPERPIXELS = {"scale": 25.0, "sigma": 0.8, "min_size": 10}


def area_weights(size, grid_size):
    """`(grid_size, size)`: the share of pixel `s` in grid cell `g`, rows
    summing to 1 (exact area averaging of `size` pixels into `grid_size`
    equal cells)."""
    edges = np.arange(grid_size + 1) * size / grid_size
    pixels = np.arange(size)
    overlap = np.clip(
        np.minimum(edges[1:, None], pixels[None, :] + 1) - np.maximum(edges[:-1, None], pixels),
        0.0,
        None,
    )
    return overlap / overlap.sum(axis=1, keepdims=True)


@keras.saving.register_keras_serializable(package="keras_segattn")
class GridAverage(keras.layers.Layer):
    """Averages `(B, S, S)` maps over a `grid_size x grid_size` grid of equal cells.

    SDS's projection of a region mask onto the refinement grid: cell `(i,
    j)` is the mean of the map over its area (pixels split between cells
    count in proportion). Two matrix products, builtin in TFLite.

    Args:
        grid_size: int. Cells per side.
    """

    def __init__(self, grid_size, **kwargs):
        super().__init__(**kwargs)
        self.grid_size = check_int(grid_size, "grid_size")

    def build(self, input_shape):
        height, width = tuple(input_shape)[1:3]
        if height is None or width is None:
            raise ValueError(f"GridAverage needs a static size; got input shape {input_shape}.")
        self._rows = area_weights(height, self.grid_size).astype("float32")
        self._cols = area_weights(width, self.grid_size).astype("float32")

    def call(self, inputs):
        height, width = self._rows.shape[1], self._cols.shape[1]
        grid = self.grid_size
        rows = tf.constant(self._rows.T, inputs.dtype)  # (H, G)
        cols = tf.constant(self._cols.T, inputs.dtype)  # (W, G)
        # (B * H, W) @ (W, G), then the rows the same way after a transpose.
        x = tf.matmul(tf.reshape(inputs, [-1, width]), cols)
        x = tf.transpose(tf.reshape(x, [-1, height, grid]), [0, 2, 1])
        x = tf.matmul(tf.reshape(x, [-1, height]), rows)
        return tf.transpose(tf.reshape(x, [-1, grid, grid]), [0, 2, 1])

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.grid_size, self.grid_size)

    def get_config(self):
        config = super().get_config()
        config.update({"grid_size": self.grid_size})
        return config


def sds_pathway(crop_size, width=1.0, fc_units=4096, dropout=0.5, name="network"):
    """One SDS pathway: VGG16's convolutions, then fc6 and fc7 (ReLU, dropout).

    Takes preprocessed `(B, crop_size, crop_size, 3)` crops, returns `(B,
    fc_units)` fc7 features. Layer names follow `keras.applications.VGG16`
    (`block1_conv1` ...; `fc6`/`fc7` for its `fc1`/`fc2`).
    """
    inputs = keras.Input((crop_size, crop_size, 3), name=f"{name}_crops")
    x = vgg16_encoder(inputs, width)["pool5"]
    x = keras.layers.Flatten(name="flatten")(x)
    for layer in ("fc6", "fc7"):
        x = keras.layers.Dense(fc_units, activation="relu", name=layer)(x)
        if dropout:
            x = keras.layers.Dropout(dropout, name=f"{layer}_dropout")(x)
    return keras.Model(inputs, x, name=name)


def _pathways(model):
    names = ("box_network", "region_network", "network")
    return [layer for layer in model.layers if layer.name in names]


def _load_weights(model, weights, width, crop_size, fc_units):
    if weights is None:
        return model
    if isinstance(weights, str) and weights == "imagenet":
        if width != 1.0 or crop_size != 224 or fc_units != 4096:
            raise ValueError(
                "weights='imagenet' needs VGG16's own shapes: width=1.0, crop_size=224 and "
                f"fc_units=4096; got width={width!r}, crop_size={crop_size!r}, "
                f"fc_units={fc_units!r}. Use weights=None for small variants."
            )
        source = keras.applications.VGG16(weights="imagenet", include_top=True)
        for pathway in _pathways(model):
            for layer in source.layers:
                if layer.name.startswith("block") and layer.weights:
                    pathway.get_layer(layer.name).set_weights(layer.get_weights())
            transplant_vgg16_fc(source, pathway)
        return model
    return load_saved_weights(model, weights)


@keras.saving.register_keras_serializable(package="keras_segattn")
class SDSNetwork(keras.Model):
    """The `sds` network (built by `sds`): region crops in, class
    probabilities and figure-ground grids out, plus `detect`, the whole
    detector around it on the host.

    Attributes:
        crop_size: int. The side of its box and region crops.
        grid_size: int. The side of its figure-ground grid.
        num_classes: int. Classes, the background included.
    """

    # Built as a functional model: `SDSNetwork(inputs, outputs, name=...)`;
    # a `.keras` file revives it the same way.

    @property
    def crop_size(self):
        return int(self.inputs[0].shape[1])

    @property
    def grid_size(self):
        return int(self.outputs[1].shape[1])

    @property
    def num_classes(self):
        return int(self.outputs[0].shape[-1])

    def detect(self, images, **options):
        """Instances of a batch of images: `sds_detect` on each (proposals,
        the network, NMS, refinement; host side), padded.

        Args:
            images: uint8 `(batch, H, W, 3)` RGB pixels.
            **options: `sds_detect`'s options (`score_threshold`,
                `max_detections`, `refine`, ...).

        Returns:
            The structure every instance model's `detect` returns
            (`models.instance.common.pad_detections`): `boxes`, `scores`,
            `classes`, `masks` `(batch, D, H, W)` and `num_detections`,
            as NumPy arrays.
        """
        images = check_image_batch(images)
        found = [sds_detect(self, image, **options) for image in images]
        return pad_detections(found, images.shape)


@register_model("sds", task="instance", paper=PAPER, tiny=TINY, serving_task="region_scoring")
def sds(
    num_classes=21,
    crop_size=224,
    width=1.0,
    fc_units=None,
    shared=False,
    grid_size=10,
    dropout=0.5,
    weights=None,
    name="sds",
):
    """Builds SDS's region classifier: box and region-foreground CNN pathways.

    See the module docstring. The network scores crops; `sds_detect` does
    the host-side rest (proposals, cropping, NMS, refinement).

    Args:
        num_classes: int. Classes including the background (class 0).
            Defaults to `21` (VOC).
        crop_size: int. Side of the warped crops, a multiple of 32 at least
            32. Defaults to `224` (the paper's AlexNet used 227).
        width: float. Channel multiplier of the VGG16 pathways (the paper
            used AlexNet; VGG16 is what the package's backbones provide).
            Defaults to `1.0`.
        fc_units: int or `None`. Width of fc6 and fc7; `None` is `4096 *
            width`. Defaults to `None`.
        shared: bool. One CNN for both pathways (`True`) or two of the same
            architecture, as the paper's jointly fine-tuned "C" network
            (`False`). Defaults to `False`.
        grid_size: int. Side of the refinement's figure-ground grid.
            Defaults to `10`, the paper's.
        dropout: float. Dropout after fc6 and fc7. Defaults to `0.5`.
        weights: `None`, `"imagenet"` (both pathways start from VGG16's
            ImageNet weights, as the paper's from ImageNet-trained R-CNN;
            needs `width=1.0`, `crop_size=224`, `fc_units=4096`) or the
            path of a `.weights.h5` / `.keras` file of this model. Defaults
            to `None`.
        name: str. Defaults to `"sds"`.

    Returns:
        An `SDSNetwork` with inputs `box_crops` `(B, S, S, 3)` (raw RGB
        pixels in `[0, 255]` of each region's box, warped to `S x S`) and
        `region_masks` `(B, S, S)` (the region's mask over the same crop,
        in `[0, 1]`), and outputs `[probabilities, figure_ground]`:
        `(B, num_classes)` softmax class probabilities (background first)
        and `(B, grid_size, grid_size)` sigmoid figure-ground
        probabilities over the box.

    Examples:

    ```python
    model = sds(num_classes=4, crop_size=32, width=0.125, fc_units=64)
    probabilities, figure_ground = model([box_crops, region_masks])
    ```
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an int >= 2; got num_classes={num_classes!r}.")
    if not (isinstance(width, (int, float)) and 0 < width <= 4):
        raise ValueError(f"width must be a float in (0, 4]; got width={width!r}.")
    if (
        isinstance(crop_size, bool)
        or not isinstance(crop_size, int)
        or crop_size < MIN_CROP
        or crop_size % MIN_CROP
    ):
        raise ValueError(
            f"crop_size must be a multiple of {MIN_CROP} (VGG16's five poolings), at least "
            f"{MIN_CROP}; got crop_size={crop_size!r}."
        )
    if fc_units is None:
        fc_units = scaled(4096, width)
    if isinstance(fc_units, bool) or not isinstance(fc_units, int) or fc_units < 1:
        raise ValueError(f"fc_units must be a positive int; got fc_units={fc_units!r}.")
    if not 0 <= dropout < 1:
        raise ValueError(f"dropout must be in [0, 1); got dropout={dropout!r}.")

    box_crops = keras.Input((crop_size, crop_size, 3), name="box_crops")
    region_masks = keras.Input((crop_size, crop_size), name="region_masks")

    # === Two views of the box ===
    x = ImagePreprocessing("caffe", min_size=crop_size, name="preprocessing")(box_crops)
    mask = keras.layers.Reshape((crop_size, crop_size, 1), name="mask_channel")(region_masks)
    # Caffe preprocessing subtracts the mean image colour: 0 is the mean.
    foreground = keras.layers.Multiply(name="region_foreground")([x, mask])

    # === Pathways ===
    if shared:
        network = sds_pathway(crop_size, width, fc_units, dropout, name="network")
        box_features, region_features = network(x), network(foreground)
    else:
        box_features = sds_pathway(crop_size, width, fc_units, dropout, name="box_network")(x)
        region_features = sds_pathway(crop_size, width, fc_units, dropout, name="region_network")(
            foreground
        )
    features = keras.layers.Concatenate(name="box_region_features")([box_features, region_features])

    # === Heads ===
    logits = keras.layers.Dense(num_classes, name="classifier")(features)
    probabilities = keras.layers.Activation("softmax", dtype="float32", name="probabilities")(
        logits
    )
    projected = GridAverage(grid_size, name="mask_on_grid")(region_masks)
    projected = keras.layers.Flatten(name="mask_on_grid_flat")(projected)
    refinement = keras.layers.Concatenate(name="refinement_features")([features, projected])
    cells = keras.layers.Dense(grid_size * grid_size, name="figure_ground_classifier")(refinement)
    cells = keras.layers.Reshape((grid_size, grid_size), name="figure_ground_grid")(cells)
    figure_ground = keras.layers.Activation("sigmoid", dtype="float32", name="figure_ground")(cells)
    model = SDSNetwork([box_crops, region_masks], [probabilities, figure_ground], name=name)
    return _load_weights(model, weights, width, crop_size, fc_units)


# ---------------------------------------------------------------------------
# Host side: crops, detection, refinement
# ---------------------------------------------------------------------------


def crop_regions(image, masks, boxes, crop_size, chunk=64):
    """Warps each region's box of the image, and its mask, to `crop_size`.

    Bilinear RoIAlign sampling (2 x 2 samples per output pixel) of the image
    and of the region mask over the box: R-CNN's anisotropic warp without
    context padding. Host side (TensorFlow eager), one image.

    Args:
        image: `(H, W, 3)` RGB pixels.
        masks: bool `(R, H, W)` region masks.
        boxes: `(R, 4)` `"xyxy"` pixel boxes of the regions.
        crop_size: int.
        chunk: int. Regions resampled at once (bounds memory: `chunk x H x
            W` floats). Defaults to `64`.

    Returns:
        `(box_crops, region_masks)`: uint8 `(R, S, S, 3)` and float32 `(R,
        S, S)` in `[0, 1]`.
    """
    image = np.asarray(image, np.float32)
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    count = len(boxes)
    if count == 0:
        return (
            np.zeros((0, crop_size, crop_size, 3), np.uint8),
            np.zeros((0, crop_size, crop_size), np.float32),
        )
    crops = roi_align(image[None], boxes[None], crop_size, sampling_ratio=2, spatial_scale=1.0)
    crops = np.clip(np.round(crops.numpy()[0]), 0, 255).astype(np.uint8)
    crop_masks = []
    for start in range(0, count, chunk):
        part = np.asarray(masks[start : start + chunk], np.float32)[..., None]
        sampled = roi_align(
            part, boxes[start : start + chunk, None], crop_size, sampling_ratio=2, spatial_scale=1.0
        )
        crop_masks.append(sampled.numpy()[:, 0, :, :, 0])
    return crops, np.concatenate(crop_masks)


@dataclasses.dataclass(frozen=True)
class SDSParts:
    """What the host-side code around an SDS network needs of it."""

    crop_size: int  # the side of its box and region crops
    grid_size: int  # the side of its figure-ground grid
    num_classes: int  # background included


def sds_parts(model, argument="model"):
    """The `SDSParts` of an `sds` network (its `SDSNetwork` attributes).

    Raises:
        ValueError: naming `argument`, if `model` is not an `sds` network.
    """
    if not isinstance(model, SDSNetwork):
        raise ValueError(f"{argument} must be an sds model (see sds.sds); got {model!r}.")
    return SDSParts(model.crop_size, model.grid_size, model.num_classes)


def sds_detect(
    model,
    image,
    image_id=0,
    proposals=None,
    proposal_kwargs=None,
    score_threshold=0.05,
    nms_iou=0.3,
    max_detections=100,
    refine=True,
    refine_weight=0.5,
    superpixel_kwargs=None,
    batch_size=128,
):
    """Runs SDS end to end on one image (host side around the network).

    Proposals (`propose_regions` unless given), box and region crops
    (`crop_regions`), the network, per-class mask-IoU NMS (`mask_nms`), the
    `max_detections` best detections over all classes, and superpixel
    refinement (module docstring, step 5).

    Args:
        model: an `sds` model.
        image: uint8 `(H, W, 3)` RGB image.
        image_id: int. Copied into the result. Defaults to `0`.
        proposals: `(masks, boxes)` or `None`: region masks `(R, H, W)` and
            their boxes `(R, 4)` inside the image. Defaults to `None`
            (computed with `proposal_kwargs`).
        proposal_kwargs: dict of `propose_regions` options. Defaults to
            `None`.
        score_threshold: float. Class probabilities at or below it are not
            detections. Defaults to `0.05`.
        nms_iou: float. Mask IoU above which a lower-scoring region of the
            same class is suppressed. Defaults to `0.3`.
        max_detections: int. Defaults to `100`.
        refine: bool. Apply the superpixel refinement. Defaults to `True`.
        refine_weight: float in `[0, 1]`. Weight of the predicted
            figure-ground map against the region mask. Defaults to `0.5`.
        superpixel_kwargs: dict. Felzenszwalb options of the refinement's
            superpixels (`scale`, `sigma`, `min_size`), overriding
            `REFINE_SUPERPIXELS` (`scale=25, sigma=0.8, min_size=10`).
            Defaults to `None`.
        batch_size: int. Crops per network call. Defaults to `128`.

    Returns:
        A dict `image_id`, `boxes` `(K, 4)`, `scores` `(K,)`, `labels`
        `(K,)`, `masks` uint8 `(K, H, W)`, and `region_indices` `(K,)`, the
        proposal each detection came from.

    Raises:
        ValueError: for an image that is not uint8 `(H, W, 3)`, proposal
            masks of another size, or proposal boxes outside the image or
            degenerate.
    """
    image = _check_image(image)
    height, width = image.shape[:2]
    if proposals is None:
        masks, boxes = propose_regions(image, **(proposal_kwargs or {}))
    else:
        masks, boxes = proposals
        masks = check_masks(masks, image.shape, name="proposal masks")
        boxes = check_boxes(boxes, image.shape, name="proposal boxes")
        if len(masks) != len(boxes):
            raise ValueError(
                f"proposals need one box per mask; got {len(masks)} masks and {len(boxes)} boxes."
            )
    if not 0.0 <= refine_weight <= 1.0:
        raise ValueError(f"refine_weight must be in [0, 1]; got refine_weight={refine_weight!r}.")
    empty = {
        "image_id": image_id,
        "boxes": np.zeros((0, 4), np.float32),
        "scores": np.zeros(0, np.float32),
        "labels": np.zeros(0, np.int32),
        "masks": np.zeros((0, height, width), np.uint8),
        "region_indices": np.zeros(0, np.int64),
    }
    if len(masks) == 0:
        return empty
    crops, crop_masks = crop_regions(image, masks, boxes, sds_parts(model).crop_size)
    probabilities, figure_ground = model.predict(
        [crops.astype(np.float32), crop_masks], batch_size=batch_size, verbose=0
    )
    found = []  # (score, class, region)
    for label in range(1, probabilities.shape[1]):
        scores = probabilities[:, label]
        candidates = np.flatnonzero(scores > score_threshold)
        if candidates.size == 0:
            continue
        kept = candidates[mask_nms(masks[candidates], scores[candidates], nms_iou)]
        found.extend((float(scores[r]), label, int(r)) for r in kept)
    if not found:
        return empty
    found.sort(key=lambda f: -f[0])
    found = found[:max_detections]
    scores = np.array([f[0] for f in found], np.float32)
    labels = np.array([f[1] for f in found], np.int32)
    regions = np.array([f[2] for f in found], np.int64)
    final = masks[regions]
    if refine:
        from skimage.segmentation import felzenszwalb

        options = {**REFINE_SUPERPIXELS, **(superpixel_kwargs or {})}
        segments = felzenszwalb(image, **options)
        pasted = paste_box_masks(figure_ground[regions], boxes[regions], (height, width))
        refined = []
        for mask, coarse in zip(final, pasted):
            blended = refine_weight * coarse + (1.0 - refine_weight) * mask
            new = superpixel_refine(image, blended, segments=segments)
            refined.append(new if new.any() else mask)
        final = np.stack(refined)
    return {
        "image_id": image_id,
        "boxes": masks_to_boxes(final),
        "scores": scores,
        "labels": labels,
        "masks": final.astype(np.uint8),
        "region_indices": regions,
    }
