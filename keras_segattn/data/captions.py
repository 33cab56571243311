"""Image captioning data: datasets, a vocabulary and a teacher-forcing pipeline.

Every caption dataset yields dicts `{"images": uint8 (H, W, 3), "captions":
tf.string (num_captions,), "image_id": int64}`, one element per image, so
that the same pipeline and evaluation code serves COCO, Flickr8k, the tfds
copy of COCO and the procedural shapes. The shapes add their annotations
(`segmentation_masks`, `instance_masks`, `bounding_boxes`, `num_instances`),
which is what lets attention maps be checked against where each named object
really is (`keras_segattn.evaluation.captioning.attention_localization`).

Reference: Xu et al., "Show, Attend and Tell: Neural Image Caption
Generation with Visual Attention", ICML 2015.
"""

import collections
import collections.abc
import json
import numbers
import os
import warnings

import numpy as np
import tensorflow as tf

from keras_segattn.core.validation import check_size
from keras_segattn.core.vocabulary import (  # noqa: F401  (public here too)
    END,
    PAD,
    SPECIAL_TOKENS,
    START,
    UNK,
    CaptionVocabulary,
    standardize_captions,
)
from keras_segattn.data import shapes
from keras_segattn.data.catalogue import (  # noqa: F401  (public here too)
    CaptionDatasetInfo,
    load_dataset,
    register_dataset,
)
from keras_segattn.data.folders import _read_header
from keras_segattn.data.pipeline import shapes_split_options
from keras_segattn.data.tfds import load_tfds

# ---------------------------------------------------------------------------
# Datasets
# ---------------------------------------------------------------------------


def _decode_image_or_raise(path):
    """Decodes one image file, naming it if it cannot be decoded."""
    path = path.numpy().decode() if isinstance(path, tf.Tensor) else path
    data = tf.io.read_file(path)
    try:
        return tf.io.decode_image(data, channels=3, expand_animations=False)
    except tf.errors.OpError as tf_error:
        cause = tf_error.message
    # PIL reads a few valid files TF does not (CMYK JPEGs, for one).
    try:
        from PIL import Image

        with Image.open(path) as im:
            return tf.constant(np.asarray(im.convert("RGB"), np.uint8))
    except Exception:  # noqa: BLE001 - any PIL failure means "corrupt"
        pass
    raise ValueError(
        f"Image '{path}' could not be decoded; it may be corrupt or truncated: {cause}"
    )


def _load_image(path):
    # Decoding in a py_function costs about 2x the in-graph decode, but a
    # corrupt file then fails with its name instead of TF's anonymous
    # "Invalid JPEG data"; a captioning step is far slower than either.
    image = tf.py_function(_decode_image_or_raise, [path], tf.uint8)
    image.set_shape([None, None, 3])
    return image


def _image_caption_dataset(image_paths, captions, image_ids):
    """Dataset of `{"images", "captions", "image_id"}` from file lists."""
    for path in image_paths:
        _read_header(path, "Image")
    lengths = [len(c) for c in captions]
    flat = [c for per_image in captions for c in per_image]
    slices = {
        "path": tf.constant(image_paths, tf.string),
        "captions": tf.RaggedTensor.from_row_lengths(
            tf.constant(flat, tf.string), tf.constant(lengths, tf.int64)
        ),
        "image_id": tf.constant(image_ids, tf.int64),
    }

    def load(example):
        return {
            "images": _load_image(example["path"]),
            "captions": example["captions"],
            "image_id": example["image_id"],
        }

    dataset = tf.data.Dataset.from_tensor_slices(slices)
    return dataset.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def _warn_skipped(count, total, listing, image_dir, examples):
    shown = ", ".join(examples[:3]) + (", ..." if count > 3 else "")
    warnings.warn(
        f"{count} of {total} images listed in '{listing}' are not in '{image_dir}' "
        f"and are skipped ({shown})",
        stacklevel=3,
    )


def _coco_caption_paths(root, split):
    """`(caption JSON, image folder)` of a COCO 2017 split."""
    if split == "validation":
        split = "val"
    if not isinstance(split, str) or not split:
        raise ValueError(
            f"split must be a non-empty string such as 'train' or 'val'; got {split!r}"
        )
    root = os.fspath(root)
    return (
        os.path.join(root, "annotations", f"captions_{split}2017.json"),
        os.path.join(root, f"{split}2017"),
    )


