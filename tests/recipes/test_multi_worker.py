"""`train_segmenter` under `MultiWorkerMirroredStrategy`: two worker
processes on this machine, a cluster of 127.0.0.1 ports in `$TF_CONFIG`.

Both end with the same weights, only the chief writes the run folder
(checked with Python's audit hooks, which see every file the package
creates, renames or removes), and a run killed on both workers resumes on
both from the chief's last committed epoch."""

import csv
import json
import os
import signal
import socket
import subprocess
import sys

import numpy as np
import pytest

pytestmark = pytest.mark.slow

WORKER = r"""
import json, os, sys
output, index, record = sys.argv[1], int(sys.argv[2]), sys.argv[3]
writes = []
def audit(event, args):
    # Every file the run folder gets is created or moved into place through
    # these: open for writing, os.replace / rename, mkdir, remove.
    if event == "open":
        path, mode, flags = args
        if mode is not None:
            writing = any(c in mode for c in "wax+")
        else:
            writing = flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)
        if not writing or not isinstance(path, (str, bytes, os.PathLike)):
            return
        path = os.fsdecode(path)
    elif event in ("os.rename", "os.mkdir", "os.remove", "shutil.rmtree"):
        path = os.fsdecode(args[1] if event == "os.rename" else args[0])
    else:
        return
    if os.path.abspath(path).startswith(os.path.abspath(output)):
        writes.append((event, path))
sys.addaudithook(audit)

import keras, numpy as np
from keras_segattn.recipes.semantic import train_segmenter

class Record(keras.callbacks.Callback):
    first_epoch = None
    def on_epoch_begin(self, epoch, logs=None):
        if Record.first_epoch is None:
            Record.first_epoch = epoch
    def on_train_end(self, logs=None):
        np.savez(record + ".npz", *[w.numpy() for w in self.model.weights])

summary = train_segmenter(
    "fcn8s", "shapes", output, epochs=3, batch_size=8, num_images=16, width=0.0625,
    strategy="auto", verbose=0, callbacks=[Record()],  # auto: $TF_CONFIG's cluster
)
with open(record + ".json", "w") as f:
    json.dump({"writes": writes, "first_epoch": Record.first_epoch,
               "returned": summary is not None}, f)
"""


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def run_cluster(tmp_path, output, tag, crash_at=None, timeout=300):
    """Starts both workers, waits for them; returns their return codes."""
    workers = [f"127.0.0.1:{p}" for p in free_ports(2)]
    processes = []
    for index in range(2):
        env = dict(os.environ)
        env["TF_CONFIG"] = json.dumps(
            {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        )
        env.pop("KERAS_SEGATTN_CRASH_AT", None)
        if crash_at:
            env["KERAS_SEGATTN_CRASH_AT"] = crash_at
        record = str(tmp_path / f"{tag}-worker{index}")
        log = open(tmp_path / f"{tag}-worker{index}.log", "w")
        processes.append(
            subprocess.Popen(
                [sys.executable, "-c", WORKER, str(output), str(index), record],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
    codes = []
    try:
        for process in processes:
            codes.append(process.wait(timeout=timeout))
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
    return codes


def read_record(tmp_path, tag, index):
    return json.loads((tmp_path / f"{tag}-worker{index}.json").read_text())


def weights(tmp_path, tag, index):
    with np.load(tmp_path / f"{tag}-worker{index}.npz") as data:
        return [data[k] for k in sorted(data, key=lambda k: int(k.split("_")[1]))]


def log_tail(tmp_path, tag):
    return "\n".join((tmp_path / f"{tag}-worker{i}.log").read_text()[-2000:] for i in range(2))


def test_two_workers_train_write_once_and_resume_together(tmp_path):
    output = tmp_path / "run"
    # 1. Killed on both workers at the first batch of epoch 2 (two batches
    #    an epoch): epoch 1 is committed, by the chief only.
    codes = run_cluster(tmp_path, output, "killed", crash_at="batch:3")
    assert codes == [-signal.SIGKILL] * 2, (codes, log_tail(tmp_path, "killed"))
    state = json.loads((output / "backup" / "state.json").read_text())
    assert state["epoch"] == 1
    # 2. The same command again: both resume at epoch 2 and finish.
    codes = run_cluster(tmp_path, output, "resumed")
    assert codes == [0, 0], log_tail(tmp_path, "resumed")
    chief, other = read_record(tmp_path, "resumed", 0), read_record(tmp_path, "resumed", 1)
    assert chief["first_epoch"] == other["first_epoch"] == 1
    assert chief["returned"] and not other["returned"]  # the chief scores the model
    # The audit sees the chief's writes (so it would see the other's).
    written = {os.path.basename(path) for _, path in chief["writes"]}
    assert {"metrics.json", "last.keras", "history.csv", "state.json"} <= written
    assert other["writes"] == [], other["writes"][:5]
    # Same weights on both workers, to the bit: one all-reduced update each step.
    for a, b in zip(weights(tmp_path, "resumed", 0), weights(tmp_path, "resumed", 1)):
        np.testing.assert_array_equal(a, b)
    with open(output / "history.csv", newline="") as f:
        assert [row["epoch"] for row in csv.DictReader(f)] == ["0", "1", "2"]
    assert json.loads((output / "metrics.json").read_text())["epochs"] == 3
