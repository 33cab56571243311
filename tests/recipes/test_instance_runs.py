"""`segattn instance-train` (`train_instances`) keeps the run folder of every
recipe, for each instance model: a tiny run killed (SIGKILL) in the middle of
its last epoch resumes from its last committed epoch and ends with the
weights of an uninterrupted run; `history.csv` holds each epoch once;
`best.keras` is the best epoch's by `val_loss`; a finished run is reported,
not trained again."""

import csv
import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from keras_segattn.checkpoints import load_model
from keras_segattn.data.epochs import epochs_of
from keras_segattn.data.instances import load_instance_dataset
from keras_segattn.models.registry import get_model_spec
from keras_segattn.recipes.instance import (
    array_epoch,
    array_steps,
    instance_epoch,
    train_instances,
)

EPOCHS = 3
# Two or three batches an epoch: 4 images (rpn, mnc), 8 jittered boxes
# (hypercolumns), the 142 regions of 4 images (sds).
BATCH_SIZES = {"rpn": 2, "mnc": 2, "hypercolumns": 4, "sds": 64}
STEPS = {"rpn": 2, "mnc": 2, "hypercolumns": 2, "sds": 3}

# The killed run, in a process of its own: one TensorFlow thread, as the
# tests run (conftest.py), so that RoIAlign's gradient adds in one order.
KILLED_RUN = """
import json, sys
import tensorflow as tf
tf.config.threading.set_intra_op_parallelism_threads(1)
from keras_segattn.recipes.instance import train_instances
train_instances(**json.loads(sys.argv[1]))
"""


# rpn and mnc sample their anchor and RoI minibatches from TensorFlow's
# stateful random state (`sample_anchors` without a seed), which a new
# process starts afresh: a resumed run draws other minibatches than an
# uninterrupted one. Minibatches larger than the candidates take every
# candidate, so the draw does not matter and the weights must match exactly;
# everything else (the data of each epoch, the weights and optimizer state
# restored) is the recipe's.
EVERY_CANDIDATE = {
    "rpn": {"batch_size_per_image": 512},
    "mnc": {"batch_size_per_image": 512, "rois_per_image": 64},
}


def arguments(model, output):
    tiny = {k: v for k, v in get_model_spec(model).tiny.items() if k != "num_classes"}
    tiny.update(EVERY_CANDIDATE.get(model, {}))
    arguments = dict(
        model=model,
        data="shapes",
        output=str(output),
        image_size=32,
        num_train=4,
        num_val=2,
        epochs=EPOCHS,
        batch_size=BATCH_SIZES[model],
        model_kwargs=tiny,
        verbose=2,
        strategy="default",
    )
    return json.loads(json.dumps(arguments))  # as the subprocess reads them