def coco_captions(root, split="train"):
    """Reads a COCO 2017 captions split in the official layout.

    Images listed in the caption JSON but absent from disk are counted and
    skipped, with one warning giving how many (a partial download or a
    slice of COCO still loads); if none is on disk, a `ValueError` says so.
    Images without any caption are skipped silently: they cannot train or
    score a captioner. Every image that is kept is checked up front (it
    exists and has a PNG or JPEG header), as in `folders.folder_dataset`,
    and one whose data turns out corrupt when read fails with its path in
    the error. Greyscale images are returned as RGB.

    Args:
        root: str. COCO root holding `annotations/captions_{split}2017.json`
            and `{split}2017/`.
        split: str. `"train"` or `"val"` (`"validation"` is accepted for
            `"val"`). Defaults to `"train"`.

    Returns:
        A `tf.data.Dataset` of dicts `{"images": uint8 (H, W, 3),
        "captions": tf.string (num_captions,), "image_id": int64}`, one per
        image, in increasing `image_id` order. Captions are the JSON's
        strings with surrounding whitespace stripped, in annotation order.

    Raises:
        ValueError: if the JSON is missing or malformed (naming its path),
            if no listed image is on disk, or if an image file is empty or
            not a PNG/JPEG (naming the file).

    Examples:
        >>> ds = coco_captions("coco", "val")  # doctest: +SKIP
        >>> ex = next(iter(ds))  # doctest: +SKIP
        >>> ex["captions"].shape  # doctest: +SKIP
        TensorShape([5])
    """
    root = os.fspath(root)
    json_path, image_dir = _coco_caption_paths(root, split)
    if split == "validation":
        split = "val"
    if not os.path.isfile(json_path):
        raise ValueError(
            f"COCO caption file '{json_path}' does not exist (root={root!r}, split={split!r}); "
            "expected root/annotations/captions_{split}2017.json and root/{split}2017/"
        )
    try:
        with open(json_path, encoding="utf-8") as f:
            data = json.load(f)
        images = {int(im["id"]): im["file_name"] for im in data["images"]}
        by_image = collections.defaultdict(list)
        for ann in data["annotations"]:
            caption = ann["caption"]
            if caption is None:  # no caption, not the reference "None"
                continue
            if not isinstance(caption, str):
                raise TypeError(f"annotation {ann.get('id')!r} has caption {caption!r}")
            by_image[int(ann["image_id"])].append(caption.strip())
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise ValueError(
            f"COCO caption file '{json_path}' is not a valid COCO captions JSON "
            f"(needs 'images' with id/file_name and 'annotations' with image_id/caption): "
            f"{type(e).__name__}: {e}"
        ) from None

    listed = sorted(i for i in by_image if i in images)
    paths, captions, ids, missing = [], [], [], []
    for image_id in listed:
        path = os.path.join(image_dir, images[image_id])
        if not os.path.isfile(path):
            missing.append(images[image_id])
            continue
        paths.append(path)
        captions.append(by_image[image_id])
        ids.append(image_id)
    if not paths:
        raise ValueError(
            f"None of the {len(listed)} captioned images listed in '{json_path}' "
            f"is in '{image_dir}'"
        )
    if missing:
        _warn_skipped(len(missing), len(listed), json_path, image_dir, missing)
    return _image_caption_dataset(paths, captions, ids)


_FLICKR_SPLIT_FILES = {
    "train": "Flickr_8k.trainImages.txt",
    "val": "Flickr_8k.devImages.txt",
    "dev": "Flickr_8k.devImages.txt",
    "validation": "Flickr_8k.devImages.txt",
    "test": "Flickr_8k.testImages.txt",
}


def _flickr_text_file(root, name):
    # The official Flickr8k_text.zip is unpacked either into root or into
    # root/Flickr8k_text/.
    for folder in (root, os.path.join(root, "Flickr8k_text")):
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            return path
    raise ValueError(
        f"Flickr8k file '{name}' is in neither '{root}' nor '{os.path.join(root, 'Flickr8k_text')}'"
    )


def _read_flickr_tokens(path):
    captions = collections.defaultdict(dict)
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            key, tab, caption = line.partition("\t")
            name, hash_, k = key.rpartition("#")
            if not tab or not hash_ or not name or not k.strip().isdigit():
                raise ValueError(
                    f"'{path}' line {number} is not 'name.jpg#k<TAB>caption': {line[:80]!r}"
                )
            captions[name.strip()][int(k)] = caption.strip()
    return captions


