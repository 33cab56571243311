"""Segmentation datasets read from image and label files on disk."""

import os

import numpy as np
import tensorflow as tf

CAMVID_CLASSES = (
    "Sky",
    "Building",
    "Pole",
    "Road",
    "Pavement",
    "Tree",
    "SignSymbol",
    "Fence",
    "Car",
    "Pedestrian",
    "Bicyclist",
)
CAMVID_IGNORE_CLASS = 11

VOC_CLASSES = (
    "background",
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
)
VOC_IGNORE_CLASS = 255

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_MAGIC = b"\xff\xd8\xff"
_IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")


def _read_header(path, what):
    """Returns the first 26 bytes of an image file, checking it is one."""
    if not os.path.isfile(path):
        raise ValueError(f"{what} '{path}' does not exist")
    with open(path, "rb") as f:
        header = f.read(26)
    if not header:
        raise ValueError(f"{what} '{path}' is empty")
    if not (header.startswith(_PNG_MAGIC) or header.startswith(_JPEG_MAGIC)):
        raise ValueError(
            f"{what} '{path}' is not a PNG or JPEG file (bad header bytes "
            f"{header[:8]!r}); it may be corrupt or truncated"
        )
    return header


def _check_complete(path, what, header):
    """A truncated file (a copy or download cut short) has no end marker:
    JPEG's EOI (`FF D9`) or PNG's `IEND` chunk. Reading the last bytes finds
    it before training starts, where a full decode would fail at step 1
    without the file's name."""
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        f.seek(max(0, f.tell() - 64))
        tail = f.read().rstrip(b"\x00")
    png = header.startswith(_PNG_MAGIC)
    complete = b"IEND" in tail[-12:] if png else tail.endswith(b"\xff\xd9")
    if not complete:
        kind = "PNG (no IEND chunk at its end)" if png else "JPEG (no end-of-image marker)"
        raise ValueError(f"{what} '{path}' is a truncated {kind}; re-copy or re-download it")
    # Damage inside a file with an intact end: one full decode finds it now,
    # not at some training step without the file's name.
    from PIL import Image

    try:
        with Image.open(path) as image:
            image.load()
    except Exception as error:  # noqa: BLE001  (PIL raises several types; all are named)
        raise ValueError(f"{what} '{path}' cannot be decoded ({error}); it is corrupt") from None


def _mask_format(path):
    """Returns `(is_palette, is_16_bit)` for a label PNG, checking it."""
    header = _read_header(path, "Segmentation mask")
    if not header.startswith(_PNG_MAGIC):
        raise ValueError(
            f"Segmentation mask '{path}' is a JPEG; label maps must be "
            "lossless single-channel or palette PNGs"
        )
    if len(header) < 26:
        raise ValueError(f"Segmentation mask '{path}' is truncated")
    bit_depth, color_type = header[24], header[25]
    # PNG colour types: 0 grey, 3 palette, 4 grey+alpha; 2 and 6 are RGB(A).
    if color_type not in (0, 3, 4):
        raise ValueError(
            f"Segmentation mask '{path}' is an RGB PNG; expected one class "
            "id per pixel (a greyscale or palette PNG)"
        )
    return color_type == 3, bit_depth == 16


def _read_palette_indices(path):
    from PIL import Image

    with Image.open(path.decode() if isinstance(path, bytes) else path) as im:
        return np.asarray(im, dtype=np.int32)


