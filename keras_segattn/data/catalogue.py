"""The dataset catalogue: every dataset spec of the package in one registry.

A dataset spec is a string, `"kind"` (`"shapes"`) or `"kind:arg"`
(`"camvid:../shared/data/camvid"`, `"tfds:oxford_iiit_pet"`). Each entry of
the catalogue is one kind for one data type, the package's three example
contracts (`DATA_TYPES`):

- `"segmentation"`: dicts with `images` and `segmentation_masks`; info
  `DatasetInfo`.
- `"instances"`: dicts with `images`, `bounding_boxes` (and `instance_masks`,
  `image_id`, `is_crowd`, `num_instances`); info `InstanceDatasetInfo`.
- `"captions"`: dicts with `images`, `captions` and `image_id`; info
  `CaptionDatasetInfo`.

`load_dataset(data_type, spec, split, **options)` parses the spec once,
finds the entry and calls its loader as `loader(arg, split, **options)`,
`arg` being the text after the colon (`None` for a kind that takes none).
Every loader returns `(dataset, info)`; the catalogue checks both against
the data type's contract and raises one `ValueError` for a bad spec or an
option the loader does not take. Generic code asks the catalogue whether a
spec is generated on the fly (`is_generated`, `generation_options`) rather
than comparing names.

Adding a dataset is registering its loader, with no branch to edit. A
folder of PNG images and masks, say `root/{split}/images/*.png` and
`root/{split}/masks/*.png`:

    import glob
    from keras_segattn.data import DatasetInfo, folder_dataset, register_dataset

    @register_dataset("pngdir", "segmentation", arg="<root>")
    def load_pngdir(root, split, num_classes=3):
        images = sorted(glob.glob(f"{root}/{split}/images/*.png"))
        masks = sorted(glob.glob(f"{root}/{split}/masks/*.png"))
        names = tuple(f"class_{i}" for i in range(num_classes))
        return folder_dataset(images, masks, num_classes, 255), DatasetInfo(num_classes, 255, names)

after which `load_dataset("segmentation", "pngdir:/data/x", "val")`,
`load_segmentation_dataset("pngdir:/data/x", num_classes=5)` and the
command line's `--data pngdir:/data/x` all read it.
"""

import dataclasses
import inspect
from collections.abc import Callable

import tensorflow as tf

# ---------------------------------------------------------------------------
# What a loader returns besides the dataset
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """What a model needs to know about a segmentation dataset.

    Args:
        num_classes: int. Number of classes, ids `0..num_classes - 1`.
        ignore_class: int. Mask id of pixels without a label.
        class_names: tuple of str. One name per class id.
        background_class: int or `None`. The "stuff" class that DeconvNet's
            object-centred crops never centre on (0 for shapes and VOC;
            CamVid has none).
    """

    num_classes: int
    ignore_class: int
    class_names: tuple
    background_class: int | None = None


@dataclasses.dataclass(frozen=True)
class InstanceDatasetInfo:
    """What a model and an evaluator need to know about an instance dataset.

    Args:
        num_classes: int. Number of class ids, background (0) included:
            81 for COCO, 4 for the shapes.
        class_names: tuple of str. One name per class id, `"background"`
            first.
        category_ids: tuple of int. The dataset's own category id of each
            class id (`category_ids[label]`); entry 0 is 0.
        annotation_file: str or `None`. The COCO JSON the data came from,
            which `keras_segattn.evaluation.instance.evaluate_instances` can
            use directly as ground truth.
        image_ids: tuple of int or `None`. The images the dataset yields,
            when it is a subset of those in `annotation_file` (images
            missing on disk are skipped).
        has_masks: bool. Whether elements carry `instance_masks` (tfds'
            `coco` has boxes only).
    """

    num_classes: int
    class_names: tuple
    category_ids: tuple
    annotation_file: str | None = None
    image_ids: tuple | None = None
    has_masks: bool = True

    @property
    def category_id_to_label(self):
        """Dict from the dataset's category id to the contiguous class id."""
        return {c: label for label, c in enumerate(self.category_ids) if label > 0}