def flickr8k_captions(root, split="train"):
    """Reads a Flickr8k split in the layout of the official archives.

    `Flickr8k.token.txt` holds lines `name.jpg#k<TAB>caption` (k = 0..4),
    `Flickr_8k.{train,dev,test}Images.txt` one file name a line (these text
    files may sit in `root` or in `root/Flickr8k_text/`) and the images are
    in `root/Flicker8k_Dataset/` (the archive's spelling). As for COCO,
    listed images absent from disk or without captions are counted and
    skipped with one warning each, every kept image is header-checked up
    front, and a corrupt one fails with its path when read.

    Args:
        root: str. Flickr8k root folder.
        split: str. `"train"`, `"val"` (or `"dev"`, `"validation"`) or
            `"test"`. Defaults to `"train"`.

    Returns:
        A `tf.data.Dataset` of dicts `{"images": uint8 (H, W, 3),
        "captions": tf.string (num_captions,), "image_id": int64}` in the
        order of the split file. `image_id` is the Flickr photo id, the
        number before the first `_` of the file name (`"1000268201_693b08cb0e.jpg"`
        has id 1000268201).

    Raises:
        ValueError: for an unknown split, a missing text file or image
            folder, a malformed token line (naming file and line), a file
            name without a numeric photo id, two files with one id, no
            image left, or an empty or non-image file (naming it).

    Examples:
        >>> ds = flickr8k_captions("Flickr8k", "test")  # doctest: +SKIP
    """
    root = os.fspath(root)
    if split not in _FLICKR_SPLIT_FILES:
        raise ValueError(f"split must be one of {sorted(_FLICKR_SPLIT_FILES)}; got {split!r}")
    token_path = _flickr_text_file(root, "Flickr8k.token.txt")
    list_path = _flickr_text_file(root, _FLICKR_SPLIT_FILES[split])
    image_dir = os.path.join(root, "Flicker8k_Dataset")
    if not os.path.isdir(image_dir):
        raise ValueError(f"Flickr8k image folder '{image_dir}' does not exist (root={root!r})")
    tokens = _read_flickr_tokens(token_path)
    with open(list_path, encoding="utf-8") as f:
        names = list(dict.fromkeys(line.strip() for line in f if line.strip()))
    if not names:
        raise ValueError(f"Flickr8k split list '{list_path}' lists no images")

    paths, captions, ids, missing, uncaptioned = [], [], [], [], []
    seen = {}
    for name in names:
        if name not in tokens:
            uncaptioned.append(name)
            continue
        path = os.path.join(image_dir, name)
        if not os.path.isfile(path):
            missing.append(name)
            continue
        head = name.split("_", 1)[0]
        if not head.isdigit():
            raise ValueError(
                f"Flickr8k file name {name!r} in '{list_path}' does not start with a "
                "numeric Flickr photo id ('<id>_<secret>.jpg')"
            )
        if int(head) in seen:
            raise ValueError(
                f"Flickr8k files {seen[int(head)]!r} and {name!r} share photo id {head}"
            )
        seen[int(head)] = name
        paths.append(path)
        captions.append([tokens[name][k] for k in sorted(tokens[name])])
        ids.append(int(head))
    if uncaptioned:
        warnings.warn(
            f"{len(uncaptioned)} of {len(names)} images listed in '{list_path}' have no "
            f"caption in '{token_path}' and are skipped ({', '.join(uncaptioned[:3])}"
            + (", ...)" if len(uncaptioned) > 3 else ")"),
            stacklevel=2,
        )
    if missing:
        _warn_skipped(len(missing), len(names), list_path, image_dir, missing)
    if not paths:
        raise ValueError(f"No image of '{list_path}' is both captioned and in '{image_dir}'")
    return _image_caption_dataset(paths, captions, ids)