def folder_dataset(image_paths, mask_paths, num_classes=None, ignore_class=None):
    """Builds a segmentation dataset from matching image and label files.

    Every file is checked up front (it exists and has a PNG or JPEG
    header), so a missing or corrupt file is reported by name before any
    training starts. Palette label PNGs (PASCAL VOC style) are read as
    their palette indices, not as colours.

    Args:
        image_paths: list of str. RGB or greyscale PNG/JPEG images.
        mask_paths: list of str. Label PNGs holding one class id per
            pixel, in the same order as `image_paths`.
        num_classes: int or `None`. With it, a label id outside
            `[0, num_classes)` that is not `ignore_class` fails the read of
            its mask with an `InvalidArgumentError` naming the file.
        ignore_class: int or `None`. The void label.

    Returns:
        A `tf.data.Dataset` of dicts `{"images": uint8 (H, W, 3),
        "segmentation_masks": int32 (H, W)}` in the given order. Iterating
        raises `InvalidArgumentError` if an image and its mask differ in
        size.
    """
    image_paths = [os.fspath(p) for p in image_paths]
    mask_paths = [os.fspath(p) for p in mask_paths]
    if len(image_paths) != len(mask_paths):
        raise ValueError(
            f"image_paths and mask_paths must have the same length; got "
            f"{len(image_paths)} images and {len(mask_paths)} masks"
        )
    if not image_paths:
        raise ValueError("image_paths is empty; expected at least one image")
    for path in image_paths:
        _check_complete(path, "Image", _read_header(path, "Image"))
    formats = [_mask_format(path) for path in mask_paths]
    for path in mask_paths:  # a mask is always a PNG (`_mask_format` checked it)
        _check_complete(path, "Segmentation mask", _PNG_MAGIC)
    # tf.io.decode_png would return palette colours, not indices, so any
    # palette mask sends the whole folder through PIL.
    palette = any(p for p, _ in formats)
    deep = any(d for _, d in formats)

    def load(image_path, mask_path):
        image = tf.io.decode_image(tf.io.read_file(image_path), channels=3, expand_animations=False)
        if palette:
            mask = tf.numpy_function(_read_palette_indices, [mask_path], tf.int32, stateful=False)
            mask = tf.reshape(mask, tf.shape(mask)[:2])
        else:
            mask = tf.io.decode_png(
                tf.io.read_file(mask_path),
                channels=1,
                dtype=tf.uint16 if deep else tf.uint8,
            )[..., 0]
        mask = tf.cast(mask, tf.int32)
        check = tf.debugging.Assert(
            tf.reduce_all(tf.shape(image)[:2] == tf.shape(mask)),
            [
                "Image and segmentation mask differ in size:",
                image_path,
                tf.shape(image)[:2],
                mask_path,
                tf.shape(mask),
            ],
        )
        checks = [check]
        if num_classes is not None:
            flat = tf.reshape(mask, [-1])
            bad = (flat < 0) | (flat >= num_classes)
            if ignore_class is not None:
                bad &= flat != ignore_class
            checks.append(
                tf.debugging.Assert(
                    ~tf.reduce_any(bad),
                    [
                        "Segmentation mask",
                        mask_path,
                        f"holds label ids outside [0, {num_classes}) that are not the "
                        f"ignore label {ignore_class}, e.g.:",
                        tf.boolean_mask(flat, bad)[:5],
                    ],
                    summarize=5,
                )
            )
        with tf.control_dependencies(checks):
            mask = tf.identity(mask)
        image.set_shape([None, None, 3])
        mask.set_shape([None, None])
        return {"images": image, "segmentation_masks": mask}

    dataset = tf.data.Dataset.from_tensor_slices((image_paths, mask_paths))
    return dataset.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def list_camvid_files(root, split="train"):
    """Lists the image and label files of a SegNet-layout CamVid split.

    Args:
        root: str. Folder holding `{split}/` (PNG or JPEG frames) and
            `{split}annot/` (label PNGs with the same stem).
        split: str. `"train"`, `"val"` or `"test"`. Defaults to `"train"`.

    Returns:
        A tuple `(image_paths, mask_paths)` of sorted lists.
    """
    root = os.fspath(root)
    image_dir = os.path.join(root, split)
    annot_dir = os.path.join(root, split + "annot")
    if not os.path.isdir(image_dir):
        found = sorted(os.listdir(root)) if os.path.isdir(root) else []
        raise ValueError(
            f"CamVid split folder '{image_dir}' does not exist (root={root!r}, "
            f"split={split!r}); expected root/{{split}}/ and root/{{split}}annot/"
            + (f"; root contains {found}" if found else "")
        )
    names = sorted(n for n in os.listdir(image_dir) if n.lower().endswith(_IMAGE_EXTENSIONS))
    if not names:
        raise ValueError(f"CamVid split folder '{image_dir}' has no PNG/JPEG images")
    image_paths, mask_paths = [], []
    for name in names:
        image_path = os.path.join(image_dir, name)
        mask_path = os.path.join(annot_dir, os.path.splitext(name)[0] + ".png")
        if not os.path.isfile(mask_path):
            raise ValueError(f"CamVid image '{image_path}' has no annotation '{mask_path}'")
        image_paths.append(image_path)
        mask_paths.append(mask_path)
    return image_paths, mask_paths


