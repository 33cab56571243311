"""Every guarantee, for every registered model and task, without a test per
model: the tests iterate `keras_segattn.models.list_models()` and the tasks of
its entries (issue 30).

- every model: a tiny `segattn` run of one epoch -> its task's evaluate command
  -> `segattn export --keras` -> the SavedModel reloaded and served on the
  sample the export was verified with, and the exported `.keras` file run
  through the CLI again; the run folder holds what `recipes.runs` promises;
- every task (its first registered model): a tiny run of three epochs killed
  (SIGKILL) in the middle of epoch 2, then run again, ends with each epoch
  once in `history.csv`, the state at epoch 3, `best.keras` the best epoch's
  (where the task monitors a metric) and `metrics.json`; the same command a
  third time reports the finished run and writes nothing.

How to make a tiny run of a model is a question of its task only:
`TINY_RUNS` below, one entry per task. A new model of a known task is covered
as soon as it is registered (with its `tiny` builder arguments); a new task
fails `test_every_task_has_a_tiny_run` until it gets an entry.
"""

import csv
import dataclasses
import json
import math
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from keras_segattn.cli import main
from keras_segattn.models import get_model_spec, list_models
from keras_segattn.tasks import get_task, task_of

pytestmark = pytest.mark.slow

EPOCHS = 3  # of the kill-and-resume runs


def model_args(name, flags):
    """The `--model-arg KEY=VALUE` pairs of the registry's `tiny` builder
    arguments of `name`, but for the keys in `flags`: those the command sets
    itself (`None`: the data decide them, e.g. `num_classes`; a string: that
    flag, with the value as it is)."""
    argv = []
    for key, value in get_model_spec(name).tiny.items():
        if key in flags:
            if callable(flags[key]):
                argv += flags[key](value)
            elif flags[key] is not None:
                values = value if isinstance(value, (list, tuple)) else [value]
                argv += [flags[key], *[str(v) for v in values]]
        else:
            argv += ["--model-arg", f"{key}={value!r}"]
    return argv


# -- the tiny run of each task -------------------------------------------------


@dataclasses.dataclass(frozen=True)
class TinyRun:
    """How to run any model of one task at a tiny size through `segattn`.

    `inputs` (the fixture of that name) holds the data folders the commands
    may read: `shared_data` (MNIST) and `coco` (a tiny COCO layout spec).

    Attributes:
        train: `(name, output, epochs, inputs) -> argv` of the command
            that trains a model of the task into `output`, at `--verbose 2`
            (one line an epoch: "Epoch e/E"), each epoch a few batches.
        batches: the batches of one epoch of `train` for the task's first
            registered model (the kill test kills at the first batch of
            epoch 2, `batch:<batches + 1>`).
        score: the key of the task's held-out score in the run's
            `metrics.json` (a number, or `null` for NaN).
        folder: `(output, name) -> run folder` (the command's `--output` by
            default).
        evaluate: `(model_path, scores_json, inputs) -> argv` of the
            command that scores a checkpoint of the task and writes its
            scores to `scores_json`, or `None` where the training command
            scores the model itself (its `metrics.json`).
        use: `(exported_keras, tmp_path, inputs) -> (argv, written)`
            of a command that runs an exported `.keras` file (predict,
            caption, evaluate, ...), and the file it must write, or `None`.
        export_data: `inputs -> --data` of `segattn export` (the
            images it verifies the export with), or `None`: the run's data.
    """

    train: Callable
    batches: int
    score: str
    folder: Callable = lambda output, name: Path(output)
    evaluate: Callable | None = None
    use: Callable | None = None
    export_data: Callable | None = None


def segmenter_run(*extra):
    """`segattn train` (semantic and patch models): 8 shapes at 32x32,
    batches of 4 (of 4 patches a batch for a patch classifier, one patch an
    image): 2 batches an epoch."""

    def train(name, output, epochs, inputs):
        return [
            "train",
            "--model",
            name,
            "--data",
            "shapes",
            "--num-images",
            "8",
            "--epochs",
            str(epochs),
            "--batch-size",
            "4",
            "--image-size",
            "32",
            "--output",
            str(output),
            "--verbose",
            "2",
            *extra,
            *model_args(name, {"num_classes": None, "width": "--width"}),
        ]

    return train


