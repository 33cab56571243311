"""Shared folders and hostile files: one writer per run folder and export,
a killed holder's lock taken over, a run found under any spelling of its
path, `.keras` bombs and damaged files refused before Keras reads them, and
a failed write (a full disk) leaving the previous file and no partial one."""

import errno
import json
import os
import signal
import subprocess
import sys
import zipfile

import keras
import numpy as np
import pytest

from keras_segattn.checkpoints import load_model
from keras_segattn.core.saving import FolderLock, check_keras_archive
from keras_segattn.recipes.runs import RunFolder, save_model, write_json

HOLD = """
import sys, time
from keras_segattn.core.saving import FolderLock
FolderLock(sys.argv[1], "run folder").acquire()
print("held", flush=True)
time.sleep(600)
"""


def hold_in_another_process(folder):
    process = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout.readline().strip() == "held"
    return process


def test_a_folder_held_by_a_live_process_is_refused_and_a_dead_ones_taken_over(tmp_path, capsys):
    folder = tmp_path / "run"
    holder = hold_in_another_process(folder)
    try:
        with pytest.raises(RuntimeError, match=rf"in use by process {holder.pid} on "):
            RunFolder(folder).start({"epochs": 1})
        assert not (folder / "run.json").exists()  # nothing touched
    finally:
        os.kill(holder.pid, signal.SIGKILL)  # the lock file stays, unlocked
        holder.wait()
    run = RunFolder(folder)
    assert run.start({"epochs": 1}) is None
    assert f"taking over run folder {str(folder)!r} from process {holder.pid}" in (
        capsys.readouterr().out
    )
    run.write_metrics({"score": 1.0})  # finished: free for the next process
    other = subprocess.run(
        [sys.executable, "-c", HOLD.replace("time.sleep(600)", ""), str(folder)],
        capture_output=True,
        text=True,
    )
    assert other.returncode == 0, other.stderr


def test_one_process_may_hold_its_folder_again(tmp_path):
    lock = FolderLock(tmp_path, "run folder").acquire()
    assert FolderLock(tmp_path / ".." / tmp_path.name, "run folder").acquire().held
    lock.release()
    assert not lock.held


def test_a_run_is_found_under_any_spelling_of_its_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = {"epochs": 2}
    RunFolder("runs/x").start({**config, "output": "runs/x"})
    for spelling in ("./runs/x", "runs/x/", str(tmp_path / "runs" / "x")):
        assert RunFolder(spelling).start({**config, "output": spelling}) is None  # resumes
    os.rename("runs/x", "moved")
    assert RunFolder("moved").start({**config, "output": "moved"}) is None