@dataclasses.dataclass(frozen=True)
class CaptionDatasetInfo:
    """What a captioning recipe and an evaluator need to know about a
    caption dataset.

    Args:
        num_images: int or `None`. How many images (elements) the dataset
            yields; `None` when unknown before reading it (tfds).
        annotation_file: str or `None`. The caption file the data came from
            (COCO's `captions_{split}2017.json`, Flickr8k's
            `Flickr8k.token.txt`), from which references can be read without
            decoding any image. Defaults to `None` (generated or tfds data).
        object_names: tuple of str. The class names of the objects the
            captions name, when elements carry where each one is
            (`instance_masks`, `bounding_boxes`; the shapes): what attention
            localisation is measured against. Empty otherwise. Defaults to
            `()`.
    """

    num_images: int | None = None
    annotation_file: str | None = None
    object_names: tuple = ()


@dataclasses.dataclass(frozen=True)
class DataType:
    """One example contract of the package.

    Attributes:
        name: str. `"segmentation"`, `"instances"` or `"captions"`.
        info_class: type. The info dataclass its loaders return.
        keys: tuple of str. Keys every element dict has.
    """

    name: str
    info_class: type
    keys: tuple


DATA_TYPES = {
    data_type.name: data_type
    for data_type in (
        DataType("segmentation", DatasetInfo, ("images", "segmentation_masks")),
        DataType("instances", InstanceDatasetInfo, ("images", "bounding_boxes")),
        DataType("captions", CaptionDatasetInfo, ("images", "captions", "image_id")),
    )
}


# ---------------------------------------------------------------------------
# The registry
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class DatasetEntry:
    """What the catalogue knows about one dataset kind of one data type.

    Attributes:
        kind: str. The spec's part before the colon, e.g. `"camvid"`.
        data_type: str. A key of `DATA_TYPES`.
        loader: callable. `loader(arg, split, **options)` returning
            `(dataset, info)`.
        arg: str or `None`. How the argument after the colon is shown in
            listings (`"<root>"`); `None` for a kind that takes none.
        generated: bool. Whether the data is made on the fly, so that how
            many images and at which size are options of the loader rather
            than properties of files.
        options: tuple of str or `None`. The keyword options the loader
            takes (read from its signature); `None` if it takes any.
        doc: str. One line on what the dataset is.
    """

    kind: str
    data_type: str
    loader: Callable
    arg: str | None
    generated: bool
    options: tuple | None
    doc: str

    @property
    def pattern(self):
        """The spec as listed: `"shapes"`, `"camvid:<root>"`."""
        return self.kind if self.arg is None else f"{self.kind}:{self.arg}"


_CATALOGUE = {}  # (data_type, kind) -> DatasetEntry, in registration order


def _check_data_type(data_type):
    if data_type not in DATA_TYPES:
        raise ValueError(f"data_type must be one of {sorted(DATA_TYPES)}; got {data_type!r}")
    return data_type


def _loader_options(loader):
    """The keyword options of `loader(arg, split, ...)`, `None` for any."""
    try:
        parameters = list(inspect.signature(loader).parameters.values())
    except (TypeError, ValueError):  # builtins without a signature
        return None
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    leading = [p for p in parameters[:2] if p.kind in positional]
    if len(leading) < 2 and not any(p.kind == p.VAR_POSITIONAL for p in parameters):
        raise ValueError(
            f"loader must take (arg, split, **options); got {getattr(loader, '__name__', loader)}"
            f"{inspect.signature(loader)}"
        )
    if any(p.kind == p.VAR_KEYWORD for p in parameters):
        return None
    return tuple(p.name for p in parameters[2:] if p.kind != p.VAR_POSITIONAL)