def evaluate_on(split):
    def evaluate(model_path, scores, inputs):
        return [
            "evaluate",
            "--model-path",
            str(model_path),
            "--data",
            "shapes",
            "--split",
            split,
            "--output",
            str(scores),
        ]

    return evaluate


def predict_overlay(model_path, tmp_path, inputs):
    from PIL import Image

    image = tmp_path / "image.png"
    Image.fromarray(np.full((24, 40, 3), 120, np.uint8)).save(image)
    argv = [
        "predict",
        "--model-path",
        str(model_path),
        "--images",
        str(image),
        "--output-dir",
        str(tmp_path / "overlays"),
    ]
    return argv, tmp_path / "overlays" / "image_overlay.png"


def instance_train(name, output, epochs, inputs):
    """`segattn instance-train` on a COCO layout of 3 images (train and val,
    1 or 2 squares each: `tests.data.test_coco.write_squares_layout`) at
    48x48, batches of 4: the shapes' held-out split is 200 images, which
    `segattn evaluate` scores whole (minutes for sds). The `tiny` arguments
    go as `--model-arg`: builder arguments of rpn and mnc, trainer arguments
    of sds and hypercolumns (their trainers take the same names).
    hypercolumns (the first instance model): 2 jittered copies of each
    image, 6 examples, 2 batches an epoch."""
    return [
        "instance-train",
        "--model",
        name,
        "--data",
        inputs.coco,
        "--image-size",
        "48",
        "--epochs",
        str(epochs),
        "--batch-size",
        "4",
        "--output",
        str(output),
        "--verbose",
        "2",
        *model_args(name, {"num_classes": None}),
    ]


def instance_evaluate(model_path, scores, inputs):
    return [
        "evaluate",
        "--model-path",
        str(model_path),
        "--data",
        inputs.coco,
        "--split",
        "val",
        "--output",
        str(scores),
    ]


def instance_use(model_path, tmp_path, inputs):
    scores = tmp_path / "exported_scores.json"
    return instance_evaluate(model_path, scores, inputs), scores


def square_side(size):
    """`--image-size` of caption-train: the side of square images."""
    height, width = (size, size) if isinstance(size, int) else size
    assert height == width, f"caption-train trains on square images; the tiny size is {size}"
    return ["--image-size", str(height)]


def caption_train(name, output, epochs, inputs):
    """`segattn caption-train` (its one model): 16 shapes at the tiny size,
    batches of 8: 2 batches an epoch; 50 held out (the least), scored
    greedily."""
    return [
        "caption-train",
        "--data",
        "shapes",
        "--num-images",
        "16",
        "--epochs",
        str(epochs),
        "--batch-size",
        "8",
        "--beam-width",
        "1",
        "--output",
        str(output),
        "--verbose",
        "2",
        *model_args(
            name, {"vocabulary": None, "image_size": square_side, "max_length": "--max-length"}
        ),
    ]


def caption_evaluate(model_path, scores, inputs):
    return [
        "caption-evaluate",
        "--model-path",
        str(model_path),
        "--data",
        "shapes",
        "--split",
        "val",
        "--num-images",
        "4",
        "--beam-width",
        "1",
        "--output",
        str(scores),
    ]


def caption_figure(model_path, tmp_path, inputs):
    from PIL import Image

    image = tmp_path / "image.png"
    Image.fromarray(np.full((40, 48, 3), 200, np.uint8)).save(image)
    argv = [
        "caption",
        "--model-path",
        str(model_path),
        "--images",
        str(image),
        "--beam-width",
        "1",
        "--output-dir",
        str(tmp_path / "figures"),
    ]
    return argv, tmp_path / "figures" / "image_attention.png"


def stn_row(name):
    """The `--rows` entry of a classification model: its first Table 1 row
    ("cnn", "st_cnn:affine", ...)."""
    from keras_segattn.recipes.stn import PAPER_ERRORS, parse_row

    rows = [row for row in PAPER_ERRORS if parse_row(row)[0] == name]
    assert rows, f"{name!r} has no row in PAPER_ERRORS: stn-table cannot train it"
    return rows[0]