def shapes_captions(num_images, image_size=64, seed=0, max_instances=3):
    """Returns the procedural shapes with their captions and annotations.

    Captions name every shape in instance order, e.g. `"a red circle above
    a blue square and a green triangle"` (see `shapes.generate_shapes`).
    Besides the caption-dataset keys, each element keeps what the generator
    gives: `segmentation_masks` (int32 (H, W), ids of `shapes.CLASS_NAMES`),
    `instance_masks` (uint8 (max_instances, H, W), visible part of each
    shape, zero-padded), `bounding_boxes` (`{"boxes": float32
    (max_instances, 4) "xyxy" pixels, "labels": int32 (max_instances,)}`,
    padded with -1) and `num_instances` (int32). Instance `j` is the `j`-th
    shape named in the caption; its class is `labels[j]`. Colours are not
    stored: they are read back from the pixels by `shapes_caption_objects`,
    which stays right after augmentation reorders or drops instances.

    Args:
        num_images: int. Number of images.
        image_size: int or tuple `(height, width)`, at least 24. Defaults to
            `64`.
        seed: int. Generation seed. Defaults to `0`.
        max_instances: int. Maximum shapes per image. Defaults to `3`.

    Returns:
        A `tf.data.Dataset` of dicts with `images` uint8 (H, W, 3),
        `captions` tf.string (1,), `image_id` int64 (0..num_images - 1)
        and the annotation keys above.

    Raises:
        ValueError: if `num_images` is negative, `image_size` below 24 or
            `max_instances` below 1.

    Examples:
        >>> ex = next(iter(shapes_captions(2, image_size=32)))
        >>> ex["captions"].shape
        TensorShape([1])
    """
    data = shapes.generate_shapes(num_images, image_size, max_instances, seed)
    n = len(data["captions"])
    elements = {
        "images": data["images"],
        "captions": np.array(data["captions"], dtype=object).reshape(n, 1),
        "image_id": np.arange(n, dtype=np.int64),
        "segmentation_masks": data["segmentation_masks"],
        "instance_masks": data["instance_masks"],
        "bounding_boxes": {"boxes": data["boxes"], "labels": data["labels"]},
        "num_instances": data["num_instances"],
    }
    return tf.data.Dataset.from_tensor_slices(elements)


def shapes_caption_objects(example):
    """Lists the named objects of one shapes element: masks, nouns, colours.

    The colour of an instance is the `shapes.PALETTE` entry nearest to the
    median of its pixels, so it survives resizing and cropping.

    Args:
        example: dict. One (unbatched) element of `shapes_captions`, as
            tensors or numpy arrays, possibly augmented.

    Returns:
        A dict with `masks` bool (K, H, W), `names` (list of K class names
        such as `"circle"`) and `colors` (list of K colour names such as
        `"red"`), for the K instances present, in instance order.

    Raises:
        ValueError: if `example` lacks `images`, `instance_masks` or
            `bounding_boxes["labels"]`, or a label is not a shapes class.

    Examples:
        >>> ex = next(iter(shapes_captions(1, image_size=32)))
        >>> objects = shapes_caption_objects(ex)
        >>> sorted(objects)
        ['colors', 'masks', 'names']
    """
    if not isinstance(example, dict) or not {"images", "instance_masks", "bounding_boxes"} <= set(
        example
    ):
        raise ValueError(
            "example must be a shapes_captions element with 'images', 'instance_masks' "
            f"and 'bounding_boxes'; got {type(example).__name__}"
            + (f" with keys {sorted(example)}" if isinstance(example, dict) else "")
        )
    image = np.asarray(example["images"], np.float32)
    masks = np.asarray(example["instance_masks"]).astype(bool)
    labels = np.asarray(example["bounding_boxes"]["labels"]).astype(np.int64)
    keep = [j for j, label in enumerate(labels) if label != -1 and masks[j].any()]
    bad = [int(labels[j]) for j in keep if not 1 <= labels[j] < shapes.NUM_CLASSES]
    if bad:
        raise ValueError(
            f"example['bounding_boxes']['labels'] holds {bad}; expected shapes class ids "
            f"1..{shapes.NUM_CLASSES - 1} or -1 padding"
        )
    palette_names = list(shapes.PALETTE)
    palette = np.array([shapes.PALETTE[c] for c in palette_names], np.float32)
    colors = []
    for j in keep:
        median = np.median(image[masks[j]], axis=0)
        colors.append(palette_names[int(np.argmin(np.linalg.norm(palette - median, axis=1)))])
    return {
        "masks": masks[keep],
        "names": [shapes.CLASS_NAMES[labels[j]] for j in keep],
        "colors": colors,
    }