def register_dataset(kind, data_type, loader=None, *, arg=None, generated=False, doc=None):
    """Adds a dataset to the catalogue; usable as a decorator.

    Args:
        kind: str. The spec's part before the colon, without a colon.
        data_type: str. `"segmentation"`, `"instances"` or `"captions"`.
        loader: callable or `None`. `loader(arg, split, **options)`
            returning `(dataset, info)`: a `tf.data.Dataset` of the data
            type's element dicts and its info class. Its keyword parameters
            are the options the spec accepts. `None` returns a decorator.
        arg: str or `None`. How the argument after the colon is shown in
            listings and errors (`"<root>"`, `"<name>"`); `None` for a kind
            that takes no argument. Defaults to `None`.
        generated: bool. Whether the data is made on the fly (its size and
            number of images are options). Defaults to `False`.
        doc: str or `None`. One line on the dataset. Defaults to the first
            line of the loader's docstring.

    Returns:
        `loader`, or a decorator registering the function it decorates.

    Raises:
        ValueError: for a bad `kind`, `data_type`, `arg` or loader, or a
            kind already registered for `data_type`.

    Examples:
        >>> def two_shapes(arg, split):
        ...     from keras_segattn.data import shapes_dataset
        ...     return shapes_dataset(2, image_size=32), DatasetInfo(4, 255, ("a", "b", "c", "d"))
        >>> _ = register_dataset("two_shapes", "segmentation", two_shapes)
        >>> ds, info = load_dataset("segmentation", "two_shapes")
        >>> int(ds.cardinality())
        2
        >>> _ = unregister_dataset("two_shapes", "segmentation")
    """
    if loader is None:
        return lambda function: register_dataset(
            kind, data_type, function, arg=arg, generated=generated, doc=doc
        )
    if not isinstance(kind, str) or not kind or ":" in kind or kind != kind.strip():
        raise ValueError(f"kind must be a non-empty string without ':' or spaces; got {kind!r}")
    _check_data_type(data_type)
    if arg is not None and (not isinstance(arg, str) or not arg):
        raise ValueError(f"arg must be None or a non-empty string such as '<root>'; got {arg!r}")
    if not callable(loader):
        raise ValueError(f"loader must be callable; got {type(loader).__name__}")
    if (data_type, kind) in _CATALOGUE:
        raise ValueError(
            f"A {data_type} dataset of kind {kind!r} is already registered "
            f"({_CATALOGUE[data_type, kind].pattern!r}); unregister_dataset it first."
        )
    if doc is None:
        doc = (inspect.getdoc(loader) or "").split("\n", 1)[0]
    _CATALOGUE[data_type, kind] = DatasetEntry(
        kind, data_type, loader, arg, bool(generated), _loader_options(loader), doc
    )
    return loader


def unregister_dataset(kind, data_type):
    """Removes a dataset from the catalogue and returns its `DatasetEntry`.

    Raises:
        ValueError: if `kind` is not registered for `data_type`.
    """
    _check_data_type(data_type)
    if (data_type, kind) not in _CATALOGUE:
        raise ValueError(
            f"No {data_type} dataset of kind {kind!r} is registered; registered: "
            f"{[e.kind for e in list_datasets(data_type)]}"
        )
    return _CATALOGUE.pop((data_type, kind))


def list_datasets(data_type=None, *, generated=None):
    """Returns the catalogue's entries, in registration order.

    Args:
        data_type: str or `None`. Only the entries of this data type.
            Defaults to `None` (all).
        generated: bool or `None`. Only the generated (`True`) or read
            (`False`) datasets. Defaults to `None` (both).

    Returns:
        A list of `DatasetEntry`; `entry.pattern` is the spec as listed.

    Examples:
        >>> [e.pattern for e in list_datasets("captions")][:2]
        ['shapes', 'coco:<root>']
    """
    if data_type is not None:
        _check_data_type(data_type)
    return [
        entry
        for entry in _CATALOGUE.values()
        if (data_type is None or entry.data_type == data_type)
        and (generated is None or entry.generated == bool(generated))
    ]


def _accepted(data_type):
    return ", ".join(repr(e.pattern) for e in list_datasets(data_type)) or "none registered"


def _split_spec(spec):
    kind, colon, arg = spec.partition(":")
    return kind, (arg if colon else None)


def get_dataset_entry(data_type, spec):
    """Parses `spec` and finds its entry.

    Args:
        data_type: str. A key of `DATA_TYPES`.
        spec: str. `"kind"` or `"kind:arg"`.

    Returns:
        A tuple `(entry, arg)`: the `DatasetEntry` and the text after the
        colon (`None` for a kind that takes no argument).

    Raises:
        ValueError: naming the spec and the accepted specs of `data_type`
            when `spec` is not a string, its kind is not registered for
            `data_type`, or it has an argument where the kind takes none
            (or none where one is needed).
    """
    _check_data_type(data_type)
    if not isinstance(spec, str):
        raise ValueError(
            f"spec must be a string, one of the {data_type} dataset specs "
            f"{_accepted(data_type)}; got {spec!r}"
        )
    kind, arg = _split_spec(spec)
    entry = _CATALOGUE.get((data_type, kind))
    if entry is None:
        raise ValueError(
            f"Unknown {data_type} dataset spec {spec!r}; expected one of {_accepted(data_type)}"
        )
    if entry.arg is None and arg is not None:
        raise ValueError(
            f"Unknown {data_type} dataset spec {spec!r}: {kind!r} takes no argument after ':'; "
            f"expected one of {_accepted(data_type)}"
        )
    if entry.arg is not None and not arg:
        raise ValueError(
            f"Unknown {data_type} dataset spec {spec!r}: {kind!r} needs an argument, as in "
            f"{entry.pattern!r}; expected one of {_accepted(data_type)}"
        )
    return entry, arg


