"""Procedural "shapes" dataset: coloured circles, squares and triangles.

Needs no download, is deterministic by seed, and carries every annotation
the package uses (semantic masks, instances, boxes, captions), so models and
pipelines can be exercised end to end in seconds.
"""

import numpy as np
import tensorflow as tf

from keras_segattn.core.instances import box_iou
from keras_segattn.core.validation import check_size

CLASS_NAMES = ("background", "circle", "square", "triangle")
NUM_CLASSES = 4

PALETTE = {
    "red": (220, 30, 30),
    "green": (30, 200, 40),
    "blue": (40, 70, 235),
    "yellow": (235, 220, 30),
    "magenta": (220, 40, 220),
    "cyan": (30, 220, 225),
    "white": (245, 245, 245),
}
_COLOR_NAMES = tuple(PALETTE)
_COLORS = np.array([PALETTE[n] for n in _COLOR_NAMES], np.float32)
# Distance in RGB below which a shape colour counts as too close to the
# background under it.
_MIN_CONTRAST = 130.0
_MIN_VISIBLE_PIXELS = 20


def _background(rng, yy, xx):
    h, w = yy.shape
    # Muted, low-saturation colours keep every palette colour readable.
    grey = rng.uniform(50, 140, size=2)
    colors = grey[:, None] + rng.uniform(-25, 25, size=(2, 3))
    angle = rng.uniform(0, 2 * np.pi)
    t = np.cos(angle) * xx / w + np.sin(angle) * yy / h
    t = (t - t.min()) / max(t.max() - t.min(), 1e-6)
    image = colors[0] + t[..., None] * (colors[1] - colors[0])
    if rng.random() < 0.5:
        image += rng.normal(0, 8, size=image.shape)
    else:
        period = rng.uniform(4, 12)
        phase = np.cos(angle + 1.0) * xx + np.sin(angle + 1.0) * yy
        image += 12 * np.sin(2 * np.pi * phase / period)[..., None]
    return image


def _shape_mask(kind, cy, cx, extent, yy, xx):
    half = extent / 2.0
    if kind == 1:
        return (yy - cy) ** 2 + (xx - cx) ** 2 <= half**2
    if kind == 2:
        return (np.abs(yy - cy) <= half) & (np.abs(xx - cx) <= half)
    # Upright isosceles triangle: width grows linearly from apex to base.
    depth = yy - (cy - half)
    return (depth >= 0) & (yy <= cy + half) & (np.abs(xx - cx) <= depth / 2.0)


def _place(rng, h, w, taken):
    """Samples an extent and centre whose box overlaps earlier ones little."""
    lo = max(min(h, w) / 6.0, 8.0)
    hi = max(min(h, w) / 3.0, lo + 1.0)
    for _ in range(10):
        extent = rng.uniform(lo, hi)
        half = extent / 2.0
        cy = rng.uniform(half, h - half)
        cx = rng.uniform(half, w - half)
        box = (cy - half, cx - half, cy + half, cx + half)
        if all(box_iou(box, other) < 0.3 for other in taken):
            break
    return extent, cy, cx, box


def _visible(masks):
    """Visible part of each mask when later masks are drawn on top."""
    covered = np.zeros_like(masks[0])
    visible = []
    for mask in masks[::-1]:
        visible.append(mask & ~covered)
        covered |= mask
    return visible[::-1]


def _caption(colors, kinds, centres):
    names = [f"a {_COLOR_NAMES[c]} {CLASS_NAMES[k]}" for c, k in zip(colors, kinds)]
    if len(names) == 1:
        return names[0]
    dy = centres[0][0] - centres[1][0]
    dx = centres[0][1] - centres[1][1]
    if abs(dy) >= abs(dx):
        relation = "above" if dy < 0 else "below"
    else:
        relation = "left of" if dx < 0 else "right of"
    caption = f"{names[0]} {relation} {names[1]}"
    if len(names) > 2:
        caption += " and " + " and ".join(names[2:])
    return caption