def tfds_caption_dataset(name="coco_captions", split="train", data_dir=None, download=True):
    """Loads TensorFlow Datasets' `coco_captions` in the caption contract.

    `tensorflow_datasets` is imported only here. Its splits are Karpathy's:
    `"train"`, `"val"`, `"test"` and `"restval"`.

    Args:
        name: str. `"coco_captions"`, optionally with a version
            (`"coco_captions:1.*.*"`). Defaults to `"coco_captions"`.
        split: str. tfds split; `"validation"` is accepted for `"val"`.
            Defaults to `"train"`.
        data_dir: str. tfds data folder; `None` uses the tfds default.
            Defaults to `None`.
        download: bool. Whether tfds may download and prepare the data
            (about 38 GB) when it is not prepared in `data_dir`. Defaults
            to `True`.

    Returns:
        A `tf.data.Dataset` of `{"images", "captions", "image_id"}` dicts.

    Raises:
        ValueError: if `name` is not `coco_captions`.
        RuntimeError: if tfds cannot load it (not prepared and offline or
            `download=False`), with the cause.

    Examples:
        >>> ds = tfds_caption_dataset(split="val", data_dir="~/tfds")  # doctest: +SKIP
    """
    if not isinstance(name, str) or name.split("/")[0].split(":")[0] != "coco_captions":
        raise ValueError(f"name must be 'coco_captions' (optionally with a version); got {name!r}")
    if split == "validation":
        split = "val"
    dataset = load_tfds(name, split, data_dir, download)

    def convert(example):
        image = tf.ensure_shape(tf.cast(example["image"], tf.uint8), [None, None, 3])
        return {
            "images": image,
            "captions": tf.strings.strip(example["captions"]["text"]),
            "image_id": tf.cast(example["image/id"], tf.int64),
        }

    return dataset.map(convert, num_parallel_calls=tf.data.AUTOTUNE)


def _num_images(dataset):
    count = int(dataset.cardinality())
    return count if count >= 0 else None


@register_dataset("shapes", "captions", generated=True)
def _shapes(arg, split, num_images=None, image_size=64, max_instances=3, seed=0):
    """Procedural shapes captioned with colour, kind and layout (`shapes_captions`)."""
    options = dict(image_size=image_size, max_instances=max_instances, seed=seed)
    if num_images is not None:
        options["num_images"] = num_images
    dataset = shapes_captions(**shapes_split_options(split, options))
    info = CaptionDatasetInfo(_num_images(dataset), object_names=shapes.CLASS_NAMES[1:])
    return dataset, info


@register_dataset("coco", "captions", arg="<root>")
def _coco(root, split):
    """COCO 2017 captions in the official layout (`coco_captions`)."""
    dataset = coco_captions(root, split)
    return dataset, CaptionDatasetInfo(_num_images(dataset), _coco_caption_paths(root, split)[0])


@register_dataset("flickr8k", "captions", arg="<root>")
def _flickr8k(root, split):
    """Flickr8k in the layout of the official archives (`flickr8k_captions`)."""
    dataset = flickr8k_captions(root, split)
    token_path = _flickr_text_file(os.fspath(root), "Flickr8k.token.txt")
    return dataset, CaptionDatasetInfo(_num_images(dataset), token_path)


@register_dataset("tfds", "captions", arg="coco_captions")
def _tfds(name, split, data_dir=None, download=True):
    """TensorFlow Datasets' `coco_captions`, Karpathy splits (`tfds_caption_dataset`)."""
    dataset = tfds_caption_dataset(name, split, data_dir=data_dir, download=download)
    return dataset, CaptionDatasetInfo(_num_images(dataset))


def load_caption_dataset(spec, split="train", **kwargs):
    """Resolves a caption dataset spec string to `(dataset, info)`.

    `load_dataset("captions", spec, split, **kwargs)`: the accepted specs
    are those of `list_datasets("captions")`. Built in: `"shapes"` (kwargs
    `num_images` (default 1000 for train, 200 otherwise), `image_size`,
    `max_instances`, `seed`; `"val"` and `"test"` use seeds disjoint from
    `"train"`, as in `load_segmentation_dataset`), `"coco:<root>"`,
    `"flickr8k:<root>"` and `"tfds:coco_captions"` (kwargs `data_dir`,
    `download`).

    Args:
        spec: str. The dataset spec.
        split: str. Split name. Defaults to `"train"`.
        **kwargs: Options of the chosen source, as above.

    Returns:
        A tuple `(dataset, info)`: a `tf.data.Dataset` of `{"images",
        "captions", "image_id"}` dicts (plus the shapes annotations for
        `"shapes"`) and a `CaptionDatasetInfo`.

    Raises:
        ValueError: for an unknown spec or split, a keyword the source does
            not take (naming it and the spec), or the loader's errors.
        RuntimeError: if tfds cannot load the data (e.g. offline).

    Examples:
        >>> ds, info = load_caption_dataset("shapes", "val", num_images=4, image_size=32)
        >>> int(ds.cardinality()), info.num_images
        (4, 4)
    """
    return load_dataset("captions", spec, split, **kwargs)


