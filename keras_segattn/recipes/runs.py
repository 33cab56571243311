"""The run folder every recipe writes, the same for every task.

```
<output>/
  run.json       the arguments of the run (what `segattn` was asked to do)
  history.csv    one row per epoch (the logs Keras' CSVLogger would write)
  best.keras     the best checkpoint by the recipe's validation metric
  last.keras     the model at the end of training
  backup/        the resume state: state.json and the weights it names
  logs/          TensorBoard
  metrics.json   the held-out scores and the training time
```

Every file is written under a temporary name in the same folder and moved
into place (`os.replace`), so a kill leaves either the old file or the new
one, never half of one.

The rules of a run (`RunFolder.start` and `RunCheckpoints`):

- an interrupted run resumes from its last complete epoch, with the best
  validation value so far restored, so `best.keras` only ever improves;
- `history.csv` holds each epoch exactly once (rows of epochs that are
  trained again after a kill are dropped on resume);
- with a `patience`, a run stops once its monitored value has not
  improved for that many epochs (counted from the saved best epoch, so
  the count survives a resume);
- a finished run (its `metrics.json` written) is not trained again by the
  same command; `overwrite=True` (`--overwrite`) empties the folder and
  starts afresh;
- a folder whose `run.json` records other arguments is refused, naming
  them, unless `overwrite=True`;
- under several workers (`tf.distribute.MultiWorkerMirroredStrategy`), only
  the chief writes the folder. The others (`RunFolder(path, chief=False)`)
  make the same saves, since reading distributed variables is a collective
  operation every worker must join, into a temporary folder of their own
  that `finish_training` removes; every worker restores the chief's resume state, so
  all resume together.
"""

import atexit
import csv
import io
import json
import math
import numbers
import os
import shutil
import tempfile
import time
import warnings

import keras
import numpy as np

from keras_segattn.checkpoints import load_model
from keras_segattn.core.saving import (
    FolderLock,
    crash_point,
    publish_file,
    remove_quietly,
    temporary_path,
    write_text,
)
from keras_segattn.core.validation import check_int
from keras_segattn.data.epochs import first_epoch

RUN_CONFIG = "run.json"
METRICS = "metrics.json"
STATE = "state.json"
# Arguments that do not change what a run computes: a rerun may differ in
# them (a run killed on two GPUs may resume on one: batches are global; the
# folder may be named `runs/x`, `./runs/x` or moved elsewhere;
# `deterministic` picks kernels that add in a fixed order).
NOT_COMPARED = ("verbose", "overwrite", "func", "strategy", "output", "deterministic")


def json_ready(value):
    """`value` with NumPy numbers and arrays as plain Python, paths as
    strings, NaN as `None`."""
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if isinstance(value, np.ndarray):
        return json_ready(value.tolist())
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return None if math.isnan(value) else float(value)
    return value


def write_json(path, value):
    """Writes `value` as JSON to `path` atomically; returns `path`."""
    return write_text(path, json.dumps(json_ready(value), indent=2))


def save_model(model, path):
    """`model.save(path)` atomically; returns `path`. A failed save (a full
    disk) leaves the previous file and no partial one."""
    return _save(model.save, path)


def save_weights(model, path):
    """`model.save_weights(path)` atomically (optimizer state included)."""
    return _save(model.save_weights, path)


def _save(write, path):
    temporary = temporary_path(path)
    try:
        write(temporary)
    except BaseException:
        remove_quietly(temporary)
        raise
    return publish_file(temporary, path)


def read_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def config_differences(saved, new, added=None):
    """The arguments whose values differ between two `run.json` records.

    An argument that one record lacks counts as `None` there, or as its
    value in `added` (arguments added after `saved` may have been written,
    with the value that does what the version before did): a run folder
    written before an argument existed resumes under a version that has it,
    as long as the argument is left at that default (a run started without
    mixed precision, say, before `mixed_precision` was recorded).
    """
    saved = {**(added or {}), **saved}
    keys = (set(saved) | set(new)) - set(NOT_COMPARED)
    return sorted(k for k in keys if json_ready(saved.get(k)) != json_ready(new.get(k)))