def stn_train(name, output, epochs, inputs):
    """One `segattn stn-table` cell on R (28x28 digits, the `tiny`
    `input_size`): 64 digits, batches of 32, 2 batches an epoch; the cell
    scores itself on 64 test digits (its `metrics.json`)."""
    unknown = set(get_model_spec(name).tiny) - {"input_size"}
    assert not unknown, f"stn-table has no --model-arg: it cannot pass {sorted(unknown)}"
    return [
        "stn-table",
        "--rows",
        stn_row(name),
        "--distortions",
        "R",
        "--epochs",
        str(epochs),
        "--batch-size",
        "32",
        "--limit",
        "64",
        "--mnist",
        f"{inputs.shared_data}/mnist",
        "--output",
        str(output),
        "--verbose",
        "2",
    ]


def stn_cell(output, name):
    from keras_segattn.recipes.stn import cell_folder

    return Path(cell_folder(str(output), stn_row(name), "R"))


TINY_RUNS = {
    "semantic": TinyRun(
        segmenter_run(),
        batches=2,
        score="mean_iou",
        evaluate=evaluate_on("test"),
        use=predict_overlay,
    ),
    "patch": TinyRun(
        segmenter_run("--patches-per-image", "1"),
        batches=2,
        score="mean_iou",
        evaluate=evaluate_on("test"),
        use=predict_overlay,
    ),
    "instance": TinyRun(
        instance_train,
        batches=2,
        score="mAPr@0.5",
        evaluate=instance_evaluate,
        use=instance_use,
        export_data=lambda inputs: inputs.coco,
    ),
    "captioning": TinyRun(
        caption_train, batches=2, score="BLEU-4", evaluate=caption_evaluate, use=caption_figure
    ),
    "classification": TinyRun(
        stn_train,
        batches=2,
        score="test_error",
        folder=stn_cell,
        export_data=lambda inputs: f"{inputs.shared_data}/mnist",
    ),
}

# The outputs of `serving_default` by the task a model is served as
# (`Task.serving_model`): the names the design promises across families
# (a signature may have more, e.g. a captioner's joined `captions`).
SERVED_OUTPUTS = {
    "semantic": {"class_map", "probabilities"},
    "instance": {"boxes", "scores", "classes", "masks", "num_detections"},
    "region_scoring": {"probabilities", "figure_ground"},
    "box_segmentation": {"masks"},
    "captioning": {"token_ids", "words", "attention"},
    "classification": {"probabilities", "transformed_images", "transform"},
}


@dataclasses.dataclass(frozen=True)
class Inputs:
    shared_data: str  # ../shared/data (MNIST)
    coco: str  # "coco:<root>" of a COCO layout of 3 train and 3 val images


@pytest.fixture
def inputs(shared_data, tmp_path):
    from tests.data.test_coco import write_squares_layout

    return Inputs(shared_data, f"coco:{write_squares_layout(str(tmp_path / 'coco'))}")


def registry_tasks():
    return sorted({get_model_spec(name).task for name in list_models()})


def test_every_task_has_a_tiny_run():
    missing = [task for task in registry_tasks() if task not in TINY_RUNS]
    assert not missing, (
        f"registered models have the tasks {missing}, which tests/test_every_model.py does not "
        "know how to run: add a TinyRun to its TINY_RUNS (the command that trains a model of "
        "the task in a few batches, its batches an epoch, the command that scores it and one "
        "that runs an exported .keras file), and the names of its serving outputs to "
        "SERVED_OUTPUTS"
    )
    for task in registry_tasks():
        assert get_task(task).train_command, f"task {task!r} names no training command"


# -- helpers --------------------------------------------------------------------


def history(folder):
    with open(folder / "history.csv", newline="") as f:
        return list(csv.DictReader(f))


def state(folder):
    return json.loads((folder / "backup" / "state.json").read_text())


def finite_numbers(value, where):
    """Every number in a JSON value is finite (`None` stands for NaN)."""
    if isinstance(value, dict):
        for key, item in value.items():
            finite_numbers(item, f"{where}[{key!r}]")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            finite_numbers(item, f"{where}[{i}]")
    elif isinstance(value, float):
        assert math.isfinite(value), f"{where} is {value}"