def camvid_dataset(root, split="train"):
    """Reads a CamVid split in the SegNet layout.

    Labels are 0..10 (`CAMVID_CLASSES`) and 11 (`CAMVID_IGNORE_CLASS`,
    void). The file list is available from `list_camvid_files`.

    Args:
        root: str. CamVid root folder, see `list_camvid_files`.
        split: str. `"train"`, `"val"` or `"test"`. Defaults to `"train"`.

    Returns:
        A `tf.data.Dataset` of `{"images", "segmentation_masks"}` dicts in
        sorted file order.
    """
    return folder_dataset(*list_camvid_files(root, split), len(CAMVID_CLASSES), CAMVID_IGNORE_CLASS)


def list_voc_files(root, split="train"):
    """Lists the image and label files of a PASCAL VOC segmentation split.

    Args:
        root: str. A `VOCdevkit/VOC2012`-style folder with `JPEGImages/`,
            `SegmentationClass/` and `ImageSets/Segmentation/{split}.txt`.
            Without the split list, every annotated id is used (with a
            warning).
        split: str. Name of the id list, e.g. `"train"`, `"val"`,
            `"trainval"`. Defaults to `"train"`.

    Returns:
        A tuple `(image_paths, mask_paths)` of lists in sorted id order.
    """
    root = os.fspath(root)
    mask_dir = os.path.join(root, "SegmentationClass")
    if not os.path.isdir(mask_dir):
        raise ValueError(
            f"VOC folder '{mask_dir}' does not exist (root={root!r}); expected "
            "root/JPEGImages/, root/SegmentationClass/ and "
            "root/ImageSets/Segmentation/{split}.txt"
        )
    list_path = os.path.join(root, "ImageSets", "Segmentation", split + ".txt")
    if os.path.isfile(list_path):
        with open(list_path) as f:
            ids = sorted({line.strip() for line in f if line.strip()})
    else:
        # Falling back to every annotated image would score a model on its
        # own training images without a word, so a missing list is an error.
        list_dir = os.path.dirname(list_path)
        present = sorted(os.listdir(list_dir)) if os.path.isdir(list_dir) else []
        raise ValueError(
            f"VOC split list '{list_path}' does not exist; split={split!r} must be one "
            f"of the lists in '{list_dir}': {present or 'none found'}"
        )
    if not ids:
        raise ValueError(f"VOC split {split!r} under '{root}' lists no images")
    image_paths, mask_paths = [], []
    for image_id in ids:
        image_path = os.path.join(root, "JPEGImages", image_id + ".jpg")
        mask_path = os.path.join(mask_dir, image_id + ".png")
        if not os.path.isfile(mask_path):
            raise ValueError(f"VOC image id {image_id!r} has no annotation '{mask_path}'")
        if not os.path.isfile(image_path):
            raise ValueError(f"VOC annotation '{mask_path}' has no image '{image_path}'")
        image_paths.append(image_path)
        mask_paths.append(mask_path)
    return image_paths, mask_paths


def voc_dataset(root, split="train"):
    """Reads a PASCAL VOC semantic segmentation split.

    Labels are the palette indices of `SegmentationClass/*.png`: 0..20
    (`VOC_CLASSES`) and 255 (`VOC_IGNORE_CLASS`, object borders).

    Args:
        root: str. VOC root folder, see `list_voc_files`.
        split: str. Id list name. Defaults to `"train"`.

    Returns:
        A `tf.data.Dataset` of `{"images", "segmentation_masks"}` dicts in
        sorted id order.
    """
    return folder_dataset(*list_voc_files(root, split), len(VOC_CLASSES), VOC_IGNORE_CLASS)
