"""Instance segmentation data: COCO instances, tfds COCO and the shapes.

Every instance dataset yields one dict per image:

- `images`: uint8 `(H, W, 3)`.
- `image_id`: int64.
- `bounding_boxes`: `{"boxes": float32 (N, 4), "labels": int32 (N,)}`,
  boxes `"xyxy"` in pixels (edges: a box covering columns 0..9 is `[0, 10]`),
  labels contiguous class ids `1..num_classes - 1` (0 is background).
- `instance_masks`: uint8 `(N, H, W)`, 1 inside the instance.
- `is_crowd`: bool `(N,)`: COCO's `iscrowd` regions (a group of objects
  under one RLE mask). They are kept and flagged, not dropped: COCOeval
  ignores detections that match them rather than counting them as false
  positives, and training code usually leaves them out of the positives.
- `num_instances`: int32 `N`, crowd regions included.

`N` varies from image to image for COCO (batch with `padded_batch`,
padding boxes and labels with -1 as the shapes do) and is the padded
`max_instances` for the shapes, whose padding has label -1. The class id
of a COCO category is its rank in increasing category id (Detectron2's
`thing_dataset_id_to_contiguous_id`); the mapping is in the returned
`InstanceDatasetInfo`.
"""

import collections
import json
import math
import os
import warnings

import numpy as np
import tensorflow as tf

from keras_segattn.core.validation import check_int, check_size
from keras_segattn.data import shapes
from keras_segattn.data.captions import _decode_image_or_raise
from keras_segattn.data.catalogue import (  # noqa: F401  (public here too)
    InstanceDatasetInfo,
    load_dataset,
    register_dataset,
)
from keras_segattn.data.folders import _read_header
from keras_segattn.data.pipeline import shapes_split_options
from keras_segattn.data.tfds import load_tfds

# The 80 COCO 2014/2017 "thing" categories: (category id, name).
COCO_CATEGORIES = (
    (1, "person"),
    (2, "bicycle"),
    (3, "car"),
    (4, "motorcycle"),
    (5, "airplane"),
    (6, "bus"),
    (7, "train"),
    (8, "truck"),
    (9, "boat"),
    (10, "traffic light"),
    (11, "fire hydrant"),
    (13, "stop sign"),
    (14, "parking meter"),
    (15, "bench"),
    (16, "bird"),
    (17, "cat"),
    (18, "dog"),
    (19, "horse"),
    (20, "sheep"),
    (21, "cow"),
    (22, "elephant"),
    (23, "bear"),
    (24, "zebra"),
    (25, "giraffe"),
    (27, "backpack"),
    (28, "umbrella"),
    (31, "handbag"),
    (32, "tie"),
    (33, "suitcase"),
    (34, "frisbee"),
    (35, "skis"),
    (36, "snowboard"),
    (37, "sports ball"),
    (38, "kite"),
    (39, "baseball bat"),
    (40, "baseball glove"),
    (41, "skateboard"),
    (42, "surfboard"),
    (43, "tennis racket"),
    (44, "bottle"),
    (46, "wine glass"),
    (47, "cup"),
    (48, "fork"),
    (49, "knife"),
    (50, "spoon"),
    (51, "bowl"),
    (52, "banana"),
    (53, "apple"),
    (54, "sandwich"),
    (55, "orange"),
    (56, "broccoli"),
    (57, "carrot"),
    (58, "hot dog"),
    (59, "pizza"),
    (60, "donut"),
    (61, "cake"),
    (62, "chair"),
    (63, "couch"),
    (64, "potted plant"),
    (65, "bed"),
    (67, "dining table"),
    (70, "toilet"),
    (72, "tv"),
    (73, "laptop"),
    (74, "mouse"),
    (75, "remote"),
    (76, "keyboard"),
    (77, "cell phone"),
    (78, "microwave"),
    (79, "oven"),
    (80, "toaster"),
    (81, "sink"),
    (82, "refrigerator"),
    (84, "book"),
    (85, "clock"),
    (86, "vase"),
    (87, "scissors"),
    (88, "teddy bear"),
    (89, "hair drier"),
    (90, "toothbrush"),
)


