import json
import math
import os

import keras
import numpy as np
import pytest

from keras_segattn.recipes.runs import RunFolder, json_ready, save_model, write_json


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
    assert sorted(os.listdir(run.path)) == ["run.json"]
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