def caption_references(dataset):
    """Collects `{image_id: [caption, ...]}` from a caption dataset.

    Iterating decodes every image; for a large set on disk, reading the
    annotation file directly is faster.

    Args:
        dataset: `tf.data.Dataset` of caption dicts (unbatched).

    Returns:
        A dict from int image id to a list of str captions, the
        `references` argument of `caption_metrics.score_captions`.

    Raises:
        ValueError: if the elements lack `captions` or `image_id`.

    Examples:
        >>> refs = caption_references(shapes_captions(2, image_size=32))
        >>> sorted(refs)
        [0, 1]
    """
    spec = dataset.element_spec if isinstance(dataset, tf.data.Dataset) else None
    if not isinstance(spec, dict) or not {"captions", "image_id"} <= set(spec):
        raise ValueError(
            "dataset must be a tf.data.Dataset of dicts with 'captions' and 'image_id'; "
            f"got {spec if spec is not None else type(dataset).__name__}"
        )
    refs = {}
    for ex in dataset.map(lambda ex: (ex["image_id"], ex["captions"])).as_numpy_iterator():
        refs[int(ex[0])] = [c.decode("utf-8") for c in ex[1]]
    return refs


# ---------------------------------------------------------------------------
# Training pipeline
# ---------------------------------------------------------------------------


def _warn_empty(image_id, dropped):
    warnings.warn(
        f"caption_pipeline: image_id {int(image_id)} has {int(dropped)} empty caption(s) "
        "(no word after standardisation); skipped",
        stacklevel=2,
    )
    return 0


