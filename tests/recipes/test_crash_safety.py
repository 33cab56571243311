"""A tiny `segattn train` and `segattn export`, killed (SIGKILL) at chosen
points and run again: nothing is lost, nothing is half-written, nothing is
counted twice. The kill points are `keras_segattn.core.saving.crash_point`s,
reached through `$KERAS_SEGATTN_CRASH_AT`."""

import csv
import json
import os
import signal

import numpy as np
import pytest

from tests.test_every_model import segattn  # one way to run segattn in its own process

pytestmark = pytest.mark.slow

TRAIN = [
    "train",
    "--model",
    "fcn8s",
    "--data",
    "shapes",
    "--num-images",
    "16",
    "--epochs",
    "3",
    "--batch-size",
    "8",
    "--width",
    "0.0625",
    "--verbose",
    "2",
]


def killed(result):
    return result.returncode == -signal.SIGKILL


def history(folder):
    with open(folder / "history.csv", newline="") as f:
        return list(csv.DictReader(f))


def no_half_files(folder):
    for root, _, files in os.walk(folder):
        if os.path.basename(root) == "logs" or "/logs/" in root + "/":
            continue  # TensorBoard's event files are append-only logs
        for name in files:
            path = os.path.join(root, name)
            assert os.path.getsize(path) > 0, f"{path} is empty"
            assert ".partial-" not in name or not name.endswith((".keras", ".json")), path


def test_killed_runs_resume_to_the_same_result(tmp_path):
    out = tmp_path / "run"
    args = [*TRAIN, "--output", str(out)]
    # 1. Killed while the first best.keras is written: nothing committed yet.
    assert killed(segattn(args, "best.keras:1"))
    assert not (out / "best.keras").exists() and not (out / "backup" / "state.json").exists()
    # 2. Killed mid-epoch (the first batch of epoch 2; two batches an epoch).
    assert killed(segattn(args, "batch:3"))
    assert json.loads((out / "backup" / "state.json").read_text())["epoch"] == 1
    # 3. Resumed, killed at epoch 2's commit point: epoch 1 is still the state.
    assert killed(segattn(args, "state.json:1"))
    assert json.loads((out / "backup" / "state.json").read_text())["epoch"] == 1
    # 4. Resumed, trains epochs 2 and 3, killed as the final evaluation starts.
    assert killed(segattn(args, "evaluation:1"))
    assert json.loads((out / "backup" / "state.json").read_text())["epoch"] == 3
    # 5. Killed while metrics.json is written, after the evaluation.
    assert killed(segattn(args, "metrics.json:1"))
    assert not (out / "metrics.json").exists()
    # 6. Finishes without training again: the state is at the last epoch.
    result = segattn(args)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Epoch" not in result.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    rows = history(out)
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]  # each epoch once
    state = json.loads((out / "backup" / "state.json").read_text())
    values = [float(r["val_mean_iou"]) for r in rows]
    assert state["best"] == pytest.approx(max(values), rel=1e-6)
    assert state["best_epoch"] == values.index(max(values)) + 1
    no_half_files(out)
    # 7. The same command again reports the finished run.
    again = segattn(args)
    assert again.returncode == 0 and "finished" in again.stdout
    assert json.loads((out / "metrics.json").read_text()) == metrics
    assert len(history(out)) == 3
    # 8. Other arguments in the same folder are refused, by name.
    other = segattn([*args, "--learning-rate", "0.01"])
    assert other.returncode != 0
    assert "learning_rate: 0.001 -> 0.01" in other.stderr and "--overwrite" in other.stderr
    fresh = segattn([*args, "--learning-rate", "0.01", "--epochs", "1", "--overwrite"])
    assert fresh.returncode == 0, fresh.stderr[-2000:]
    assert [int(r["epoch"]) for r in history(out)] == [0]

    # Export: killed after verification, before publishing: no version
    # folder; the retry publishes version 1 and its versioned TFLite file.
    base = tmp_path / "served"
    export = [
        "export",
        "--model-path",
        str(out / "last.keras"),
        "--output",
        str(base),
        "--name",
        "tiny",
        "--data",
        "shapes",
    ]
    assert killed(segattn(export, "publish:1"))
    assert not (base / "tiny" / "1").exists()
    result = segattn(export)
    assert result.returncode == 0, result.stderr[-2000:]
    versions = [v for v in os.listdir(base / "tiny") if v.isdigit()]
    assert versions == ["1"] and (base / "tiny" / "1" / "saved_model.pb").is_file()
    assert (base / "tiny" / "tiny_v1.tflite").is_file()
    assert not [n for n in os.listdir(base / "tiny") if n.startswith(".staging")]


def test_killed_stn_cell_resumes_to_the_uninterrupted_result(tmp_path, shared_data):
    """A Table 1 cell killed mid-way resumes on the distorted digits of its
    next epoch, so it ends where an uninterrupted cell ends."""
    from keras_segattn.checkpoints import load_model

    cell = [
        "stn-table",
        "--rows",
        "st_cnn:affine",
        "--distortions",
        "R",
        "--epochs",
        "3",
        "--batch-size",
        "64",
        "--limit",
        "256",
        "--optimizer",
        "sgd",
        "--schedule",
        "step",
        "--learning-rate",
        "0.02",
        "--mnist",
        f"{shared_data}/mnist",
    ]
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    assert segattn([*cell, "--output", str(whole)]).returncode == 0
    # Four batches an epoch: killed in the middle of epoch 2.
    assert killed(segattn([*cell, "--output", str(resumed)], "batch:6"))
    folder = resumed / "st_cnn_affine_R"
    assert json.loads((folder / "backup" / "state.json").read_text())["epoch"] == 1
    result = segattn([*cell, "--output", str(resumed)])
    assert result.returncode == 0, result.stderr[-2000:]
    one = json.loads((whole / "st_cnn_affine_R" / "metrics.json").read_text())
    two = json.loads((folder / "metrics.json").read_text())
    assert len(two["test_error_by_epoch"]) == 3 and two["train_seconds"] > 0
    assert [int(r["epoch"]) for r in history(folder)] == [0, 1, 2]
    a = load_model(str(whole / "st_cnn_affine_R" / "last.keras"))
    b = load_model(str(folder / "last.keras"))
    for x, y in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-5)
    assert two["test_error"] == pytest.approx(one["test_error"], abs=0.5)
    # Other settings in the same folder are refused by name, not overwritten.
    other = segattn([*cell, "--output", str(resumed), "--momentum", "0.5"])
    assert other.returncode != 0 and "momentum: 0.9 -> 0.5" in other.stderr
    assert json.loads((folder / "metrics.json").read_text()) == two