def _recorded(config, key):
    return repr(config[key]) if key in config else "not recorded"


def seed_states(model):
    """The state variables of `model`'s Keras `SeedGenerator`s (dropout's,
    sampling's): the model's variables that are not weights, in the
    model's order."""
    weights = {id(w) for w in model.weights}
    return [v for v in model.variables if id(v) not in weights]


class RunCheckpoints(keras.callbacks.Callback):
    """The resume state and the best checkpoint of a run, written atomically.

    After every epoch: the weights (optimizer state included) to
    `backup/epoch-<n>.weights.h5`, `best.keras` if `monitor` improved, then
    `backup/state.json` (the epoch, the best value and its epoch, and the
    state of every Keras `SeedGenerator` of the model: dropout's, MNC's
    minibatch sampling's, which weights files leave out), which is the
    commit point: a kill before it leaves the previous state, whole. At the
    start of the first `fit` it is given to, a saved state is restored:
    weights, seed states, the epoch to go on from, the best value so far;
    and `history.csv` loses the rows of any epoch that will be trained
    again.
    A later `fit` with the same callback (a schedule's next stage) goes on
    from the last epoch this callback committed, without reading the folder
    again (on several workers, a worker that read it before the chief wrote
    it would start an epoch behind).

    Args:
        run: the `RunFolder`.
        monitor: str or `None`. The validation metric that picks
            `best.keras`; `None` keeps no best checkpoint.
        mode: `"max"` or `"min"`.
        patience: int or `None`. Early stopping: training ends after this
            many epochs without a better `monitor` (as Keras'
            `EarlyStopping`, but counted from the best epoch in the resume
            state, so a resumed run stops where an uninterrupted one would;
            an epoch whose `monitor` is missing or NaN counts as not
            better). `None` trains every epoch.
        patience_from: int. Epochs before this one do not count towards
            `patience` (a schedule's first stage, DeconvNet's crops; Keras'
            `start_from_epoch`).
    """

    def __init__(self, run, monitor=None, mode="max", patience=None, patience_from=0):
        super().__init__()
        if mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min'; got mode={mode!r}.")
        if patience is not None:
            patience = check_int(patience, "patience")
            patience_from = check_int(patience_from, "patience_from", minimum=0)
            if monitor is None:
                raise ValueError("patience needs a monitor: the value it waits to improve.")
        self.run = run
        self.monitor = monitor
        self.mode = mode
        self.patience = patience
        self.patience_from = patience_from
        self.best = None
        self.best_epoch = None
        self.epochs_done = None  # None until restored or committed in this process

    def patience_spent(self, epochs_done):
        """Whether `epochs_done` epochs have waited `patience` epochs for a
        better value (since the best one, and at least from `patience_from`)."""
        if self.patience is None:
            return False
        waited = epochs_done - max(self.best_epoch or 0, self.patience_from)
        return waited >= self.patience

    def _improved(self, value):
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return False
        if self.best is None:
            return True
        return value > self.best if self.mode == "max" else value < self.best

    def on_train_begin(self, logs=None):
        if self.epochs_done is None:
            self._restore()
        if self.epochs_done is None:
            return  # a new run
        # What BackupAndRestore sets, too; fit() prefers it to initial_epoch.
        self.model._initial_epoch = self.epochs_done
        if self.patience_spent(self.epochs_done):  # stopped early, before this fit
            print(
                f"{self.run.path} stopped early after epoch {self.epochs_done} "
                f"({self.monitor} best at epoch {self.best_epoch}): nothing left to train"
            )
            self.model._initial_epoch = max(self.epochs_done, self.params["epochs"])

    def _restore(self):
        # The chief's state, on every worker.
        state = self.run.saved_state()
        if state is None:
            self.run.trim_history(0)  # rows of a run killed before its first commit
            return
        weights = os.path.join(self.run.shared("backup"), state["weights"])
        if self.model.optimizer is not None and not self.model.optimizer.built:
            self.model.optimizer.build(self.model.trainable_variables)
        self.model.load_weights(weights)
        seeds = seed_states(self.model)
        saved_seeds = state.get("seed_states")  # a state from before they were saved has none
        if saved_seeds is not None and len(saved_seeds) != len(seeds):
            warnings.warn(
                f"{self.run.path}: the resume state holds {len(saved_seeds)} random-generator "
                f"states and the model has {len(seeds)} (another model or package version); "
                "they are not restored, so the resumed run draws other dropout masks and "
                "samples than an uninterrupted one would.",
                stacklevel=2,
            )
        elif saved_seeds is not None:
            for variable, value in zip(seeds, saved_seeds):
                variable.assign(np.asarray(value, variable.dtype))
        self.best, self.best_epoch = state.get("best"), state.get("best_epoch")
        self.epochs_done = state["epoch"]
        self.run.trim_history(state["epoch"])

    def on_train_batch_end(self, batch, logs=None):
        crash_point("batch")  # the kill tests' mid-epoch point

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start = time.time()

    def on_epoch_end(self, epoch, logs=None):
        # Its wall time (validation included), so a run's training time
        # adds up over sittings: `RunFolder.training_seconds`.
        logs = {**(logs or {}), "epoch_seconds": time.time() - self._epoch_start}
        os.makedirs(self.run.backup, exist_ok=True)
        name = f"epoch-{epoch + 1}.weights.h5"
        save_weights(self.model, os.path.join(self.run.backup, name))
        value = None if self.monitor is None else (logs or {}).get(self.monitor)
        if self.monitor is not None and self._improved(None if value is None else float(value)):
            save_model(self.model, self.run.best)
            self.best, self.best_epoch = float(value), epoch + 1
        self.run.append_history(epoch, logs or {})
        write_json(
            os.path.join(self.run.backup, STATE),
            {
                "epoch": epoch + 1,
                "weights": name,
                "monitor": self.monitor,
                "best": self.best,
                "best_epoch": self.best_epoch,
                "seed_states": [np.asarray(v.numpy()).tolist() for v in seed_states(self.model)],
            },
        )
        self.epochs_done = epoch + 1
        for old in os.listdir(self.run.backup):  # older epochs' weights: not needed now
            if old.endswith(".weights.h5") and old != name:
                os.remove(os.path.join(self.run.backup, old))
        if self.patience_spent(epoch + 1):
            best = "no value" if self.best is None else f"best {self.best:.4f}"
            print(
                f"\nstopping early after epoch {epoch + 1}: {self.monitor} has not improved "
                f"for {self.patience} epochs ({best} at epoch {self.best_epoch})"
            )
            self.model.stop_training = True