@pytest.mark.slow
def test_two_trainings_started_together_on_one_folder(tmp_path):
    output = tmp_path / "run"
    command = [
        sys.executable,
        "-m",
        "keras_segattn.cli",
        "train",
        "--model",
        "fcn8s",
        "--data",
        "shapes",
        "--num-images",
        "16",
        "--epochs",
        "2",
        "--batch-size",
        "8",
        "--width",
        "0.0625",
        "--output",
        str(output),
        "--verbose",
        "0",
    ]
    processes = [subprocess.Popen(command, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(p.wait(), p.stderr.read()) for p in processes]
    codes = sorted(code for code, _ in results)
    refused = [err for code, err in results if code != 0]
    assert codes[0] == 0, results
    # The other was refused by name (or, had it started after the first
    # finished, reported the finished run).
    assert codes == [0, 0] or "is in use by process" in refused[0], results
    epochs = [line.split(",")[0] for line in (output / "history.csv").read_text().splitlines()]
    assert epochs == ["epoch", "0", "1"]
    assert json.loads((output / "metrics.json").read_text())["model"] == "fcn8s"


def keras_file(path, members):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def test_a_keras_bomb_is_refused_before_anything_is_unpacked(tmp_path):
    # 256 MiB of spaces compress to a few hundred kB.
    bomb = keras_file(tmp_path / "bomb.keras", {"config.json": b" " * (256 * 2**20)})
    assert os.path.getsize(bomb) < 2**20
    with pytest.raises(ValueError, match=r"model_path .*'config.json' unpacks to 268,435,456"):
        load_model(bomb, "model_path")
    with pytest.raises(ValueError, match="unpacks to .* more than the 1,000 allowed"):
        check_keras_archive(
            keras_file(tmp_path / "w.keras", {"model.weights.h5": b"0" * 2000}), max_total=1000
        )


def test_a_damaged_keras_file_says_so(tmp_path):
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    whole = save_model(model, str(tmp_path / "m.keras"))
    data = open(whole, "rb").read()
    for name, content in {"cut.keras": data[: len(data) // 2], "text.keras": b"not a zip"}.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(ValueError, match=rf"--model-path .*{name}' is damaged or not a .keras"):
            load_model(tmp_path / name, "--model-path")


def test_a_full_disk_leaves_the_previous_file_and_no_partial_one(tmp_path, monkeypatch):
    path = str(tmp_path / "metrics.json")
    write_json(path, {"x": 1})

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", no_space)  # the new file half written
    with pytest.raises(OSError, match="No space left"):
        write_json(path, {"x": 2})
    monkeypatch.undo()
    assert json.loads(open(path).read()) == {"x": 1}
    assert sorted(os.listdir(tmp_path)) == ["metrics.json"]

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    last = save_model(model, str(tmp_path / "last.keras"))
    before = open(last, "rb").read()

    def half_saved(self, path, *args, **kwargs):
        with open(path, "wb") as f:
            f.write(b"half a file")
        no_space()

    monkeypatch.setattr(keras.Model, "save", half_saved)
    with pytest.raises(OSError, match="No space left"):
        save_model(model, last)
    monkeypatch.undo()
    assert open(last, "rb").read() == before
    assert sorted(os.listdir(tmp_path)) == ["last.keras", "metrics.json"]
    np.testing.assert_array_equal(load_model(last).get_weights()[0], model.get_weights()[0])


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from keras_segattn.models import create_model

    path = tmp_path_factory.mktemp("model") / "tiny.keras"
    save_model(create_model("fcn8s", preset="tiny", num_classes=4), str(path))
    return path


def test_an_export_folder_is_staged_by_one_process_at_a_time(tmp_path, checkpoint):
    from keras_segattn.export import export_checkpoint

    holder = hold_in_another_process(tmp_path / "tiny")
    try:
        with pytest.raises(RuntimeError, match=rf"export folder .* in use by process {holder.pid}"):
            export_checkpoint(str(checkpoint), str(tmp_path), name="tiny", tflite=())
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    assert sorted(os.listdir(tmp_path / "tiny")) == [".lock"]


@pytest.mark.slow
def test_an_export_failing_on_a_full_disk_keeps_the_published_version(
    tmp_path, checkpoint, monkeypatch
):
    from keras_segattn.export import export_checkpoint, saved_model

    export_checkpoint(
        str(checkpoint), str(tmp_path), name="tiny", version=1, tflite=(), log=lambda _: None
    )
    published = sorted(os.listdir(tmp_path / "tiny" / "1"))
    real = saved_model.serving_module

    class HalfWritten:
        def __init__(self, module):
            self.module = module

        def write_out(self, folder, **kwargs):
            os.makedirs(folder)
            (open(os.path.join(folder, "saved_model.pb"), "wb")).close()
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(saved_model, "serving_module", lambda *a, **k: HalfWritten(real(*a, **k)))
    with pytest.raises(OSError, match="No space left"):
        export_checkpoint(
            str(checkpoint), str(tmp_path), name="tiny", version=2, tflite=(), log=lambda _: None
        )
    assert sorted(os.listdir(tmp_path / "tiny")) == [".lock", "1"]  # no staging folder
    assert sorted(os.listdir(tmp_path / "tiny" / "1")) == published


FILL_AFTER_FIRST_EPOCH = """
import json, os, sys
import keras
from keras_segattn.recipes.semantic import train_segmenter

class FillTheDisk(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):  # after the run folder saved the epoch
        if epoch == 0:
            try:
                with open(os.path.join(sys.argv[1], "filler"), "wb") as f:
                    while True:
                        f.write(b"0" * 65536)
            except OSError:
                pass

train_segmenter("fcn8s", "shapes", sys.argv[1], num_images=16, epochs=3, batch_size=8,
                width=0.0625, verbose=0, callbacks=[FillTheDisk()])
"""


@pytest.mark.slow
def test_a_training_that_fills_the_disk_fails_cleanly(tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(disk)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip("mounting a small tmpfs needs root")
    try:
        run = disk / "run"
        result = subprocess.run(
            [sys.executable, "-c", FILL_AFTER_FIRST_EPOCH, str(run)],
            capture_output=True,
            text=True,
            timeout=300,
        )
        # A Python error naming the full disk, not a crash (a signal).
        assert result.returncode == 1, (result.returncode, result.stderr[-2000:])
        assert "No space left on device" in result.stderr
        partial = [n for _, _, files in os.walk(run) for n in files if ".partial-" in n]
        assert not partial, partial
        state = json.loads((run / "backup" / "state.json").read_text())
        assert state["epoch"] == 1  # the first epoch, committed before the disk filled
        os.remove(run / "filler")
        load_model(run / "best.keras")  # whole
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True)
