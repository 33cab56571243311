"""Writing files whole, holding folders, and the one reader of `.keras` files.

- `write_bytes`, `write_text`, `publish_file`: a file is written under a
  temporary name beside it and moved into place, so a kill leaves the old
  file or the new one; a failed write (a full disk) removes its temporary
  file and leaves the old one untouched.
- `FolderLock`: one process at a time writes a run folder or stages an
  export version (`fcntl.flock` on a lock file naming its holder; the
  operating system releases it when the holder dies, so a lock left by a
  killed process is taken over).
- `load_keras_file`: `keras_segattn.checkpoints.load_model` (what the
  recipes, the command line and users call) and the builders'
  `weights=<path>` both go through it, so a missing, damaged or oversized
  file gets the same message everywhere. The package's custom objects must
  be registered first, which importing `keras_segattn.models` does (the
  builders are there already when they load weights).
"""

import fcntl
import json
import os
import socket
import time
import zipfile

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
    try:
        with open(temporary, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        remove_quietly(temporary)  # a full disk leaves no partial file
        raise
    return publish_file(temporary, path)


def remove_quietly(path):
    """Removes the file `path` if it is there."""
    try:
        os.remove(path)
    except OSError:
        pass


# The locks this process holds, by lock file (device, inode): a process may
# start a run again in a folder it holds (a notebook resuming its own run).
_HELD = {}


class FolderLock:
    """Holds `folder` for this process: one writer at a time.

    The lock is `fcntl.flock` on `<folder>/<name>`, which records the
    holder's pid, host and start time (marked released when it is let go).
    A second process is refused with a `RuntimeError` naming the holder.
    The operating system drops the lock when its holder exits or is killed,
    so a lock file left by a dead process is taken over (with a warning
    naming it). Within one process, holding a folder again is allowed (the
    lock is counted once).

    Args:
        folder: str. The folder (created if missing).
        what: str. What the folder is, for the messages (`"run folder"`).
        name: str. The lock file's name. Defaults to `".lock"`.
    """

    def __init__(self, folder, what="folder", name=".lock"):
        self.folder = os.fspath(folder)
        self.what = what
        self.path = os.path.join(self.folder, name)
        self.key = None  # the lock file's (device, inode): the same however spelt or moved

    @property
    def held(self):
        return self.key is not None and self.key in _HELD

    def acquire(self):
        """Takes the lock; returns `self`.

        Raises:
            RuntimeError: another live process holds it (named).
        """
        os.makedirs(self.folder, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        status = os.fstat(fd)
        self.key = (status.st_dev, status.st_ino)
        if self.key in _HELD:  # this process holds it (this descriptor is not needed)
            os.close(fd)
            return self
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise RuntimeError(
                f"{self.what} {self.folder!r} is in use by {_describe(holder)}; wait for it to "
                "finish, stop it, or choose another folder."
            ) from None
        previous = _read_holder(fd)
        if previous.get("pid") and not previous.get("released"):
            print(
                f"warning: taking over {self.what} {self.folder!r} from {_describe(previous)}, "
                "which is no longer running."
            )
        _write_holder(fd, {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()})
        _HELD[self.key] = fd
        return self

    def release(self):
        """Lets the folder go. The lock file stays, unlocked, its record
        marked released (a record without the mark is a dead holder's)."""
        fd = _HELD.pop(self.key, None) if self.key is not None else None
        if fd is not None:
            try:
                _write_holder(fd, {**_read_holder(fd), "released": True})
            except OSError:
                pass  # a full disk: the unlocked file says enough
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


def _write_holder(fd, record):
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(record).encode(), 0)


def _read_holder(fd):
    try:
        return json.loads(os.pread(fd, 4096, 0).decode() or "{}")
    except (OSError, ValueError):
        return {}


def _describe(holder):
    if not holder.get("pid"):
        return "another process"
    since = holder.get("since")
    when = time.strftime(" since %Y-%m-%d %H:%M:%S", time.localtime(since)) if since else ""
    return f"process {holder['pid']} on {holder.get('host', 'an unknown host')}{when}"


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
    check_keras_archive(path, argument)
    try:
        return keras.saving.load_model(path, compile=False)
    except Exception as error:  # noqa: BLE001  (reported with the file's name, not swallowed)
        raise ValueError(f"could not load {argument} {path!r} as a Keras model: {error}") from error


# What a `.keras` archive may unpack to, checked from its zip directory
# before Keras reads a byte of it: its config and metadata are JSON of a
# few kB to a few MB, its weights as large as the model.
MAX_CONFIG_BYTES = 64 * 2**20
MAX_ARCHIVE_BYTES = 16 * 2**30


def check_keras_archive(path, argument="model_path", max_config=None, max_total=None):
    """Refuses a `.keras` file that is not a whole zip archive, or whose
    members would unpack past the limits (a decompression bomb), by name,
    before anything is decompressed. A member cannot unpack past its
    declared size: Python's zip reader stops there.

    Args:
        path: str. The file.
        argument: str. The name the caller knows it by.
        max_config: int. Bytes of each member other than the weights
            (`config.json`, `metadata.json`, assets). Defaults to
            `MAX_CONFIG_BYTES` (64 MiB).
        max_total: int. Bytes of every member together. Defaults to
            `MAX_ARCHIVE_BYTES` (16 GiB).

    Raises:
        ValueError: naming `argument`, the path and the member.
    """
    max_config = MAX_CONFIG_BYTES if max_config is None else max_config
    max_total = MAX_ARCHIVE_BYTES if max_total is None else max_total
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, OSError) as error:
        raise ValueError(
            f"{argument} {path!r} is damaged or not a .keras file (a .keras file is a zip "
            f"archive: {error})."
        ) from error
    total = 0
    for member in members:
        total += member.file_size
        if not member.filename.endswith(".h5") and member.file_size > max_config:
            raise ValueError(
                f"{argument} {path!r}: its member {member.filename!r} unpacks to "
                f"{member.file_size:,} bytes, more than the {max_config:,} allowed; refused."
            )
    if total > max_total:
        raise ValueError(
            f"{argument} {path!r} unpacks to {total:,} bytes, more than the {max_total:,} "
            "allowed; refused."
        )
