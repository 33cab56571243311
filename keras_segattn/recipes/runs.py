"""The run folder every recipe writes, the same for every task.

```
<output>/
  run.json       the arguments of the run (what `segattn` was asked to do)
  history.csv    one row per epoch (Keras' CSVLogger)
  best.keras     the best checkpoint by the recipe's validation metric
  last.keras     the model at the end of training
  backup/        the resume state (BackupAndRestore) of an interrupted run
  logs/          TensorBoard
  metrics.json   the held-out scores and the training time
```

Every file is written under a temporary name in the same folder and moved
into place (`os.replace`), so a kill leaves either the old file or the new
one, never half of one.
"""

import json
import math
import numbers
import os

import keras
import numpy as np

RUN_CONFIG = "run.json"
METRICS = "metrics.json"


def json_ready(value):
    """`value` with NumPy numbers and arrays as plain Python, NaN as `None`."""
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if isinstance(value, np.ndarray):
        return json_ready(value.tolist())
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return None if math.isnan(value) else float(value)
    return value


def _temporary(path):
    """A name beside `path` with the same extension (Keras checks it)."""
    folder, name = os.path.split(path)
    stem, extension = os.path.splitext(name)
    return os.path.join(folder, f".{stem}.partial-{os.getpid()}{extension}")


def write_json(path, value):
    """Writes `value` as JSON to `path` atomically; returns `path`."""
    temporary = _temporary(path)
    with open(temporary, "w", encoding="utf-8") as f:
        json.dump(json_ready(value), f, indent=2)
        f.flush()
        os.fsync(f.fileno())
    os.replace(temporary, path)
    return path


def save_model(model, path):
    """`model.save(path)` atomically; returns `path`."""
    temporary = _temporary(path)
    model.save(temporary)
    os.replace(temporary, path)
    return path


class RunFolder:
    """The files of one training run (see the module docstring).

    Args:
        path: str. The folder; created if missing.

    Example:

    ```python
    run = RunFolder("runs/camvid_fcn8s")
    run.write_config(vars(args))
    model.fit(data, callbacks=run.callbacks(monitor="val_mean_iou", mode="max"))
    run.save_last(model)
    run.write_metrics(scores)
    ```
    """

    def __init__(self, path):
        if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
            raise ValueError(f"output must be a folder path; got output={path!r}.")
        self.path = os.fspath(path)
        os.makedirs(self.path, exist_ok=True)

    def __repr__(self):
        return f"RunFolder({self.path!r})"

    def file(self, name):
        return os.path.join(self.path, name)

    @property
    def best(self):
        return self.file("best.keras")

    @property
    def last(self):
        return self.file("last.keras")

    @property
    def backup(self):
        return self.file("backup")

    @property
    def logs(self):
        return self.file("logs")

    @property
    def history(self):
        return self.file("history.csv")

    def write_config(self, config):
        """Writes the run's arguments to `run.json`."""
        return write_json(self.file(RUN_CONFIG), config)

    def write_metrics(self, metrics):
        """Writes the run's scores to `metrics.json`."""
        return write_json(self.file(METRICS), metrics)

    def save_last(self, model):
        return save_model(model, self.last)

    def callbacks(self, monitor=None, mode="auto", backup=True, tensorboard=True):
        """The callbacks every recipe trains with.

        Args:
            monitor: str or `None`. With a validation metric, the best
                epoch is kept in `best.keras`. Defaults to `None`.
            mode: `"min"`, `"max"` or `"auto"`, of `monitor`.
            backup: bool. Keep a `BackupAndRestore` state in `backup/`, so
                that an interrupted run resumes. Defaults to `True`.
            tensorboard: bool. TensorBoard logs in `logs/`. Defaults to
                `True`.

        Returns:
            A list of `keras.callbacks.Callback`.
        """
        callbacks = []
        if monitor is not None:
            callbacks.append(
                keras.callbacks.ModelCheckpoint(
                    self.best, monitor=monitor, mode=mode, save_best_only=True
                )
            )
        if tensorboard:
            callbacks.append(keras.callbacks.TensorBoard(self.logs))
        # append: a resumed run, and DeconvNet's second stage, add to the log.
        callbacks.append(keras.callbacks.CSVLogger(self.history, append=True))
        if backup:
            callbacks.append(keras.callbacks.BackupAndRestore(self.backup))
        return callbacks

    def best_model(self, fallback):
        """The model of `best.keras` if one was written, else `fallback`."""
        from keras_segattn.checkpoints import load_model

        return load_model(self.best) if os.path.exists(self.best) else fallback