def check_run_folder(folder, task, epochs):
    """The run folder of `recipes.runs`, after `epochs` epochs."""
    for name in ("run.json", "history.csv", "last.keras", "metrics.json"):
        assert (folder / name).is_file(), f"{folder} has no {name}: {sorted(os.listdir(folder))}"
    if task.monitor is not None:
        assert (folder / "best.keras").is_file(), f"{task} monitors {task.monitor}: no best.keras"
    assert (folder / "logs").is_dir() and os.listdir(folder / "logs"), "no TensorBoard logs/"
    assert (folder / "backup" / "state.json").is_file(), "no resume state backup/state.json"
    rows = history(folder)
    assert [int(r["epoch"]) for r in rows] == list(range(epochs)), "history.csv: each epoch once"
    if task.monitor is not None:
        assert task.monitor in rows[0], f"history.csv has no {task.monitor} column"
    # A training loss every epoch: some batch was trained on.
    losses = [r.get("loss") or "" for r in rows]
    assert all(v and math.isfinite(float(v)) for v in losses), f"training losses {losses}"
    assert state(folder)["epoch"] == epochs
    metrics = json.loads((folder / "metrics.json").read_text())
    finite_numbers(metrics, "metrics.json")
    return metrics


def weights(path):
    """The model's variables in a `.keras` file, by name (the optimizer's
    left out), read from the archive's weights file without building the
    model."""
    import io
    import zipfile

    import h5py

    with zipfile.ZipFile(path) as archive:
        data = archive.read("model.weights.h5")
    found = {}

    def read(name, item):
        if isinstance(item, h5py.Dataset) and not name.startswith("optimizer/"):
            found[name] = item[()]

    with h5py.File(io.BytesIO(data), "r") as f:
        f.visititems(read)
    assert found, f"{path} holds no weights"
    return found


def same_weights(a, b):
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def files_written(folder):
    """`{path: (size, mtime)}` of every file under `folder` but its `.lock`
    (which every start takes, to check the folder)."""
    found = {}
    for root, _, names in os.walk(folder):
        for name in names:
            if name == ".lock":
                continue
            path = os.path.join(root, name)
            info = os.stat(path)
            found[path] = (info.st_size, info.st_mtime_ns)
    return found


