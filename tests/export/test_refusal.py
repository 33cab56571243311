"""`segattn export` publishes nothing when an artifact differs from Keras:
each artifact is made to differ for real (converted from a copy of the
model with its last layer scaled) and the export must refuse it, leaving
no version folder, no file and no staging folder."""

import os

import keras
import pytest

from keras_segattn.export import EXPORT_TOLERANCE, export_checkpoint, flow
from keras_segattn.models import create_model
from keras_segattn.recipes.runs import save_model
from keras_segattn.testing import nonzero_weights


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    model = create_model("fcn8s", preset="tiny", num_classes=4)
    model.set_weights(nonzero_weights(model))  # outputs that a perturbation moves
    path = tmp_path_factory.mktemp("model") / "tiny.keras"
    save_model(model, str(path))
    return path


def perturbed(model):
    """A copy of `model` whose last weighted layer is scaled by 1.5."""
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    layer = [layer for layer in copy.layers if layer.weights][-1]
    layer.set_weights([1.5 * w for w in layer.get_weights()])
    return copy


@pytest.mark.parametrize(
    "artifact, converter, message",
    [
        ("saved_model", "stage_saved_model", "the SavedModel differs from Keras"),
        ("tflite", "convert_to_tflite", "float32 TFLite model differs .* nothing was published"),
        ("onnx", "convert_to_onnx", "ONNX model differs .* nothing was published"),
    ],
)
def test_an_artifact_that_differs_from_keras_is_not_published(
    tmp_path, checkpoint, monkeypatch, artifact, converter, message
):
    real = getattr(flow, converter)
    monkeypatch.setattr(flow, converter, lambda model, *a, **k: real(perturbed(model), *a, **k))
    with pytest.raises(ValueError, match=message):
        export_checkpoint(
            str(checkpoint), str(tmp_path), name="tiny", onnx=True, log=lambda _: None
        )
    assert sorted(os.listdir(tmp_path / "tiny")) == [".lock"], os.listdir(tmp_path / "tiny")


def test_the_same_export_unperturbed_publishes(tmp_path, checkpoint):
    _, report = export_checkpoint(
        str(checkpoint), str(tmp_path), name="tiny", onnx=True, log=lambda _: None
    )
    assert max(report["saved_model"].values()) <= EXPORT_TOLERANCE
    assert max(report["onnx"].values()) <= EXPORT_TOLERANCE
    assert sorted(os.listdir(tmp_path / "tiny")) == [
        ".lock",
        "1",
        "tiny_v1.labels.txt",
        "tiny_v1.onnx",
        "tiny_v1.tflite",
    ]