def _categories_info(categories, annotation_file=None, image_ids=None, has_masks=True):
    ordered = sorted(categories)
    return InstanceDatasetInfo(
        num_classes=len(ordered) + 1,
        class_names=("background",) + tuple(name for _, name in ordered),
        category_ids=(0,) + tuple(cid for cid, _ in ordered),
        annotation_file=annotation_file,
        image_ids=image_ids,
        has_masks=has_masks,
    )


# ---------------------------------------------------------------------------
# COCO JSON
# ---------------------------------------------------------------------------


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _valid_polygons(segmentation):
    # Detectron2's rule: a polygon needs an even number of coordinates, at
    # least 3 points.
    return [
        [float(v) for v in poly]
        for poly in segmentation
        if isinstance(poly, list) and len(poly) % 2 == 0 and len(poly) >= 6
    ]


def _check_segmentation(ann, height, width, json_path):
    """Returns the segmentation to decode, or `None` if it has no valid polygon."""
    segmentation = ann.get("segmentation")
    if isinstance(segmentation, dict):
        size = segmentation.get("size")
        if "counts" not in segmentation or not isinstance(size, (list, tuple)) or len(size) != 2:
            raise ValueError(
                f"Annotation {ann['id']} in '{json_path}' has an RLE segmentation without "
                "'counts' and a [height, width] 'size'"
            )
        if [int(size[0]), int(size[1])] != [height, width]:
            raise ValueError(
                f"Annotation {ann['id']} in '{json_path}' has an RLE mask of size "
                f"{int(size[0])}x{int(size[1])} (height x width) but its image "
                f"{ann['image_id']} is {height}x{width}"
            )
        return segmentation
    if isinstance(segmentation, list):
        polygons = _valid_polygons(segmentation)
        return polygons or None
    return None


def _decode_masks(segmentations, height, width):
    """Rasterises polygons and RLEs to uint8 `(N, height, width)`."""
    from pycocotools import mask as mask_utils

    masks = np.zeros((len(segmentations), height, width), np.uint8)
    for i, segmentation in enumerate(segmentations):
        if isinstance(segmentation, list):
            rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
        elif isinstance(segmentation["counts"], list):
            rle = mask_utils.frPyObjects(segmentation, height, width)
        else:
            counts = segmentation["counts"]
            rle = {
                "size": [height, width],
                "counts": counts.encode("ascii") if isinstance(counts, str) else counts,
            }
        masks[i] = mask_utils.decode(rle)
    return masks


def _warn_count(count, total, message, ids, stacklevel=3):
    shown = ", ".join(str(i) for i in ids[:5]) + (", ..." if len(ids) > 5 else "")
    warnings.warn(f"{count} of {total} {message} ({shown})", stacklevel=stacklevel)