def generate_shapes(num_images, image_size=64, max_instances=3, seed=0):
    """Generates images of coloured shapes with full annotations.

    Each image has a smooth colour gradient background with noise or
    stripes and 1 to `max_instances` filled shapes whose class is their
    kind (circle, square, triangle) and whose colour, from `PALETTE`,
    contrasts with the background. Later shapes occlude earlier ones;
    instances are the visible parts, and an instance left with fewer
    than 20 visible pixels is removed from the image altogether.

    Args:
        num_images: int. Number of images to generate.
        image_size: int or tuple `(height, width)`. Image size, at least
            24 per side. Defaults to `64`.
        max_instances: int. Maximum shapes per image, also the padded
            length of the instance arrays. Defaults to `3`.
        seed: int. Seed of the numpy `Generator`; the same seed gives
            identical arrays. Defaults to `0`.

    Returns:
        A dict of numpy arrays: `images` `(N, H, W, 3)` uint8,
        `segmentation_masks` `(N, H, W)` int32 with ids from `CLASS_NAMES`,
        `instance_masks` `(N, max_instances, H, W)` uint8 padded with
        zeros, `boxes` `(N, max_instances, 4)` float32 `"xyxy"` absolute
        pixel edges (a mask pixel at column x spans `[x, x + 1)`) padded
        with -1, `labels` `(N, max_instances)` int32 class ids padded with
        -1, `num_instances` `(N,)` int32, and `captions`, a list of `N`
        lowercase strings such as `"a red circle above a blue square"`.
    """
    if int(num_images) < 0:
        raise ValueError(f"num_images must be >= 0; got {num_images}")
    if int(max_instances) < 1:
        raise ValueError(f"max_instances must be >= 1; got {max_instances}")
    num_images, max_instances = int(num_images), int(max_instances)
    h, w = check_size(image_size, "image_size", minimum=24)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    yy += 0.5
    xx += 0.5

    out = {
        "images": np.zeros((num_images, h, w, 3), np.uint8),
        "segmentation_masks": np.zeros((num_images, h, w), np.int32),
        "instance_masks": np.zeros((num_images, max_instances, h, w), np.uint8),
        "boxes": np.full((num_images, max_instances, 4), -1, np.float32),
        "labels": np.full((num_images, max_instances), -1, np.int32),
        "num_instances": np.zeros((num_images,), np.int32),
        "captions": [],
    }
    for i in range(num_images):
        image = _background(rng, yy, xx)
        count = int(rng.integers(1, max_instances + 1))
        kinds, masks, taken = [], [], []
        for _ in range(count):
            extent, cy, cx, box = _place(rng, h, w, taken)
            taken.append(box)
            kinds.append(int(rng.integers(1, NUM_CLASSES)))
            masks.append(_shape_mask(kinds[-1], cy, cx, extent, yy, xx))
        # Dropping a shape only uncovers those below it, so one pass of
        # re-computing visibility after the drop is enough.
        visible = _visible(masks)
        keep = [j for j, v in enumerate(visible) if v.sum() >= _MIN_VISIBLE_PIXELS]
        kinds = [kinds[j] for j in keep]
        visible = _visible([masks[j] for j in keep])

        colors, centres = [], []
        for j, (kind, mask) in enumerate(zip(kinds, visible)):
            local = image[mask].mean(axis=0)
            dist = np.linalg.norm(_COLORS - local, axis=1)
            ok = np.flatnonzero(dist >= _MIN_CONTRAST)
            c = int(rng.choice(ok)) if ok.size else int(np.argmax(dist))
            colors.append(c)
            image[mask] = _COLORS[c]
            out["segmentation_masks"][i][mask] = kind
            out["instance_masks"][i, j] = mask
            out["labels"][i, j] = kind
            rows, cols = np.nonzero(mask)
            out["boxes"][i, j] = (
                cols.min(),
                rows.min(),
                cols.max() + 1,
                rows.max() + 1,
            )
            centres.append((rows.mean(), cols.mean()))
        out["images"][i] = np.clip(np.round(image), 0, 255).astype(np.uint8)
        out["num_instances"][i] = len(kinds)
        out["captions"].append(_caption(colors, kinds, centres))
    return out


def shapes_dataset(
    num_images,
    image_size=64,
    max_instances=3,
    seed=0,
    instances=False,
    captions=False,
):
    """Returns the shapes dataset as a `tf.data.Dataset` of dicts.

    Args:
        num_images: int. Number of images.
        image_size: int or tuple `(height, width)`. Defaults to `64`.
        max_instances: int. Maximum shapes per image. Defaults to `3`.
        seed: int. Generation seed. Defaults to `0`.
        instances: bool. Whether to add `bounding_boxes` (`{"boxes",
            "labels"}`), `instance_masks` and `num_instances`. Defaults to
            `False`.
        captions: bool. Whether to add `captions`. Defaults to `False`.

    Returns:
        A `tf.data.Dataset` whose elements always hold `images` (uint8
        HxWx3) and `segmentation_masks` (int32 HxW); see `generate_shapes`.
    """
    data = generate_shapes(num_images, image_size, max_instances, seed)
    elements = {
        "images": data["images"],
        "segmentation_masks": data["segmentation_masks"],
    }
    if instances:
        elements["bounding_boxes"] = {
            "boxes": data["boxes"],
            "labels": data["labels"],
        }
        elements["instance_masks"] = data["instance_masks"]
        elements["num_instances"] = data["num_instances"]
    if captions:
        elements["captions"] = np.array(data["captions"], dtype=object)
    return tf.data.Dataset.from_tensor_slices(elements)