def segattn(argv, crash_at=None):
    """`segattn` in a process of its own, killed at `crash_at` if given
    (`keras_segattn.core.saving.crash_point`)."""
    env = {k: v for k, v in os.environ.items() if k != "KERAS_SEGATTN_CRASH_AT"}
    # One TensorFlow thread, as in the test process (tests/conftest.py): a
    # run resumed here then computes as the killed one did, bit for bit.
    env.update(PYTHONUNBUFFERED="1", TF_CPP_MIN_LOG_LEVEL="2", TF_NUM_INTRAOP_THREADS="1")
    if crash_at:
        env["KERAS_SEGATTN_CRASH_AT"] = crash_at
    return subprocess.run(
        [sys.executable, "-m", "keras_segattn.cli", *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


# -- every model ----------------------------------------------------------------


@pytest.mark.parametrize("name", list_models())
def test_every_model_trains_evaluates_exports_and_reloads(name, tmp_path, inputs, capsys):
    import tensorflow as tf

    from keras_segattn.checkpoints import load_model

    task = task_of(name)
    assert task.name in TINY_RUNS, "see test_every_task_has_a_tiny_run"
    tiny = TINY_RUNS[task.name]

    # Train: one epoch of a few batches.
    output = tmp_path / "run"
    main(tiny.train(name, output, 1, inputs))
    folder = tiny.folder(output, name)
    metrics = check_run_folder(folder, task, epochs=1)
    assert tiny.score in metrics, f"metrics.json has no {tiny.score}: {sorted(metrics)}"
    checkpoint = folder / ("best.keras" if task.monitor is not None else "last.keras")

    # Evaluate: the task's command, or the scores the training command wrote.
    if tiny.evaluate is not None:
        scores = tmp_path / "scores.json"
        main(tiny.evaluate(checkpoint, scores, inputs))
        scored = json.loads(scores.read_text())
        finite_numbers(scored, f"the scores of {task.evaluate_command}")
        assert any(isinstance(v, float) for v in scored.values()), scored
    else:  # scored by the training command: a number
        assert isinstance(metrics[tiny.score], float), metrics

    # Export: the SavedModel, verified against Keras, and the .keras file.
    served = tmp_path / "served"
    data = [] if tiny.export_data is None else ["--data", tiny.export_data(inputs)]
    main(
        [
            "export",
            "--model-path",
            str(checkpoint),
            "--output",
            str(served),
            "--name",
            name,
            "--keras",
            "--onnx",
            # Full-integer too: export runs every file it writes in the
            # interpreter (an int8 file can convert and still fail there).
            "--tflite",
            "float32",
            "int8",
            *data,
        ]
    )
    exported = served / name / f"{name}_v1.keras"
    assert (served / name / f"{name}_v1_int8.tflite").is_file()
    assert (served / name / "1" / "saved_model.pb").is_file()
    assert exported.is_file() and (served / name / f"{name}_v1.run.json").is_file()
    assert (served / name / f"{name}_v1.onnx").is_file()  # verified in onnxruntime by export

    # Reload: the SavedModel served on the sample the export was verified with.
    from keras_segattn.checkpoints import read_run_config

    loaded = load_model(str(exported))
    model, serving = task_of(loaded).serving_model(loaded)
    from keras_segattn.core.validation import optional_size

    run = read_run_config(str(exported))
    size = optional_size(run.get("image_size"), "image_size of run.json")  # as export reads it
    sample = serving.sample_inputs(model, data[1] if data else run.get("data"), size)[0]
    expected = {k: np.asarray(v) for k, v in serving.serving_function(model)(**sample).items()}
    signature = tf.saved_model.load(str(served / name / "1")).signatures["serving_default"]
    outputs = {k: v.numpy() for k, v in signature(**sample).items()}
    assert serving.name in SERVED_OUTPUTS, (
        f"{name} is served as a {serving.name} model: add its output names to SERVED_OUTPUTS"
    )
    assert set(outputs) == set(expected), (sorted(outputs), sorted(expected))
    assert SERVED_OUTPUTS[serving.name] <= set(outputs), sorted(outputs)
    batch = len(next(iter(sample.values())))
    for key, value in outputs.items():
        spec = signature.structured_outputs[key]
        assert value.dtype == spec.dtype.as_numpy_dtype, (key, value.dtype, spec)
        assert spec.shape.is_compatible_with(value.shape), (key, value.shape, spec)
        assert value.shape == expected[key].shape, (key, value.shape, expected[key].shape)
        assert value.shape[0] == batch, (key, value.shape)
        if np.issubdtype(value.dtype, np.floating):
            assert np.isfinite(value).all(), f"{key} has non-finite values"
            np.testing.assert_allclose(value, expected[key], atol=1e-3, err_msg=key)
        elif value.dtype != object:
            np.testing.assert_array_equal(value, expected[key], err_msg=key)
    # The int8 file on a flat grey image (no contrast, nothing to detect):
    # its quantised ranges come from real images, and nothing it divides by
    # may round to zero there (it did for the image pyramid and for the
    # empty detection slots' boxes).
    from keras_segattn.export import run_tflite

    flat = {
        k: np.full_like(np.asarray(v)[:1], 128) if k == "images" else np.asarray(v)[:1]
        for k, v in sample.items()
    }
    int8_outputs = run_tflite(str(served / name / f"{name}_v1_int8.tflite"), flat)
    for key, value in int8_outputs.items():
        if np.issubdtype(value.dtype, np.floating):
            assert np.isfinite(value).all(), f"the int8 file's {key} has non-finite values"
    # TF's own converter takes the SavedModel's portable signature, builtins only.
    from keras_segattn.export import PORTABLE_SIGNATURE_KEY, onnx_labels, verify_export

    converter = tf.lite.TFLiteConverter.from_saved_model(
        str(served / name / "1"), signature_keys=[PORTABLE_SIGNATURE_KEY]
    )
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    report = verify_export(expected, sample, tflite_model=converter.convert())["tflite"]
    assert max(report.values()) <= 1e-3, report
    labels = (served / name / f"{name}_v1.labels.txt").read_text(encoding="utf-8")
    assert onnx_labels(str(served / name / f"{name}_v1.onnx")) == labels.splitlines()
    if serving.takes_images:  # per-pixel outputs at the images' size
        height, width = sample["images"].shape[1:3]
        for key, (axis, _) in serving.per_pixel_outputs.items():
            assert outputs[key].shape[axis + 1 : axis + 3] == (height, width), (key, axis)

    # Reload: the exported .keras file through the CLI.
    if tiny.use is not None:
        argv, written = tiny.use(exported, tmp_path, inputs)
        main(argv)
        assert written.is_file(), f"{argv[0]} of the exported .keras wrote no {written.name}"
        if written.suffix == ".json":
            finite_numbers(json.loads(written.read_text()), f"{argv[0]} of the exported .keras")


# -- every task -----------------------------------------------------------------


@pytest.mark.parametrize("name, batches", [("fcn8s", 2), ("mnc", 1)])
def test_the_random_state_of_training_survives_a_kill(name, batches, tmp_path, inputs):
    """Dropout (fcn8s) and minibatch sampling (mnc) draw from Keras
    `SeedGenerator`s, whose state weights files leave out and the resume
    state carries: killed mid-run and resumed under `--deterministic`, the
    run ends with the weights of an uninterrupted one, bit for bit. (Without
    the seed states in the resume state, fcn8s ended elsewhere.)"""
    from keras_segattn.models import create_model
    from keras_segattn.recipes.runs import seed_states

    assert seed_states(create_model(name, **get_model_spec(name).tiny)), (
        f"{name} draws no random numbers in training: pick a model that does"
    )
    tiny = TINY_RUNS[task_of(name).name]

    def argv(output):
        return [*tiny.train(name, output, EPOCHS, inputs), "--deterministic"]

    resumed, whole = tmp_path / "resumed", tmp_path / "whole"
    killed = segattn(argv(resumed), crash_at=f"batch:{batches + 1}")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert state(tiny.folder(resumed, name))["epoch"] == 1
    main(argv(resumed))
    main(argv(whole))
    a = weights(tiny.folder(whole, name) / "last.keras")
    b = weights(tiny.folder(resumed, name) / "last.keras")
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def without_times(rows):
    return [{k: v for k, v in row.items() if k != "epoch_seconds"} for row in rows]


@pytest.mark.parametrize("task_name", registry_tasks())
def test_every_task_resumes_after_a_kill(task_name, tmp_path, inputs, capsys):
    """Killed mid-epoch and resumed under `--deterministic`, a run ends with
    the weights and the history of the same command run without a break,
    bit for bit (which also makes two runs of the same command identical)."""
    assert task_name in TINY_RUNS, "see test_every_task_has_a_tiny_run"
    tiny, task = TINY_RUNS[task_name], get_task(task_name)
    name = list_models(task_name)[0]
    output = tmp_path / "run"
    argv = [*tiny.train(name, output, EPOCHS, inputs), "--deterministic"]
    folder = tiny.folder(output, name)

    # Killed at the first batch of epoch 2: epoch 1 committed, nothing after.
    killed = segattn(argv, crash_at=f"batch:{tiny.batches + 1}")
    assert killed.returncode == -signal.SIGKILL, (killed.returncode, killed.stderr[-3000:])
    assert f"Epoch 2/{EPOCHS}" in killed.stdout and f"Epoch 3/{EPOCHS}" not in killed.stdout, (
        f"the kill at batch {tiny.batches + 1} did not fall in epoch 2: is TINY_RUNS"
        f"[{task_name!r}].batches ({tiny.batches}) the batches of an epoch of {name}?\n"
        + killed.stdout[-2000:]
    )
    assert state(folder)["epoch"] == 1
    assert [int(r["epoch"]) for r in history(folder)] == [0]
    assert not (folder / "metrics.json").exists()
    best_of_epoch_1 = weights(folder / "best.keras") if task.monitor is not None else None

    # The same command again: goes on from epoch 2, to the end.
    capsys.readouterr()
    main(argv)
    out = capsys.readouterr().out
    assert "Epoch 1/" not in out and f"Epoch 2/{EPOCHS}" in out and f"Epoch 3/{EPOCHS}" in out
    check_run_folder(folder, task, EPOCHS)
    saved = state(folder)
    if task.monitor is not None:
        values = [float(r[task.monitor]) for r in history(folder)]
        best = max(values) if task.mode == "max" else min(values)
        assert saved["monitor"] == task.monitor
        assert saved["best"] == pytest.approx(best, rel=1e-6)
        assert saved["best_epoch"] == values.index(best) + 1, (values, saved)
        best_weights = weights(folder / "best.keras")
        if saved["best_epoch"] == EPOCHS:
            assert same_weights(best_weights, weights(folder / "last.keras"))
        elif saved["best_epoch"] == 1:
            assert same_weights(best_weights, best_of_epoch_1)
        else:  # epoch 2: neither the first epoch's nor the last's
            assert not same_weights(best_weights, best_of_epoch_1)
            assert not same_weights(best_weights, weights(folder / "last.keras"))

    # A third time: the finished run is reported; nothing is trained or written.
    before, rows = files_written(output), history(folder)
    main(argv)
    out = capsys.readouterr().out
    assert "Epoch" not in out, out[-2000:]
    assert history(folder) == rows
    assert files_written(output) == before

    # The same command without a break: the same numbers, bit for bit.
    whole = tmp_path / "whole"
    main([*tiny.train(name, whole, EPOCHS, inputs), "--deterministic"])
    whole_folder = tiny.folder(whole, name)
    assert without_times(history(whole_folder)) == without_times(rows)
    for checkpoint in ("last.keras", "best.keras") if task.monitor else ("last.keras",):
        a, b = weights(whole_folder / checkpoint), weights(folder / checkpoint)
        differing = [k for k in a if not np.array_equal(a[k], b.get(k))]
        assert a.keys() == b.keys() and not differing, f"{checkpoint}: {differing}"


def _epoch_batches(one_epoch, epoch):
    """Every batch of one epoch of a recipe's data, as NumPy arrays, drawn
    the way `fit` draws it (through `epochs_of`, under its graph seed)."""
    import tensorflow as tf

    from keras_segattn.data.epochs import batches_per_epoch, epochs_of

    data = epochs_of(one_epoch, epoch + 1, epoch).take(batches_per_epoch(one_epoch))
    return [[np.asarray(t) for t in tf.nest.flatten(batch)] for batch in data]


def _same_batches(a, b):
    return len(a) == len(b) and all(
        len(x) == len(y) and all(u.shape == v.shape and np.array_equal(u, v) for u, v in zip(x, y))
        for x, y in zip(a, b)
    )


@pytest.mark.parametrize("task_name", registry_tasks())
def test_every_task_draws_each_epoch_anew(task_name, tmp_path, inputs, monkeypatch):
    """Each epoch of a task's training data is its own draw (shuffle,
    augmentation, sampling, distortion), a function of the epoch: the same
    epoch twice is the same, and the epochs are not one draw repeated (a
    recipe seeding every epoch with `seed` instead of `seed + epoch` fails
    here, while its killed-and-resumed runs still agree)."""
    import importlib
    import pkgutil

    import keras_segattn
    from keras_segattn.data import epochs

    for info in pkgutil.walk_packages(keras_segattn.__path__, prefix="keras_segattn."):
        importlib.import_module(info.name)
    original, recorded = epochs.epochs_of, []

    def recording(one_epoch, *args, **kwargs):
        recorded.append(one_epoch)
        return original(one_epoch, *args, **kwargs)

    for module in list(sys.modules.values()):
        if module is not epochs and getattr(module, "epochs_of", None) is original:
            monkeypatch.setattr(module, "epochs_of", recording)

    tiny = TINY_RUNS[task_name]
    name = list_models(task_name)[0]
    main(tiny.train(name, tmp_path / "run", 2, inputs))
    assert recorded, f"the {task_name} run of {name} fed fit without data.epochs.epochs_of"
    for one_epoch in recorded:
        first = _epoch_batches(one_epoch, 0)
        assert first, f"epoch 0 of the {task_name} data is empty"
        assert _same_batches(first, _epoch_batches(one_epoch, 0)), "epoch 0 drawn twice differs"
        later = [_epoch_batches(one_epoch, e) for e in (1, 2, 3)]
        assert not all(_same_batches(first, other) for other in later), (
            f"epochs 0 to 3 of the {task_name} training data ({name}) are the same batches: "
            "each epoch must be drawn with seeds made from the epoch (seed + epoch)"
        )