def _read_coco_json(json_path):
    try:
        with open(json_path, encoding="utf-8") as f:
            data = json.load(f)
        images = {
            int(im["id"]): (str(im["file_name"]), int(im["height"]), int(im["width"]))
            for im in data["images"]
        }
        categories = [(int(c["id"]), str(c["name"])) for c in data["categories"]]
        annotations = list(data["annotations"])
        for ann in annotations:
            ann["id"], ann["image_id"] = int(ann["id"]), int(ann["image_id"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise ValueError(
            f"COCO instance file '{json_path}' is not a valid COCO instances JSON (needs "
            "'images' with id/file_name/height/width, 'categories' with id/name and "
            f"'annotations' with id/image_id): {type(e).__name__}: {e}"
        ) from None
    ids = [c for c, _ in categories]
    if len(set(ids)) != len(ids):
        duplicated = sorted({c for c in ids if ids.count(c) > 1})
        raise ValueError(f"COCO instance file '{json_path}' repeats category ids {duplicated}")
    return images, categories, annotations


def _parse_annotations(json_path, images, categories, annotations):
    """Checks and converts annotations; returns `{image_id: [record, ...]}`."""
    label_of = {cid: label for label, (cid, _) in enumerate(sorted(categories), 1)}
    by_image = collections.defaultdict(list)
    clipped, dropped, no_mask = [], [], []
    for ann in annotations:
        ann_id = ann["id"]
        if ann["image_id"] not in images:
            raise ValueError(
                f"Annotation {ann_id} in '{json_path}' refers to image {ann['image_id']}, "
                "which is not in its 'images'"
            )
        _, height, width = images[ann["image_id"]]
        category = ann.get("category_id")
        if category not in label_of:
            raise ValueError(
                f"Annotation {ann_id} in '{json_path}' has category_id {category!r}, which is "
                f"not in its 'categories' (ids {sorted(label_of)[:10]}"
                + (", ...)" if len(label_of) > 10 else ")")
            )
        bbox = ann.get("bbox")
        if not isinstance(bbox, list) or len(bbox) != 4 or not all(map(_is_number, bbox)):
            raise ValueError(
                f"Annotation {ann_id} in '{json_path}' has bbox {bbox!r}; expected 4 finite "
                "numbers [x, y, width, height]"
            )
        segmentation = _check_segmentation(ann, height, width, json_path)
        if segmentation is None:
            no_mask.append(ann_id)
            continue
        x, y, w, h = (float(v) for v in bbox)
        box = [x, y, x + w, y + h]
        # Detectron2: clip to the image, then drop boxes left empty.
        box_clipped = [
            min(max(box[0], 0.0), width),
            min(max(box[1], 0.0), height),
            min(max(box[2], 0.0), width),
            min(max(box[3], 0.0), height),
        ]
        if box_clipped[2] <= box_clipped[0] or box_clipped[3] <= box_clipped[1]:
            dropped.append(ann_id)
            continue
        if box_clipped != box:
            clipped.append(ann_id)
        by_image[ann["image_id"]].append(
            (box_clipped, label_of[category], bool(ann.get("iscrowd", 0)), segmentation)
        )
    total = len(annotations)
    where = f"annotations of '{json_path}'"
    if no_mask:
        _warn_count(
            len(no_mask), total, f"{where} have no valid polygon or RLE and are dropped", no_mask, 4
        )
    if dropped:
        _warn_count(
            len(dropped),
            total,
            f"{where} have an empty box (width or height <= 0) after clipping to the image "
            "and are dropped",
            dropped,
            4,
        )
    if clipped:
        _warn_count(
            len(clipped),
            total,
            f"{where} have a box crossing the image border, clipped to it",
            clipped,
            4,
        )
    return by_image


def coco_instances(root, split="train"):
    """Reads a COCO 2017 instances split in the official layout.

    Reads `root/annotations/instances_{split}2017.json` and the images in
    `root/{split}2017/`. Everything in the JSON is checked up front:

    - An annotation whose `category_id` is not in `categories`, or whose
      `image_id` is not in `images`, raises a `ValueError` naming it; so
      does a malformed `bbox` or an RLE mask whose `size` is not its
      image's height and width.
    - Boxes (`[x, y, w, h]` in the JSON) become `"xyxy"`, are clipped to
      the image and dropped if empty after that (width or height <= 0),
      as Detectron2 does. Clipped and dropped boxes are counted in one
      warning each, with their annotation ids.
    - Annotations without a valid segmentation (no polygon of at least 3
      points, as Detectron2 requires) are dropped with a counted warning.
    - Images with no annotation are kept, with `N = 0`.
    - Images listed but absent from disk are skipped with one warning
      giving how many (a partial download still loads); if none is on
      disk, a `ValueError` says so. Every kept image has its header
      checked, and one whose data is corrupt, or whose size differs from
      the JSON's `height` and `width`, fails with its path when read.

    Masks are decoded when an element is read (polygons with
    `pycocotools.mask.frPyObjects` and `merge`, RLEs with `decode`), so
    memory does not grow with the split. Greyscale images become RGB.

    Args:
        root: str. COCO root holding `annotations/` and `{split}2017/`.
        split: str. `"train"` or `"val"` (`"validation"` is accepted for
            `"val"`). Defaults to `"train"`.

    Returns:
        A tuple `(dataset, info)`: a `tf.data.Dataset` of the dicts
        described in the module docstring, one per image in increasing
        `image_id` order, and an `InstanceDatasetInfo` with the class names,
        the category id of each class id and the JSON path.

    Raises:
        ValueError: as listed above, naming the file or the annotation.

    Examples:
        >>> ds, info = coco_instances("coco", "val")  # doctest: +SKIP
        >>> info.num_classes, info.class_names[1]  # doctest: +SKIP
        (81, 'person')
    """
    root = os.fspath(root)
    if split == "validation":
        split = "val"
    if not isinstance(split, str) or not split:
        raise ValueError(
            f"split must be a non-empty string such as 'train' or 'val'; got {split!r}"
        )
    json_path = os.path.join(root, "annotations", f"instances_{split}2017.json")
    image_dir = os.path.join(root, f"{split}2017")
    if not os.path.isfile(json_path):
        raise ValueError(
            f"COCO instance file '{json_path}' does not exist (root={root!r}, split={split!r}); "
            "expected root/annotations/instances_{split}2017.json and root/{split}2017/"
        )
    images, categories, annotations = _read_coco_json(json_path)
    by_image = _parse_annotations(json_path, images, categories, annotations)

    records, missing = [], []
    for image_id in sorted(images):
        file_name, height, width = images[image_id]
        path = os.path.join(image_dir, file_name)
        if not os.path.isfile(path):
            missing.append(file_name)
            continue
        _read_header(path, "Image")
        records.append((image_id, path, height, width, by_image.get(image_id, [])))
    if not records:
        raise ValueError(
            f"None of the {len(images)} images listed in '{json_path}' is in '{image_dir}'"
        )
    if missing:
        _warn_count(
            len(missing),
            len(images),
            f"images listed in '{json_path}' are not in '{image_dir}' and are skipped",
            missing,
        )
    info = _categories_info(
        categories,
        annotation_file=json_path,
        image_ids=tuple(r[0] for r in records) if missing else None,
    )
    return _records_dataset(records), info


def _records_dataset(records):
    lengths = [len(r[4]) for r in records]
    instances = [inst for r in records for inst in r[4]]
    boxes = np.array([inst[0] for inst in instances], np.float32).reshape(-1, 4)
    labels = np.array([inst[1] for inst in instances], np.int32)
    crowd = np.array([inst[2] for inst in instances], bool)
    segmentations = [[inst[3] for inst in r[4]] for r in records]

    def ragged(values):
        return tf.RaggedTensor.from_row_lengths(values, tf.constant(lengths, tf.int64))

    slices = {
        "index": tf.range(len(records), dtype=tf.int32),
        "image_id": tf.constant([r[0] for r in records], tf.int64),
        "boxes": ragged(boxes),
        "labels": ragged(labels),
        "is_crowd": ragged(crowd),
    }

    def read(index):
        image_id, path, height, width, _ = records[int(index)]
        image = np.asarray(_decode_image_or_raise(path))
        if image.shape[:2] != (height, width):
            raise ValueError(
                f"Image '{path}' (image_id {image_id}) is {image.shape[0]}x{image.shape[1]} "
                f"(height x width) but its annotation file gives {height}x{width}"
            )
        return image, _decode_masks(segmentations[int(index)], height, width)

    def load(example):
        image, masks = tf.py_function(read, [example["index"]], [tf.uint8, tf.uint8])
        image.set_shape([None, None, 3])
        masks.set_shape([None, None, None])
        return {
            "images": image,
            "image_id": example["image_id"],
            "bounding_boxes": {"boxes": example["boxes"], "labels": example["labels"]},
            "instance_masks": masks,
            "is_crowd": example["is_crowd"],
            "num_instances": tf.shape(example["labels"], out_type=tf.int32)[0],
        }

    dataset = tf.data.Dataset.from_tensor_slices(slices)
    return dataset.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


# ---------------------------------------------------------------------------
# tfds and shapes
# ---------------------------------------------------------------------------

_TFDS_COCO_CONFIGS = ("coco/2014", "coco/2017")


def _tfds_to_instances(example):
    """Maps one tfds `coco` example to the instance dict (boxes in pixels)."""
    image = tf.ensure_shape(tf.cast(example["image"], tf.uint8), [None, None, 3])
    size = tf.cast(tf.shape(image)[:2], tf.float32)
    yxyx = tf.reshape(tf.cast(example["objects"]["bbox"], tf.float32), [-1, 4])
    yxyx *= tf.stack([size[0], size[1], size[0], size[1]])
    boxes = tf.gather(yxyx, [1, 0, 3, 2], axis=1)
    labels = tf.cast(example["objects"]["label"], tf.int32) + 1
    return {
        "images": image,
        "image_id": tf.cast(example["image/id"], tf.int64),
        "bounding_boxes": {"boxes": boxes, "labels": labels},
        "is_crowd": tf.cast(example["objects"]["is_crowd"], tf.bool),
        "num_instances": tf.shape(labels, out_type=tf.int32)[0],
    }


def tfds_coco_instances(name="coco/2017", split="train", data_dir=None, download=True):
    """Loads TensorFlow Datasets' COCO detection data in the instance contract.

    tfds' `coco/2014` and `coco/2017` carry boxes, labels and crowd flags
    but no segmentation masks, so the elements have no `instance_masks`
    (`info.has_masks` is `False`): use `coco_instances` on the official
    files for masks. tfds labels 0..79 follow the categories of the
    official JSON in increasing id order, so class id = tfds label + 1
    matches `coco_instances`. Boxes come back in pixels; tfds stores them
    normalised. `tensorflow_datasets` is imported only here.

    Args:
        name: str. `"coco/2017"` or `"coco/2014"`, optionally with a
            version (`"coco/2017:1.1.0"`). Defaults to `"coco/2017"`.
        split: str. tfds split: `"train"`, `"validation"` (`"val"` is
            accepted) or `"test"` (no annotations). Defaults to `"train"`.
        data_dir: str. tfds data folder; `None` uses the tfds default.
            Defaults to `None`.
        download: bool. Whether tfds may download and prepare the data
            (about 25 GB) when it is not prepared in `data_dir`. Defaults
            to `True`.

    Returns:
        A tuple `(dataset, info)`, as `coco_instances` but without masks.

    Raises:
        ValueError: if `name` is not a tfds COCO detection config.
        RuntimeError: if tfds cannot load it (not prepared, and offline or
            `download=False`), with the cause.

    Examples:
        >>> ds, info = tfds_coco_instances(split="val", data_dir="~/tfds")  # doctest: +SKIP
    """
    if not isinstance(name, str) or name.split(":")[0] not in _TFDS_COCO_CONFIGS:
        raise ValueError(
            f"name must be one of {_TFDS_COCO_CONFIGS} (optionally with a version); got {name!r}"
        )
    if split == "val":
        split = "validation"
    dataset = load_tfds(name, split, data_dir, download)

    info = _categories_info(COCO_CATEGORIES, has_masks=False)
    return dataset.map(_tfds_to_instances, num_parallel_calls=tf.data.AUTOTUNE), info


def shapes_instances(num_images, image_size=64, max_instances=3, seed=0):
    """The procedural shapes as an instance dataset (classes 1..3).

    Circles, squares and triangles (`shapes.CLASS_NAMES`); instances are
    the visible parts of the shapes, never crowds. Arrays are padded to
    `max_instances`: labels and boxes with -1, masks with zeros, `is_crowd`
    with `False`; `num_instances` counts the real ones. `segmentation_masks`
    is kept as well.

    Args:
        num_images: int. Number of images.
        image_size: int or `(height, width)`, at least 24. Defaults to `64`.
        max_instances: int. Maximum shapes per image. Defaults to `3`.
        seed: int. Generation seed. Defaults to `0`.

    Returns:
        A tuple `(dataset, info)`; `image_id` is `0..num_images - 1`.

    Examples:
        >>> ds, info = shapes_instances(2, image_size=32)
        >>> info.class_names
        ('background', 'circle', 'square', 'triangle')
    """
    data = shapes.generate_shapes(num_images, image_size, max_instances, seed)
    elements = {
        "images": data["images"],
        "image_id": np.arange(len(data["images"]), dtype=np.int64),
        "segmentation_masks": data["segmentation_masks"],
        "bounding_boxes": {"boxes": data["boxes"], "labels": data["labels"]},
        "instance_masks": data["instance_masks"],
        "is_crowd": np.zeros(data["labels"].shape, bool),
        "num_instances": data["num_instances"],
    }
    info = InstanceDatasetInfo(
        num_classes=shapes.NUM_CLASSES,
        class_names=shapes.CLASS_NAMES,
        category_ids=tuple(range(shapes.NUM_CLASSES)),
    )
    return tf.data.Dataset.from_tensor_slices(elements), info


def resize_instance_arrays(image, boxes, masks, size):
    """Resizes one image with its instances: bilinear image (kept uint8),
    nearest-neighbour `(N, H, W)` masks, `"xyxy"` pixel boxes scaled."""
    height = tf.cast(tf.shape(image)[0], tf.float32)
    width = tf.cast(tf.shape(image)[1], tf.float32)
    resized = tf.image.resize(image, size, method="bilinear")
    resized = tf.cast(tf.clip_by_value(tf.round(resized), 0.0, 255.0), image.dtype)
    masks = tf.image.resize(masks[..., None], size, method="nearest")[..., 0]
    scale_x, scale_y = size[1] / width, size[0] / height
    boxes = tf.cast(boxes, tf.float32) * tf.stack([scale_x, scale_y, scale_x, scale_y])
    return resized, boxes, masks


def check_instance_dataset(dataset):
    """Raises `ValueError` unless `dataset` yields unbatched instance dicts
    (`images` `(H, W, 3)`, `bounding_boxes`, `instance_masks`)."""
    spec = dataset.element_spec
    if not isinstance(spec, dict) or not {"images", "bounding_boxes", "instance_masks"} <= set(
        spec
    ):
        raise ValueError(
            "dataset must yield instance dicts with 'images', 'bounding_boxes' and "
            f"'instance_masks' (see load_instance_dataset); got {spec}."
        )
    if spec["images"].shape.rank != 3:
        raise ValueError(
            "dataset must be unbatched (images (H, W, 3)); got images of shape "
            f"{spec['images'].shape}. Call .unbatch() first."
        )


def resize_instances(dataset, image_size):
    """Resizes every image of an instance dataset, with its boxes and masks.

    What a fixed-size model (or a fixed-size evaluation) needs from COCO's
    images of many sizes. The resized dataset is its own ground truth: score
    predictions made on it against it (`evaluate_instances`), at the new
    resolution. Other fields (`image_id`, labels, crowd flags, counts) are
    kept; `segmentation_masks`, when present, are resized like the masks.

    Args:
        dataset: `tf.data.Dataset` of unbatched instance dicts
            (`load_instance_dataset`).
        image_size: int or `(height, width)`.

    Returns:
        The resized `tf.data.Dataset`.

    Raises:
        ValueError: bad `image_size`, or a dataset that does not yield
            unbatched instance dicts.

    Examples:
        >>> ds, _ = load_instance_dataset("shapes", "val", num_images=1, image_size=32)
        >>> next(iter(resize_instances(ds, 48)))["images"].shape
        TensorShape([48, 48, 3])
    """
    size = check_size(image_size, "image_size")
    check_instance_dataset(dataset)

    def resize(example):
        example = dict(example)
        boxes = example["bounding_boxes"]["boxes"]
        dtype = boxes.dtype
        image, boxes, masks = resize_instance_arrays(
            example["images"], boxes, example["instance_masks"], size
        )
        example["images"] = image
        example["instance_masks"] = masks
        example["bounding_boxes"] = {**example["bounding_boxes"], "boxes": tf.cast(boxes, dtype)}
        if "segmentation_masks" in example:  # (H, W) class ids
            labels = example["segmentation_masks"][..., None]
            example["segmentation_masks"] = tf.image.resize(labels, size, "nearest")[..., 0]
        return example

    return dataset.map(resize, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


@register_dataset("shapes", "instances", generated=True)
def _shapes(arg, split, num_images=None, image_size=64, max_instances=3, seed=0):
    """Procedural circles, squares and triangles (`shapes_instances`), 3 classes."""
    options = dict(image_size=image_size, max_instances=max_instances, seed=seed)
    if num_images is not None:
        options["num_images"] = num_images
    return shapes_instances(**shapes_split_options(split, options))


@register_dataset("coco", "instances", arg="<root>")
def _coco(root, split):
    """COCO 2017 instances in the official layout (`coco_instances`)."""
    return coco_instances(root, split)


@register_dataset("tfds", "instances", arg="coco/2017")
def _tfds(name, split, data_dir=None, download=True):
    """TensorFlow Datasets' `coco/2017` or `coco/2014`, boxes only (`tfds_coco_instances`)."""
    return tfds_coco_instances(name, split, data_dir=data_dir, download=download)


def load_instance_dataset(spec, split="train", **kwargs):
    """Resolves an instance dataset spec string to `(dataset, info)`.

    `load_dataset("instances", spec, split, **kwargs)`: the accepted specs
    are those of `list_datasets("instances")`. Built in: `"shapes"` (kwargs
    `num_images` (default 1000 for train, 200 otherwise), `image_size`,
    `max_instances`, `seed`; `"val"` and `"test"` use seeds disjoint from
    `"train"`, as in `load_segmentation_dataset`), `"coco:<root>"` (the
    official layout, see `coco_instances`) and `"tfds:coco/2017"` or
    `"tfds:coco/2014"` (kwargs `data_dir`, `download`; boxes only, see
    `tfds_coco_instances`).

    Args:
        spec: str. The dataset spec.
        split: str. Split name. Defaults to `"train"`.
        **kwargs: Options of the chosen source, as above.

    Returns:
        A tuple `(dataset, info)`: a `tf.data.Dataset` of instance dicts
        and an `InstanceDatasetInfo`.

    Raises:
        ValueError: for an unknown spec or split, a keyword the source does
            not take (naming it and the spec), or what the source raises.
        RuntimeError: if tfds cannot load the data (e.g. offline).

    Examples:
        >>> ds, info = load_instance_dataset("shapes", "val", num_images=2, image_size=32)
        >>> info.num_classes
        4
    """
    return load_dataset("instances", spec, split, **kwargs)


def instance_pipeline(
    dataset,
    batch_size,
    image_size=None,
    max_instances=None,
    shuffle=None,
    flip=False,
    seed=None,
    drop_remainder=False,
):
    """Turns instance dicts into `(images, targets)` batches for `model.fit`.

    Each element of `dataset` (an unbatched instance dataset of
    `keras_segattn.data.instances.load_instance_dataset`: `images`,
    `bounding_boxes`, `instance_masks`, optionally `num_instances` and
    `is_crowd`) becomes:

    - `images`: uint8 `(h, w, 3)`, resized (bilinear) to `image_size`;
    - `targets["masks"]`: uint8 `(G, h, w)`, resized together with the
      image (nearest);
    - `targets["boxes"]`: float32 `(G, 4)`, scaled with the image and
      clipped to it;
    - `targets["labels"]`: int32 `(G,)`.

    Instances kept are the real ones (among the first `num_instances`,
    label >= 1), not crowd regions (COCO `iscrowd`, which no RoI should
    learn as one object), with a non-empty box after resizing and
    clipping; at most `max_instances` of them, in dataset order.
    Batches pad `G` to `max_instances` (or the batch's largest count when
    `None`) with label -1, box -1 and empty masks; without `image_size`,
    images and masks are padded bottom and right to the batch's largest.

    Args:
        dataset: `tf.data.Dataset` of unbatched instance dicts.
        batch_size: int.
        image_size: `None`, int or `(height, width)`. Defaults to `None`
            (keep each image's size).
        max_instances: int or `None`. Defaults to `None`.
        shuffle: int or `None`. Shuffle buffer, applied before batching.
            Defaults to `None` (no shuffling).
        flip: bool. Random horizontal flips of image, masks and boxes.
            Defaults to `False`.
        seed: int or `None`. Seed of the shuffling and flips.
        drop_remainder: bool. Passed to `padded_batch`.

    Returns:
        A `tf.data.Dataset` of `(images, {"boxes", "labels", "masks"})`.

    Raises:
        ValueError: bad `batch_size`, `image_size` or `max_instances`, or
            elements without `instance_masks`.
    """
    batch_size = check_int(batch_size, "batch_size")
    size = check_size(image_size, "image_size", none_ok=True)
    if max_instances is not None:
        max_instances = check_int(max_instances, "max_instances")
    check_instance_dataset(dataset)

    def convert(example):
        image = example["images"]
        boxes = tf.reshape(tf.cast(example["bounding_boxes"]["boxes"], tf.float32), [-1, 4])
        labels = tf.reshape(tf.cast(example["bounding_boxes"]["labels"], tf.int32), [-1])
        masks = tf.cast(example["instance_masks"], tf.uint8)
        count = tf.shape(labels)[0]
        keep = labels >= 1
        if "num_instances" in example:
            keep &= tf.range(count) < tf.cast(example["num_instances"], tf.int32)
        if "is_crowd" in example:
            keep &= ~tf.reshape(tf.cast(example["is_crowd"], tf.bool), [-1])
        if size is not None:
            image, boxes, masks = resize_instance_arrays(image, boxes, masks, size)
        height = tf.cast(tf.shape(image)[0], tf.float32)
        width = tf.cast(tf.shape(image)[1], tf.float32)
        boxes = tf.clip_by_value(boxes, 0.0, tf.stack([width, height, width, height]))
        keep &= (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        boxes = tf.boolean_mask(boxes, keep)
        labels = tf.boolean_mask(labels, keep)
        masks = tf.boolean_mask(masks, keep)
        if max_instances is not None:
            boxes, labels = boxes[:max_instances], labels[:max_instances]
            masks = masks[:max_instances]
        return image, {"boxes": boxes, "labels": labels, "masks": masks}

    def random_flip(element, coin):
        # One coin per element from a seeded sequence zipped in order: a
        # stateful random op in a parallel map would not be reproducible.
        image, targets = element
        flip_it = tf.equal(coin % 2, 0)
        width = tf.cast(tf.shape(image)[1], tf.float32)
        boxes = targets["boxes"]
        flipped = tf.stack(
            [width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]], axis=1
        )
        return (
            tf.where(flip_it, image[:, ::-1], image),
            {
                "boxes": tf.where(flip_it, flipped, boxes),
                "labels": targets["labels"],
                "masks": tf.where(flip_it, targets["masks"][:, :, ::-1], targets["masks"]),
            },
        )

    if shuffle:
        dataset = dataset.shuffle(check_int(shuffle, "shuffle"), seed=seed)
    dataset = dataset.map(convert, num_parallel_calls=tf.data.AUTOTUNE)
    if flip:
        coins = tf.data.Dataset.random(seed=seed)
        dataset = tf.data.Dataset.zip((dataset, coins)).map(
            random_flip, num_parallel_calls=tf.data.AUTOTUNE
        )
    height, width = size if size is not None else (None, None)
    return dataset.padded_batch(
        batch_size,
        padded_shapes=(
            [height, width, 3],
            {
                "boxes": [max_instances, 4],
                "labels": [max_instances],
                "masks": [max_instances, height, width],
            },
        ),
        padding_values=(
            tf.constant(0, tf.uint8),
            {
                "boxes": tf.constant(-1.0, tf.float32),
                "labels": tf.constant(-1, tf.int32),
                "masks": tf.constant(0, tf.uint8),
            },
        ),
        drop_remainder=drop_remainder,
    )
