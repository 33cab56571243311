"""TensorFlow Datasets segmentation sets mapped to the package's dict contract.

`tensorflow_datasets` is imported only when a dataset is loaded.
"""

import dataclasses

import numpy as np
import tensorflow as tf

PET_CLASSES = ("background", "pet", "border")

CITYSCAPES_CLASSES = (
    "road",
    "sidewalk",
    "building",
    "wall",
    "fence",
    "pole",
    "traffic light",
    "traffic sign",
    "vegetation",
    "terrain",
    "sky",
    "person",
    "rider",
    "car",
    "truck",
    "bus",
    "train",
    "motorcycle",
    "bicycle",
)

# Cityscapes labelIds 0..33 to the 19 standard trainIds; 255 = ignore.
_CITYSCAPES_TRAIN_IDS = (
    [255] * 7
    + [0, 1, 255, 255, 2, 3, 4, 255, 255, 255, 5, 255, 6, 7, 8, 9, 10]
    + [11, 12, 13, 14, 15, 255, 255, 16, 17, 18]
)


@dataclasses.dataclass(frozen=True)
class _Spec:
    image_key: str
    mask_key: str
    # Lookup from stored mask value to class id; values past its end map
    # to 255.
    lookup: tuple
    class_names: tuple
    ignore_class: int = 255


TFDS_SEGMENTATION_DATASETS = {
    # The tfds trimap is 1 pet, 2 background, 3 border ("not classified").
    # Background becomes 0 so that class 0 means background as elsewhere
    # in the package; the border stays a class of its own (it is where
    # annotators were unsure) instead of being ignored.
    "oxford_iiit_pet": _Spec("image", "segmentation_mask", (255, 1, 0, 2), PET_CLASSES),
    "cityscapes": _Spec(
        "image_left",
        "segmentation_label",
        tuple(_CITYSCAPES_TRAIN_IDS),
        CITYSCAPES_CLASSES,
    ),
}


def load_tfds(name, split, data_dir=None, download=True):
    """`tfds.load` with the package's error: which dataset, split and folder,
    and what to do on an offline machine. Every tfds route goes through it."""
    import tensorflow_datasets as tfds

    try:
        return tfds.load(
            name, split=split, data_dir=data_dir, download=download, shuffle_files=False
        )
    except Exception as e:
        raise RuntimeError(
            f"Could not load tfds dataset {name!r} split {split!r} (data_dir={data_dir!r}, "
            f"download={download}): tfds looked for prepared data there"
            + (" and tried to download it" if download else "")
            + ". If the machine is offline, prepare it elsewhere and copy the data_dir over. "
            f"Cause: {type(e).__name__}: {e}"
        ) from e


def _spec(name):
    base = name.split("/")[0].split(":")[0]
    if base not in TFDS_SEGMENTATION_DATASETS:
        raise ValueError(
            f"Unsupported tfds segmentation dataset {name!r}; supported: "
            f"{sorted(TFDS_SEGMENTATION_DATASETS)}"
        )
    return TFDS_SEGMENTATION_DATASETS[base]


def tfds_dataset_info(name):
    """Returns `(num_classes, ignore_class, class_names)` for a tfds name.

    Args:
        name: str. A key of `TFDS_SEGMENTATION_DATASETS`, optionally with a
            tfds config or version (`"oxford_iiit_pet:4.*.*"`).
    """
    spec = _spec(name)
    return len(spec.class_names), spec.ignore_class, spec.class_names


def tfds_to_segmentation(example, name):
    """Maps one tfds example dict to `{"images", "segmentation_masks"}`.

    Args:
        example: dict. An element of the tfds dataset `name`.
        name: str. The tfds dataset name.

    Returns:
        A dict with `images` uint8 (H, W, 3) and `segmentation_masks`
        int32 (H, W) holding the package's class ids.
    """
    spec = _spec(name)
    missing = [k for k in (spec.image_key, spec.mask_key) if k not in example]
    if missing:
        raise ValueError(f"tfds example for {name!r} lacks keys {missing}; has {sorted(example)}")
    image = tf.convert_to_tensor(example[spec.image_key])
    if image.shape.rank == 3 and image.shape[-1] == 1:
        image = tf.image.grayscale_to_rgb(image)
    mask = tf.cast(tf.convert_to_tensor(example[spec.mask_key]), tf.int32)
    if mask.shape.rank == 3:
        mask = mask[..., 0]
    lookup = tf.constant(np.array(spec.lookup + (255,), np.int32))
    # Unknown stored values land on the trailing 255 entry.
    mask = tf.gather(lookup, tf.clip_by_value(mask, 0, len(spec.lookup)))
    image = tf.ensure_shape(tf.cast(image, tf.uint8), [None, None, 3])
    return {"images": image, "segmentation_masks": mask}


def tfds_segmentation_dataset(name, split="train", data_dir=None):
    """Loads a tfds segmentation dataset as package-contract dicts.

    Supported: `"oxford_iiit_pet"` (0 background, 1 pet, 2 border) and
    `"cityscapes"` (19 train ids, 255 ignore; tfds needs a manual download
    of the Cityscapes archives).

    Args:
        name: str. tfds name, optionally with config or version.
        split: str. tfds split; `"val"` is accepted for `"validation"`.
            Defaults to `"train"`.
        data_dir: str. tfds data folder; `None` uses the tfds default.
            Defaults to `None`.

    Returns:
        A `tf.data.Dataset` of `{"images", "segmentation_masks"}` dicts.
    """
    _spec(name)
    if split == "val":
        split = "validation"

    dataset = load_tfds(name, split, data_dir)
    return dataset.map(
        lambda ex: tfds_to_segmentation(ex, name),
        num_parallel_calls=tf.data.AUTOTUNE,
    )