def caption_pipeline(
    dataset,
    vocabulary,
    batch_size,
    image_size,
    max_length,
    shuffle=None,
    seed=0,
    one_caption_per_image="random",
):
    """Batches a caption dataset for teacher-forced training.

    Each caption becomes `ids = <start> w1 .. wn <end> <pad>..` of length
    `max_length`; the model reads `ids[:-1]` and predicts `ids[1:]`, so
    target 0 marks padding (use a loss with `ignore_class=0`). Images are
    resized to `image_size` bilinearly (antialiased) without cropping, so
    the whole image, and any mask of it, maps onto the attention grid.
    Order: pick captions, resize and encode, shuffle, batch (the last batch
    may be smaller), prefetch.

    Args:
        dataset: `tf.data.Dataset` of dicts with `images` and `captions`
            (see `load_caption_dataset`).
        vocabulary: `CaptionVocabulary`.
        batch_size: int. Batch size.
        image_size: int, `(height, width)` or `None`. `None` keeps the
            size, which then must be the same for every image.
        max_length: int. Caption length with `<start>` and `<end>`; the
            model sees `max_length - 1` steps.
        shuffle: int or `None`. Shuffle buffer size (examples, after
            resizing); `None` or 0 keeps the order. Defaults to `None`.
        seed: int. Seed of shuffling and caption choice. Defaults to `0`.
        one_caption_per_image: `"random"` (one caption drawn per image,
            anew each epoch) or `"all"` (every caption is an example).
            Defaults to `"random"`.

    Returns:
        A `tf.data.Dataset` of `((images, input_ids), target_ids)` with
        uint8 images `(B, H, W, 3)` (models normalise inside) and int32
        ids `(B, max_length - 1)`.

    Raises:
        ValueError: for a bad argument (naming it). Iterating raises
            `InvalidArgumentError` for a caption with no known word.

    Examples:
        >>> ds = shapes_captions(4, image_size=32)
        >>> vocab = CaptionVocabulary.build(caption_references(ds).values())
        >>> batches = caption_pipeline(ds, vocab, 2, 32, max_length=12)
        >>> (images, inputs), targets = next(iter(batches))
        >>> inputs.shape, targets.shape
        (TensorShape([2, 11]), TensorShape([2, 11]))
    """
    if not isinstance(dataset, tf.data.Dataset):
        raise ValueError(f"dataset must be a tf.data.Dataset; got {type(dataset).__name__}")
    spec = dataset.element_spec
    if not isinstance(spec, dict) or not {"images", "captions"} <= set(spec):
        raise ValueError(
            f"dataset elements must be dicts with 'images' and 'captions'; got element_spec {spec}"
        )
    if spec["captions"].shape.rank != 1:
        raise ValueError(
            "dataset must be unbatched with 'captions' of shape (num_captions,); got "
            f"shape {spec['captions'].shape}"
        )
    if not isinstance(vocabulary, CaptionVocabulary):
        raise ValueError(f"vocabulary must be a CaptionVocabulary; got {type(vocabulary).__name__}")
    if not isinstance(batch_size, numbers.Integral) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1; got {batch_size!r}")
    if not isinstance(max_length, numbers.Integral) or max_length < 3:
        raise ValueError(f"max_length must be an int >= 3; got {max_length!r}")
    if shuffle is not None and (not isinstance(shuffle, numbers.Integral) or shuffle < 0):
        raise ValueError(f"shuffle must be None or an int >= 0; got {shuffle!r}")
    if one_caption_per_image not in ("random", "all"):
        raise ValueError(
            f"one_caption_per_image must be 'random' or 'all'; got {one_caption_per_image!r}"
        )
    size = check_size(image_size, "image_size", none_ok=True)
    if size is None and not spec["images"].shape[:2].is_fully_defined():
        raise ValueError(
            "image_size=None needs images of one static size; these are "
            f"{spec['images'].shape}: pass image_size"
        )

    def skip_empty(example):
        """Drops captions with no word, warning with the image's id."""
        captions = tf.reshape(example["captions"], [-1])
        words = tf.strings.split(standardize_captions(captions)).row_lengths()
        keep = words > 0
        dropped = tf.reduce_sum(tf.cast(~keep, tf.int32))
        image_id = example.get("image_id", tf.constant(-1, tf.int64))
        warned = tf.cond(
            dropped > 0,
            lambda: tf.py_function(_warn_empty, [image_id, dropped], tf.int32),
            lambda: tf.constant(0, tf.int32),
        )
        with tf.control_dependencies([warned]):
            return {**example, "captions": tf.boolean_mask(captions, keep)}

    dataset = dataset.map(skip_empty).filter(lambda e: tf.size(e["captions"]) > 0)

    def resize(image):
        if size is None:
            return tf.cast(image, tf.uint8)
        image = tf.image.resize(image, size, method="bilinear", antialias=True)
        return tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)

    def count(captions):
        n = tf.shape(captions, out_type=tf.int64)[0]
        check = tf.debugging.Assert(n > 0, ["caption_pipeline: an image has no caption"])
        with tf.control_dependencies([check]):
            return tf.identity(n)

    if one_caption_per_image == "random":
        draws = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)

        def pick(example, draw):
            captions = example["captions"]
            caption = captions[tf.math.floormod(draw, count(captions))]
            return resize(example["images"]), vocabulary.encode(caption, max_length)

        dataset = tf.data.Dataset.zip(dataset, draws).map(
            pick, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
        )
    else:

        def expand(example):
            captions = example["captions"]
            images = tf.repeat(resize(example["images"])[None], count(captions), axis=0)
            return images, vocabulary.encode(captions, max_length)

        dataset = dataset.map(expand, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        dataset = dataset.unbatch()
    if shuffle:
        dataset = dataset.shuffle(shuffle, seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size, drop_remainder=False)
    dataset = dataset.map(lambda images, ids: ((images, ids[:, :-1]), ids[:, 1:]))
    return dataset.prefetch(tf.data.AUTOTUNE)


__all__ = [
    "END",
    "PAD",
    "SPECIAL_TOKENS",
    "START",
    "UNK",
    "CaptionDatasetInfo",
    "CaptionVocabulary",
    "caption_pipeline",
    "caption_references",
    "coco_captions",
    "flickr8k_captions",
    "load_caption_dataset",
    "shapes_caption_objects",
    "shapes_captions",
    "standardize_captions",
    "tfds_caption_dataset",
]
