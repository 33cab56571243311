"""The trained models shipped in `saved_models/`: each reproduces its
held-out score from its SavedModel, carries its labels, and the command
line works on it out of the box."""

import os

import numpy as np
import pytest

from keras_segattn.cli import main
from keras_segattn.export import read_labels, tflite_labels
from keras_segattn.recipes.served import HELDOUT_FILE, read_heldout, score_shipped

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAVED_MODELS = os.path.join(ROOT, "saved_models")
SHIPPED = sorted(
    name
    for name in os.listdir(SAVED_MODELS)
    if os.path.isfile(os.path.join(SAVED_MODELS, name, HELDOUT_FILE))
)
# What a shipped folder may weigh (SavedModel, TFLite and Keras files).
MAX_MEGABYTES = 10


def test_the_promised_models_are_shipped():
    assert {"st_cnn_rts", "multiscale_convnet_camvid", "show_attend_tell_shapes"} <= set(SHIPPED)


def folder_megabytes(folder):
    sizes = [os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(folder) for f in files]
    return sum(sizes) / 1e6


@pytest.mark.parametrize("name", SHIPPED)
def test_a_shipped_model_reproduces_its_held_out_score(name, shared_data):
    folder = os.path.join(SAVED_MODELS, name)
    subset = read_heldout(folder)["subset"]
    scores = score_shipped(folder, subset["images"], shared_data)
    for key, expected in subset["scores"].items():
        assert scores[key] == pytest.approx(expected, abs=1e-4), (key, scores)
    assert folder_megabytes(folder) < MAX_MEGABYTES


@pytest.mark.parametrize("name", SHIPPED)
def test_a_shipped_model_carries_its_labels_everywhere(name):
    folder = os.path.join(SAVED_MODELS, name)
    labels = read_labels(os.path.join(folder, "1"))
    assert labels and len(labels) == len(set(labels))
    tflite = [f for f in os.listdir(folder) if f.endswith(".tflite")]
    assert tflite
    for file in tflite:
        assert tflite_labels(os.path.join(folder, file)) == labels
    with open(os.path.join(folder, f"{name}_v1.labels.txt"), encoding="utf-8") as f:
        assert f.read().split("\n")[:-1] == labels


@pytest.mark.parametrize("name", SHIPPED)
def test_the_command_line_works_on_a_shipped_model(name, tmp_path, capsys, shared_data):
    from PIL import Image

    folder = os.path.join(SAVED_MODELS, name)
    model_path = os.path.join(folder, f"{name}_v1.keras")
    task = read_heldout(folder)["score"]["task"]
    image = tmp_path / "image.png"
    rng = np.random.default_rng(0)
    main(["score-export", folder, "--images", "2", "--shared-data", shared_data])
    printed = capsys.readouterr().out
    assert all(key in printed for key in read_heldout(folder)["subset"]["scores"])
    if task == "classification":  # the transformer's figure on test digits
        figure = str(tmp_path / "stn.png")
        main(
            [
                "stn-figure",
                "--model-path",
                model_path,
                "--output",
                figure,
                "--count",
                "4",
                "--mnist",
                os.path.join(shared_data, "mnist"),
            ]
        )
        assert os.path.isfile(figure)
        return
    Image.fromarray(rng.integers(0, 256, (64, 80, 3)).astype(np.uint8)).save(image)
    command = "caption" if task == "captioning" else "predict"
    main(
        [
            command,
            "--model-path",
            model_path,
            "--images",
            str(image),
            "--output-dir",
            str(tmp_path / "out"),
        ]
    )
    assert os.listdir(tmp_path / "out")
    if task == "captioning":
        assert "image.png: " in capsys.readouterr().out
