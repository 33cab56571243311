"""MNIST from IDX files, Keras or TensorFlow Datasets.

The IDX format (LeCun et al.) is a 4-byte magic number `0x00 0x00 <dtype>
<ndim>`, `ndim` big-endian uint32 dimensions, then the big-endian data in
row-major order.
"""

import gzip
import logging
import os
import zlib

import numpy as np

logger = logging.getLogger(__name__)

ENV_VAR = "KERAS_SEGATTN_MNIST"
SPLITS = ("train", "test")

_IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"
_FILE_STEMS = {"train": "train", "test": "t10k"}


def read_idx(path):
    """Reads an IDX file, gzip-compressed or raw, into a numpy array.

    Compression is detected from the gzip magic bytes, not the file name.
    The header is checked against the file: the magic number, the dtype
    code, and that the dimensions account for exactly the bytes present.

    Args:
        path: str or path-like. The IDX file, e.g.
            `train-images-idx3-ubyte.gz`.

    Returns:
        A numpy array in native byte order with the file's shape and dtype
        (`uint8` for MNIST).

    Raises:
        ValueError: naming the file when it is missing, truncated, has
            trailing bytes, or is not an IDX (or gzipped IDX) file.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"IDX file '{path}' does not exist")
    with open(path, "rb") as f:
        data = f.read()
    if data.startswith(_GZIP_MAGIC):
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as e:
            raise ValueError(
                f"IDX file '{path}' is a corrupt or truncated gzip file: {e}"
            ) from None
    if len(data) < 4:
        raise ValueError(
            f"IDX file '{path}' is truncated: {len(data)} bytes, shorter than the "
            "4-byte magic number"
        )
    if data[0] != 0 or data[1] != 0:
        raise ValueError(
            f"IDX file '{path}' has a bad magic number {data[:4].hex()}; expected "
            "00 00 <dtype> <ndim>"
        )
    code, ndim = data[2], data[3]
    if code not in _IDX_DTYPES:
        accepted = ", ".join(f"0x{c:02x}" for c in _IDX_DTYPES)
        raise ValueError(
            f"IDX file '{path}' has unknown dtype code 0x{code:02x}; expected one of {accepted}"
        )
    if ndim == 0:
        raise ValueError(f"IDX file '{path}' declares 0 dimensions; expected at least 1")
    header_size = 4 + 4 * ndim
    if len(data) < header_size:
        raise ValueError(
            f"IDX file '{path}' is truncated: {len(data)} bytes, shorter than its "
            f"{header_size}-byte header"
        )
    shape = tuple(int(d) for d in np.frombuffer(data, ">u4", count=ndim, offset=4))
    dtype = _IDX_DTYPES[code]
    expected = header_size + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) < expected:
        raise ValueError(
            f"IDX file '{path}' is truncated: shape {shape} of {dtype.newbyteorder('=')} "
            f"needs {expected} bytes, the file has {len(data)}"
        )
    if len(data) > expected:
        raise ValueError(
            f"IDX file '{path}' has {len(data) - expected} bytes after the data of shape "
            f"{shape}; the header does not match the file"
        )
    array = np.frombuffer(data, dtype, offset=header_size).reshape(shape)
    return array.astype(dtype.newbyteorder("="))


def _find_file(folder, split, kind):
    """Returns the path of one of the four standard MNIST files, or None."""
    stem = _FILE_STEMS[split]
    ndim = 3 if kind == "images" else 1
    # The LeCun site uses "-idx3-ubyte"; some mirrors unpack to ".idx3-ubyte".
    for sep in ("-", "."):
        for ext in (".gz", ""):
            path = os.path.join(folder, f"{stem}-{kind}{sep}idx{ndim}-ubyte{ext}")
            if os.path.isfile(path):
                return path
    return None


def _has_mnist_files(folder, split):
    return all(_find_file(folder, split, kind) for kind in ("images", "labels"))


def _load_folder(folder, split):
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise ValueError(f"MNIST folder '{folder}' does not exist")
    paths = {}
    for kind in ("images", "labels"):
        paths[kind] = _find_file(folder, split, kind)
        if paths[kind] is None:
            ndim = 3 if kind == "images" else 1
            raise ValueError(
                f"MNIST folder '{folder}' has no {split} {kind} file; expected "
                f"'{_FILE_STEMS[split]}-{kind}-idx{ndim}-ubyte' (or .gz); it contains "
                f"{sorted(os.listdir(folder))}"
            )
    images, labels = read_idx(paths["images"]), read_idx(paths["labels"])
    if images.ndim != 3 or images.dtype != np.uint8:
        raise ValueError(
            f"MNIST images file '{paths['images']}' holds {images.dtype} of shape "
            f"{images.shape}; expected uint8 (N, rows, cols)"
        )
    if labels.ndim != 1 or len(labels) != len(images):
        raise ValueError(
            f"MNIST labels file '{paths['labels']}' has shape {labels.shape}; expected "
            f"({len(images)},) to match '{paths['images']}'"
        )
    return images, labels


def _load_keras(split):
    import keras

    train, test = keras.datasets.mnist.load_data()
    return train if split == "train" else test


def _load_tfds(split):
    try:
        import tensorflow_datasets as tfds
    except ImportError as e:
        raise ImportError(
            "source='tfds' needs tensorflow-datasets; install it with "
            "`pip install tensorflow-datasets`"
        ) from e
    images, labels = tfds.as_numpy(
        tfds.load("mnist", split=split, batch_size=-1, as_supervised=True)
    )
    return images[..., 0], labels


def load_mnist(source=None, split="train", return_source=False):
    """Loads an MNIST split as numpy arrays.

    Sources, by `source`:

    - a folder path: the four standard IDX files
      (`train-images-idx3-ubyte`, `train-labels-idx1-ubyte`,
      `t10k-images-idx3-ubyte`, `t10k-labels-idx1-ubyte`), each gzipped
      (`.gz`) or not, read with `read_idx`.
    - `"keras"`: `keras.datasets.mnist.load_data()` (downloads once to
      `~/.keras/datasets`).
    - `"tfds"`: TensorFlow Datasets' `mnist` (imported only here).
    - `None`: the first that exists of the folder named by the
      `KERAS_SEGATTN_MNIST` environment variable (an error if it is set
      but does not hold the files), `../shared/data/mnist` relative to
      the current directory, then `"keras"` (which downloads when online).

    The source used is logged at INFO level and returned with
    `return_source=True`.

    Args:
        source: str, path-like or `None`. Where to read from, as above.
            Defaults to `None`.
        split: str. `"train"` (60,000 images) or `"test"` (10,000).
            Defaults to `"train"`.
        return_source: bool. Also return a description of the source
            used: `"folder:<path>"`, `"keras"` or `"tfds"`. Defaults to
            `False`.

    Returns:
        A tuple `(images, labels)`: uint8 images `(N, 28, 28)` and uint8
        labels `(N,)` in 0..9; with `return_source`, a third element
        naming the source.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}; got {split!r}")
    if source is None:
        env = os.environ.get(ENV_VAR)
        if env:
            if not _has_mnist_files(env, split):
                raise ValueError(
                    f"{ENV_VAR}='{env}' does not hold the MNIST {split} IDX files; "
                    "unset it or point it at a folder that does"
                )
            source = env
        else:
            shared = os.path.join(os.getcwd(), "..", "shared", "data", "mnist")
            source = os.path.normpath(shared) if _has_mnist_files(shared, split) else "keras"
    if source == "keras":
        images, labels = _load_keras(split)
        used = "keras"
    elif source == "tfds":
        images, labels = _load_tfds(split)
        used = "tfds"
    elif isinstance(source, (str, os.PathLike)):
        source = os.fspath(source)
        if not os.path.isdir(source):
            raise ValueError(
                f"source must be a folder of MNIST IDX files, 'keras', 'tfds' or None; "
                f"got '{source}', which is not a folder"
            )
        images, labels = _load_folder(source, split)
        used = f"folder:{os.path.abspath(source)}"
    else:
        raise TypeError(
            f"source must be a folder path, 'keras', 'tfds' or None; got {type(source).__name__}"
        )
    images = np.asarray(images, np.uint8)
    labels = np.asarray(labels)
    if images.shape[1:] != (28, 28):
        raise ValueError(
            f"MNIST from {used} has images of shape {images.shape}; expected (N, 28, 28)"
        )
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise ValueError(
            f"MNIST from {used} has labels from {labels.min()} to {labels.max()}; expected 0..9"
        )
    labels = labels.astype(np.uint8)
    logger.info("Loaded MNIST %s (%d images) from %s", split, len(images), used)
    if return_source:
        return images, labels, used
    return images, labels