def load_dataset(data_type, spec, split="train", **options):
    """Loads the dataset a spec names, as `(dataset, info)`.

    Args:
        data_type: str. `"segmentation"`, `"instances"` or `"captions"`.
        spec: str. A spec of one of `list_datasets(data_type)`: `"kind"`
            or `"kind:arg"`.
        split: str. Split name; which ones exist is the loader's business.
            Defaults to `"train"`.
        **options: The loader's keyword options (for the shapes:
            `num_images`, `image_size`, `max_instances`, `seed`, ...; for
            tfds: `data_dir`, ...).

    Returns:
        A tuple `(dataset, info)`: a `tf.data.Dataset` of element dicts
        with at least the data type's keys, and an instance of its info
        class (`DatasetInfo`, `InstanceDatasetInfo` or
        `CaptionDatasetInfo`).

    Raises:
        ValueError: for a bad spec (naming it and the accepted specs), an
            option the loader does not take (naming it and the spec), or
            what the loader raises (a bad split, missing files).

    Examples:
        >>> ds, info = load_dataset("captions", "shapes", "val", num_images=2, image_size=32)
        >>> info.num_images, info.object_names
        (2, ('circle', 'square', 'triangle'))
    """
    entry, arg = get_dataset_entry(data_type, spec)
    if entry.options is not None:
        unknown = sorted(set(options) - set(entry.options))
        if unknown:
            takes = f"options {list(entry.options)}" if entry.options else "no options"
            raise ValueError(
                f"Unexpected option{'s' if len(unknown) > 1 else ''} {unknown} for dataset "
                f"spec {spec!r}; it takes {takes}"
            )
    result = entry.loader(arg, split, **options)
    contract = DATA_TYPES[data_type]
    if not (isinstance(result, tuple) and len(result) == 2):
        raise ValueError(
            f"The loader of {entry.pattern!r} ({data_type}) must return (dataset, info); "
            f"got {type(result).__name__}"
        )
    dataset, info = result
    element = dataset.element_spec if isinstance(dataset, tf.data.Dataset) else None
    if not isinstance(element, dict) or not set(contract.keys) <= set(element):
        raise ValueError(
            f"The loader of {entry.pattern!r} must return a tf.data.Dataset of {data_type} dicts "
            f"with keys {list(contract.keys)}; got "
            + (f"element_spec {element}" if element is not None else type(dataset).__name__)
        )
    if not isinstance(info, contract.info_class):
        raise ValueError(
            f"The loader of {entry.pattern!r} must return a {contract.info_class.__name__} "
            f"as info; got {type(info).__name__}"
        )
    return dataset, info


def is_generated(spec):
    """Whether `spec` names a dataset generated on the fly (the shapes), for
    any data type.

    Args:
        spec: str. A dataset spec; anything else is not generated.

    Returns:
        bool.
    """
    if not isinstance(spec, str):
        return False
    kind, arg = _split_spec(spec)
    return any(
        e.kind == kind and (arg is None) == (e.arg is None) for e in list_datasets(generated=True)
    )


def generation_options(spec, **options):
    """The generation options (`num_images`, `image_size`, ...) to pass to a
    loader for `spec`: those not `None` for a generated dataset, none for a
    dataset read from disk. Generic code calls every loader the same way
    through it, without knowing which datasets are generated.

    Examples:
        >>> generation_options("shapes", num_images=4, image_size=None)
        {'num_images': 4}
        >>> generation_options("coco:/data/coco", num_images=4)
        {}
    """
    if not is_generated(spec):
        return {}
    return {key: value for key, value in options.items() if value is not None}


__all__ = [
    "DATA_TYPES",
    "CaptionDatasetInfo",
    "DataType",
    "DatasetEntry",
    "DatasetInfo",
    "InstanceDatasetInfo",
    "generation_options",
    "get_dataset_entry",
    "is_generated",
    "list_datasets",
    "load_dataset",
    "register_dataset",
    "unregister_dataset",
]