def start_killed_run(args, crash_at):
    """Starts the run in a process of its own, to be killed (SIGKILL) the
    `crash_at` way (`keras_segattn.core.saving.crash_point`)."""
    env = {**os.environ, "KERAS_SEGATTN_CRASH_AT": crash_at}
    return subprocess.Popen(
        [sys.executable, "-c", KILLED_RUN, json.dumps(args)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def assert_killed(process):
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == -signal.SIGKILL, (
        f"the run was not killed at its crash point (exit status {process.returncode})\n"
        + stderr[-3000:]
    )


def history(folder):
    with open(folder / "history.csv", newline="") as f:
        return list(csv.DictReader(f))


def state(folder):
    return json.loads((folder / "backup" / "state.json").read_text())


def assert_same_weights(path_a, path_b):
    a, b = load_model(str(path_a)), load_model(str(path_b))
    for x, y in zip(a.get_weights(), b.get_weights(), strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("model", ["rpn", "mnc", "hypercolumns", "sds"])
def test_a_killed_instance_run_resumes_to_the_uninterrupted_weights(model, tmp_path, capsys):
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    # Killed at the first batch of the last epoch: epochs 1 and 2 committed.
    # (It runs while the uninterrupted run trains here.)
    killed = start_killed_run(arguments(model, resumed), f"batch:{2 * STEPS[model] + 1}")
    expected = train_instances(**arguments(model, whole))
    assert expected["steps"] == EPOCHS * STEPS[model]  # so the kill falls inside an epoch
    assert_killed(killed)
    assert state(resumed)["epoch"] == 2
    assert [int(r["epoch"]) for r in history(resumed)] == [0, 1]
    assert not (resumed / "metrics.json").exists()

    capsys.readouterr()
    summary = train_instances(**arguments(model, resumed))  # the same command again
    out = capsys.readouterr().out
    assert "Epoch 3/3" in out and "Epoch 1/3" not in out and "Epoch 2/3" not in out

    # Each epoch once; the state at the last epoch; best.keras by val_loss.
    rows = history(resumed)
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]
    losses = [float(r["val_loss"]) for r in rows]
    saved = state(resumed)
    assert saved["epoch"] == EPOCHS and saved["monitor"] == "val_loss"
    assert saved["best"] == pytest.approx(min(losses), rel=1e-6)
    assert saved["best_epoch"] == losses.index(min(losses)) + 1 == summary["best_epoch"]
    assert os.listdir(resumed / "logs")  # TensorBoard
    np.testing.assert_allclose(losses, [float(r["val_loss"]) for r in history(whole)], rtol=1e-4)

    # The weights (last and best) of the uninterrupted run, and its scores.
    assert_same_weights(whole / "last.keras", resumed / "last.keras")
    assert_same_weights(whole / "best.keras", resumed / "best.keras")
    assert summary["epochs"] == EPOCHS and summary["steps"] == expected["steps"]
    assert summary["mAPr@0.5"] == pytest.approx(expected["mAPr@0.5"], abs=1e-6)
    assert summary["train_seconds"] > 0

    # Finished: reported, not trained again.
    last = (resumed / "last.keras").stat().st_mtime_ns
    again = train_instances(**arguments(model, resumed))
    out = capsys.readouterr().out
    assert "finished" in out and "Epoch" not in out
    assert again == json.loads((resumed / "metrics.json").read_text())
    assert (resumed / "last.keras").stat().st_mtime_ns == last
    assert len(history(resumed)) == EPOCHS


def test_a_folder_of_other_arguments_is_refused(tmp_path):
    args = arguments("hypercolumns", tmp_path)
    (tmp_path / "run.json").write_text(json.dumps({**args, "learning_rate": 0.01}))
    with pytest.raises(ValueError, match=r"learning_rate: 0\.01 -> 0\.001"):
        train_instances(**args)
    with pytest.raises(ValueError, match="schedule must be one of .*'linear'"):
        train_instances(**{**args, "schedule": "linear", "output": str(tmp_path / "new")})
    assert not (tmp_path / "new").exists()


def batches(data, count):
    return [tf.nest.map_structure(np.asarray, b) for b in data.take(count)]


def assert_same_batches(one, two):
    assert len(one) == len(two)
    for a, b in zip(one, two):
        tf.nest.map_structure(np.testing.assert_array_equal, a, b)


def test_each_epochs_data_depend_on_the_seed_and_the_epoch_alone():
    # What a resumed run reads first is what an uninterrupted one reads in
    # that epoch, and reading the data again (Keras does, to build a model
    # under a strategy) gives the same batches.
    data, _ = load_instance_dataset("shapes", "train", num_images=6, image_size=32)
    options = dict(image_size=32, max_instances=3, shuffle=6, flip=True, seed=3)
    whole = epochs_of(instance_epoch(data, 2, **options), 3)
    resumed = epochs_of(instance_epoch(data, 2, **options), 3, first_epoch=2)
    assert_same_batches(batches(whole, 9)[6:], batches(resumed, 3))
    assert_same_batches(batches(resumed, 3), batches(resumed, 3))
    first, second = batches(whole, 6)[:3], batches(whole, 6)[3:]
    assert any(not np.array_equal(a[0], b[0]) for a, b in zip(first, second))  # reshuffled

    arrays = ({"x": np.arange(10.0)[:, None]}, np.arange(10), np.ones(10, "float32"))
    whole = epochs_of(array_epoch(arrays, 4, seed=5), 3)
    resumed = epochs_of(array_epoch(arrays, 4, seed=5), 3, first_epoch=1)
    assert array_steps(arrays, 4) == 3
    assert_same_batches(batches(whole, 9)[3:], batches(resumed, 6))
    epochs = [np.concatenate([b[1] for b in batches(whole, 9)[i : i + 3]]) for i in (0, 3, 6)]
    assert all(sorted(e) == list(range(10)) for e in epochs)  # every example once an epoch
    assert not np.array_equal(epochs[0], epochs[1])


def test_instance_runs_take_a_strategy_and_mixed_precision(tmp_path):
    args = {**arguments("hypercolumns", tmp_path), "epochs": 1, "verbose": 0}
    summary = train_instances(**{**args, "strategy": "mirrored", "mixed_precision": "bfloat16"})
    assert summary["epochs"] == summary["best_epoch"] == 1
    assert {"best.keras", "last.keras", "history.csv", "metrics.json"} <= set(os.listdir(tmp_path))
    # The precision is an argument of the run, the strategy is not.
    with pytest.raises(ValueError, match="mixed_precision: 'bfloat16' -> None"):
        train_instances(**args)
