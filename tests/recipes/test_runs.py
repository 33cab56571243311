import json
import math
import os

import keras
import numpy as np
import pytest

from keras_segattn.recipes.runs import (
    RunCheckpoints,
    RunFolder,
    json_ready,
    save_model,
    write_json,
)


def test_json_ready_makes_numpy_and_nan_plain():
    value = {"a": np.float32(0.5), 1: [np.int64(3), np.array([1.0, np.nan])], "b": math.nan}
    assert json_ready(value) == {"a": 0.5, "1": [3, [1.0, None]], "b": None}
    json.dumps(json_ready(value), allow_nan=False)  # strict JSON


def test_files_are_moved_into_place_whole(tmp_path, monkeypatch):
    path = str(tmp_path / "metrics.json")
    write_json(path, {"x": 1})

    def crash(*args, **kwargs):  # a kill while the new file is being written
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", crash)  # the new file is written, not yet moved
    with pytest.raises(KeyboardInterrupt):
        write_json(path, {"x": 2})
    monkeypatch.undo()
    assert json.loads(open(path).read()) == {"x": 1}  # the old file, whole

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    path = save_model(model, str(tmp_path / "last.keras"))
    reloaded = keras.saving.load_model(path)
    np.testing.assert_array_equal(reloaded.get_weights()[0], model.get_weights()[0])
    assert not [f for f in os.listdir(tmp_path) if "last" in f and f != "last.keras"]


def test_every_task_gets_the_same_folder_and_callbacks(tmp_path):
    run = RunFolder(tmp_path / "run")
    names = [type(c).__name__ for c in run.callbacks(monitor="val_loss", mode="min")]
    assert names == ["RunCheckpoints", "TensorBoard"]  # RunCheckpoints first
    assert [type(c).__name__ for c in run.callbacks(tensorboard=False)] == ["RunCheckpoints"]
    assert run.start({"epochs": 2, "verbose": 1}) is None  # a new run
    assert json.loads(open(run.file("run.json")).read()) == {"epochs": 2, "verbose": 1}
    assert run.start({"epochs": 2, "verbose": 2}) is None  # verbosity does not count
    with pytest.raises(ValueError, match=r"other arguments \(epochs: 2 -> 3\).*--overwrite"):
        run.start({"epochs": 3, "verbose": 1})
    run.write_metrics({"mean_iou": 0.5})
    assert run.start({"epochs": 2, "verbose": 1}) == {"mean_iou": 0.5}  # finished
    assert run.start({"epochs": 3}, overwrite=True) is None
    assert sorted(os.listdir(run.path)) == [".lock", "run.json"]  # the lock: held
    assert os.path.dirname(run.best) == run.path and run.history.endswith("history.csv")
    with pytest.raises(ValueError, match="output"):
        RunFolder("")


def test_a_run_from_before_an_argument_existed_resumes(tmp_path):
    old = {"epochs": 2}  # recorded by a version without `mixed_precision`
    RunFolder(tmp_path / "a").start(old)
    assert RunFolder(tmp_path / "a").start({**old, "mixed_precision": None}) is None  # resumes
    RunFolder(tmp_path / "b").start(old)
    run = RunFolder(tmp_path / "b")
    with pytest.raises(ValueError, match=r"mixed_precision: not recorded -> 'bfloat16'"):
        run.start({"epochs": 2, "mixed_precision": "bfloat16"})
    # An argument added with a default other than None (`--schedule`).
    RunFolder(tmp_path / "c").start(old)
    added = {"schedule": "constant"}
    assert RunFolder(tmp_path / "c").start({**old, **added}, added=added) is None
    RunFolder(tmp_path / "d").start(old)
    with pytest.raises(ValueError, match=r"schedule: not recorded -> 'cosine'"):
        RunFolder(tmp_path / "d").start({**old, "schedule": "cosine"}, added=added)


def test_history_rows_are_appended_whole(tmp_path):
    run = RunFolder(tmp_path)
    run.append_history(0, {"loss": np.float32(1.5), "val_loss": 2.0})
    run.append_history(1, {"val_loss": 1.0, "loss": 0.5})
    with open(run.history) as f:
        assert f.read().split() == ["epoch,loss,val_loss", "0,1.5,2.0", "1,0.5,1.0"]


def test_history_keeps_each_epoch_once(tmp_path):
    run = RunFolder(tmp_path)
    with open(run.history, "w") as f:
        f.write("epoch,loss\r\n0,1.0\r\n1,0.9\r\n2,0.8\r\n")
    run.trim_history(2)  # epoch 2 is trained again after a resume
    with open(run.history) as f:
        assert f.read().split() == ["epoch,loss", "0,1.0", "1,0.9"]


def _epochs(callback, values, first=0):
    """Runs `RunCheckpoints` through epochs whose monitored value is
    `values`; returns the epochs after which it asked `fit` to stop."""
    stops = []
    for epoch, value in enumerate(values, start=first):
        callback.on_epoch_begin(epoch)
        callback.on_epoch_end(epoch, {"val_score": value})
        if callback.model.stop_training:
            stops.append(epoch + 1)
            callback.model.stop_training = False
    return stops