class RunFolder:
    """The files of one training run (see the module docstring).

    Args:
        path: str. The folder; created if missing.
        chief: bool. Whether this process writes the folder: `False` on
            the workers of a multi-worker run other than the chief
            (`recipes.distribute.is_chief`), which read the folder (the
            run's arguments, its resume state) and write into a temporary
            folder of their own. Defaults to `True`.

    Examples:

    ```python
    run = RunFolder("runs/camvid_fcn8s")
    run.write_config(vars(args))
    model.fit(data, callbacks=run.callbacks(monitor="val_mean_iou", mode="max"))
    run.save_last(model)
    run.write_metrics(scores)
    ```
    """

    def __init__(self, path, chief=True):
        if not isinstance(path, (str, os.PathLike)) or not os.fspath(path):
            raise ValueError(f"output must be a folder path; got output={path!r}.")
        self.path = os.fspath(path)
        self.chief = bool(chief)
        # False once start() is told to overwrite: a worker must not restore
        # a state that the chief is deleting.
        self.resume = True
        self._root = None
        self.lock = FolderLock(self.path, "run folder")
        if self.chief:
            os.makedirs(self.path, exist_ok=True)
            self._root = self.path

    @property
    def root(self):
        """The folder this process writes in (see `file`)."""
        if self._root is None:
            self._root = tempfile.mkdtemp(prefix="segattn-worker-")
            # Also gone if training raises before finish_training.
            atexit.register(shutil.rmtree, self._root, ignore_errors=True)
        return self._root

    def __repr__(self):
        return f"RunFolder({self.path!r})"

    def file(self, name):
        """Where this process writes `name`: the folder, or on the workers
        other than the chief their temporary folder."""
        return os.path.join(self.root, name)

    def shared(self, name):
        """`name` in the run folder itself, which every worker reads."""
        return os.path.join(self.path, name)

    def finish_training(self, model):
        """Saves `last.keras` (on every worker: reading distributed variables
        is a collective operation). On a worker other than the chief, also
        removes its temporary folder and returns `False`: the chief alone
        scores the model and writes the results. Returns `True` on the
        chief."""
        self.save_last(model)
        if self.chief:
            return True
        if self._root is not None:
            shutil.rmtree(self._root, ignore_errors=True)
            self._root = None
        print(f"this worker is done; the chief writes {self.path}")
        return False

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

    def state(self):
        """The chief's last committed epoch (`backup/state.json`: the epoch,
        the weights file, the best value and its epoch), or `None` before
        the first."""
        path = os.path.join(self.shared("backup"), STATE)
        return read_json(path) if os.path.exists(path) else None

    def saved_state(self):
        """The state a run resumes from (`state`), or `None` for a run to
        start afresh (none saved, or `start` told to overwrite)."""
        return self.state() if self.resume else None

    def resume_epoch(self):
        """The epoch a resumed `fit` goes on from; 0 for a new run. Recipes
        whose data differ per epoch start their pipeline there, so a
        resumed run sees what an uninterrupted one would."""
        state = self.saved_state()
        return 0 if state is None else int(state["epoch"])

    def first_data_epoch(self, epochs, first=0):
        """The epoch this run's training data start at
        (`data.epochs.first_epoch` of its resume epoch)."""
        return first_epoch(self.resume_epoch(), epochs, first)

    def write_config(self, config):
        """Writes the run's arguments to `run.json`."""
        return write_json(self.file(RUN_CONFIG), config)

    def write_metrics(self, metrics):
        """Writes the run's scores to `metrics.json`: the run is finished,
        and the folder free for another process."""
        path = write_json(self.file(METRICS), metrics)
        self.lock.release()
        return path

    def save_last(self, model):
        """Saves `last.keras` (on every worker: see the module docstring)."""
        return save_model(model, self.last)

    def start(self, config, overwrite=False, added=None, config_class=None):
        """Checks the folder against this run's arguments, then records them.

        `added`: the arguments a recorded run may lack, with the value that
        does what the version before them did (`config_differences`).
        `config_class`: the recipe's config (`recipes.config`): a recorded
        run is read in its field names (`upgrade`), and a field it lacks
        counts as the field's default.

        Returns:
            The saved `metrics.json` of a finished run with the same
            arguments (the caller reports it instead of training), else
            `None`: a new run, or one to resume.

        Raises:
            ValueError: if the folder holds a run of other arguments (named),
                unless `overwrite`.
        """
        config = json_ready(config)
        if not self.chief and overwrite:
            self.resume = False  # the chief empties the folder
            return None
        if self.chief:
            self.lock.acquire()  # before anything here is touched
        try:
            finished = self._start(config, overwrite, added, config_class)
        except BaseException:
            self.lock.release()
            raise
        if finished is not None:
            self.lock.release()
        return finished

    def _start(self, config, overwrite, added, config_class):
        # Temporary files of a killed run.
        for folder in (self.path, self.backup) if self.chief else ():
            if os.path.isdir(folder):
                for name in os.listdir(folder):
                    if name.startswith(".") and ".partial-" in name:
                        os.remove(os.path.join(folder, name))
        if overwrite:
            for name in os.listdir(self.path):
                if name == os.path.basename(self.lock.path):
                    continue  # held by this process
                target = self.file(name)
                shutil.rmtree(target) if os.path.isdir(target) else os.remove(target)
        saved_path = self.shared(RUN_CONFIG)
        if os.path.exists(saved_path):
            saved = read_json(saved_path)
            if config_class is not None:
                saved = config_class.upgrade(saved)
                added = {**config_class.defaults(), **(added or {})}
            differing = config_differences(saved, config, added)
            if differing:
                details = ", ".join(
                    f"{k}: {_recorded(saved, k)} -> {_recorded(config, k)}" for k in differing
                )
                raise ValueError(
                    f"output {self.path!r} holds a run with other arguments ({details}); "
                    "choose another output folder, or pass --overwrite (overwrite=True) to "
                    "start afresh there."
                )
            if os.path.exists(self.shared(METRICS)):
                return read_json(self.shared(METRICS))
        self.write_config(config)
        return None

    def _history_rows(self):
        if not os.path.exists(self.history):
            return []
        with open(self.history, newline="", encoding="utf-8") as f:
            return [row for row in csv.reader(f) if row]

    def _write_history(self, rows):
        text = io.StringIO()
        csv.writer(text).writerows(rows)
        write_text(self.history, text.getvalue())

    def history_column(self, name):
        """The values of one `history.csv` column, epoch by epoch, as floats
        (`[]` if the column is missing; a row without it is skipped)."""
        rows = self._history_rows()
        if not rows or name not in rows[0]:
            return []
        index = rows[0].index(name)
        return [float(r[index]) for r in rows[1:] if len(r) > index and r[index] != ""]

    def training_seconds(self):
        """The wall time of the epochs in `history.csv`, over every sitting."""
        return sum(self.history_column("epoch_seconds"))

    def trim_history(self, epochs):
        """Keeps the header and the rows of epochs `< epochs` in `history.csv`."""
        rows = self._history_rows()
        kept = rows[:1] + [r for r in rows[1:] if r[0].isdigit() and int(r[0]) < epochs]
        if len(kept) != len(rows):
            self._write_history(kept)

    def append_history(self, epoch, logs):
        """Adds the row of `epoch` to `history.csv` (columns as Keras'
        CSVLogger: `epoch`, then the logs by name), rewriting the file
        atomically, so a kill never leaves half a row."""
        rows = self._history_rows() or [["epoch", *sorted(logs)]]
        values = {"epoch": epoch, **{k: float(v) for k, v in logs.items()}}
        self._write_history(rows + [[str(values.get(k, "")) for k in rows[0]]])

    def callbacks(self, monitor=None, mode="max", tensorboard=True, patience=None, patience_from=0):
        """The callbacks every recipe trains with: `RunCheckpoints` (the
        resume state, `history.csv` and, with a `monitor`, `best.keras`) and
        TensorBoard logs in `logs/`.

        Args:
            monitor: str or `None`. With a validation metric, the best
                epoch is kept in `best.keras`. Defaults to `None`.
            mode: `"max"` or `"min"`, of `monitor`.
            tensorboard: bool. Defaults to `True`.
            patience: early stopping (`RunCheckpoints`).
            patience_from: the epoch patience counts from
                (`RunCheckpoints`).

        Returns:
            A list of `keras.callbacks.Callback`, `RunCheckpoints` first (it
            restores a saved state in `on_train_begin`, before any epoch
            starts; a learning-rate schedule goes before this list, so that
            its rate joins the logs before the history row is written).
        """
        callbacks = [RunCheckpoints(self, monitor, mode, patience, patience_from)]
        if tensorboard:
            callbacks.append(keras.callbacks.TensorBoard(self.logs))
        return callbacks

    def best_model(self, fallback):
        """The model of `best.keras` if one was written, else of `last.keras`
        (under several workers, scoring the distributed `fallback` on the
        chief alone would wait for the others), else `fallback`."""
        for path in (self.best, self.last):
            if os.path.exists(path):
                return load_model(path)
        return fallback
