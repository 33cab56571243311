"""The one reader of `.keras` files.

`keras_segattn.checkpoints.load_model` (what the recipes, the CLI and users
call) and the builders' `weights=<path>` both go through `load_keras_file`,
so a missing or unreadable file gets the same message everywhere. The
package's custom objects must be registered first, which importing
`keras_segattn.models` does (the builders are there already when they load
weights).
"""

import os

import keras

# Fault injection for the kill tests: "<point>:<count>" kills the process
# (SIGKILL) the count-th time it reaches that point.
CRASH_VARIABLE = "KERAS_SEGATTN_CRASH_AT"
_crash_counts = {}


def crash_point(name):
    """Kills the process here when `$KERAS_SEGATTN_CRASH_AT` names this point
    (the tests' fault injection; a no-op otherwise)."""
    wanted = os.environ.get(CRASH_VARIABLE)
    if not wanted or not wanted.startswith(name + ":"):
        return
    _crash_counts[name] = _crash_counts.get(name, 0) + 1
    if _crash_counts[name] == int(wanted.rsplit(":", 1)[1]):
        import signal

        os.kill(os.getpid(), signal.SIGKILL)


def temporary_path(path):
    """A name beside `path` with the same extension (Keras checks it)."""
    folder, name = os.path.split(path)
    extension = ".weights.h5" if name.endswith(".weights.h5") else os.path.splitext(name)[1]
    stem = name[: len(name) - len(extension)]
    return os.path.join(folder, f".{stem}.partial-{os.getpid()}{extension}")


def publish_file(temporary, path):
    """Moves a whole `temporary` file onto `path` in one `os.replace`."""
    crash_point(os.path.basename(path))  # the new file is whole, the old one in place
    os.replace(temporary, path)
    return path


def write_text(path, text):
    """Writes `text` to `path` atomically (UTF-8); returns `path`."""
    return write_bytes(path, text.encode("utf-8"))


def write_bytes(path, data):
    """Writes `data` to `path` under a temporary name, synced, then moved
    into place: a kill leaves the old file or the new one. Returns `path`."""
    temporary = temporary_path(path)
    with open(temporary, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return publish_file(temporary, path)


def load_keras_file(path, argument="model_path"):
    """Loads a whole `.keras` model, uncompiled.

    Args:
        path: str or path-like. A `.keras` file.
        argument: str. The name the caller knows the path by, used in the
            error message (e.g. `"weights"`, `"--model-path"`).

    Returns:
        The `keras.Model`.

    Raises:
        ValueError: if `path` is not a file, or Keras cannot read it (the
            message names `argument`, the path and Keras' reason).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"{argument} {path!r} is not a file; expected a .keras model file.")
    try:
        return keras.saving.load_model(path, compile=False)
    except Exception as error:  # noqa: BLE001  (reported with the file's name, not swallowed)
        raise ValueError(f"could not load {argument} {path!r} as a Keras model: {error}") from error