def _checkpoints(run, epochs=20, **kwargs):
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    callback = RunCheckpoints(run, "val_score", "max", **kwargs)
    callback.set_model(model)
    callback.set_params({"epochs": epochs, "steps": 1, "verbose": 0})
    model.stop_training, model._initial_epoch = False, None
    callback.on_train_begin()
    return callback


def test_patience_stops_where_it_would_have_without_the_kill(tmp_path):
    values = [0.1, 0.3, 0.2, 0.25, 0.28, 0.29]  # best at epoch 2: 3 epochs later it stops
    whole = _checkpoints(RunFolder(tmp_path / "whole"), patience=3)
    assert _epochs(whole, values) == [5, 6]  # and again if fit went on
    run = RunFolder(tmp_path / "killed")
    _epochs(_checkpoints(run, patience=3), values[:4])  # killed after epoch 4
    resumed = _checkpoints(RunFolder(run.path), patience=3)
    assert resumed.best_epoch == 2 and resumed.model._initial_epoch == 4
    assert _epochs(resumed, values[4:], first=4) == [5, 6]
    state = RunFolder(run.path).state()
    assert (state["epoch"], state["best_epoch"], state["best"]) == (6, 2, 0.3)
    # Killed after it stopped, before its scores: the next fit trains nothing.
    again = _checkpoints(RunFolder(run.path), epochs=20, patience=3)
    assert again.model._initial_epoch == 20
    assert _epochs(_checkpoints(RunFolder(tmp_path / "none")), values) == []  # no patience


def test_patience_waits_for_the_second_stage_and_needs_a_monitor(tmp_path):
    values = [0.5, 0.1, 0.1, 0.1, 0.2, 0.1]  # the best is in stage 1 (epochs 1 to 3)
    staged = _checkpoints(RunFolder(tmp_path / "a"), patience=2, patience_from=3)
    assert _epochs(staged, values) == [5, 6]  # counted from epoch 3, not from the best
    with pytest.raises(ValueError, match="patience needs a monitor"):
        RunCheckpoints(RunFolder(tmp_path / "b"), None, patience=2)
    with pytest.raises(ValueError, match="patience must be a positive int; got patience=0"):
        RunFolder(tmp_path / "c").callbacks("val_score", patience=0)


def test_a_stopped_two_stage_run_trains_nothing_when_run_again(tmp_path, monkeypatch):
    import tensorflow as tf

    from keras_segattn.recipes.semantic import two_stage_fit

    data = tf.data.Dataset.from_tensor_slices((np.ones((4, 2)), np.zeros((4, 1)))).batch(2)

    class Count(keras.callbacks.Callback):
        epochs = []

        def on_epoch_begin(self, epoch, logs=None):
            self.epochs.append(epoch)

    def fit(run):
        model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
        model.compile(keras.optimizers.SGD(0.0), "mse")  # val_loss never improves
        callbacks = run.callbacks(
            "val_loss", "min", tensorboard=False, patience=1, patience_from=1
        ) + [Count()]
        epoch = lambda e: data  # noqa: E731 (the same two batches every epoch)
        two_stage_fit(model, epoch, epoch, 1, 6, callbacks, validation_data=data, verbose=0)

    run = RunFolder(tmp_path / "run")
    reads = []
    monkeypatch.setattr(run, "saved_state", lambda: reads.append(1) or RunFolder.saved_state(run))
    fit(run)
    # Stage 1 is epoch 1 (the best); stage 2 waits one epoch, then stops.
    assert Count.epochs == [0, 1] and len(reads) == 1  # stage 2 did not read the folder again
    Count.epochs.clear()
    fit(RunFolder(tmp_path / "run"))  # the same command again, e.g. after a kill
    assert Count.epochs == []
    assert len(RunFolder(tmp_path / "run").history_column("loss")) == 2


def test_a_resume_state_of_other_random_generators_is_named(tmp_path):
    # A state written by a model with a dropout layer, resumed by one without:
    # the weights load, the generator states cannot, and the user is told.
    def model(*extra):
        built = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1), *extra])
        built.compile("sgd", "mse")
        return built

    run = RunFolder(tmp_path / "run")
    for built, epochs in ((model(keras.layers.Dropout(0.5)), 1), (model(), 2)):
        callback = RunCheckpoints(run, "val_score", "max")
        callback.set_model(built)
        callback.set_params({"epochs": epochs, "steps": 1, "verbose": 0})
        built.stop_training, built._initial_epoch = False, None
        if epochs == 1:
            callback.on_train_begin()
            _epochs(callback, [0.5])
        else:
            with pytest.warns(UserWarning, match="holds 1 random-generator states and the model"):
                callback.on_train_begin()
            assert built._initial_epoch == 1  # the weights and the epoch are restored
