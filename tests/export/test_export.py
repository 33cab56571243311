import os

import keras
import pytest
import tensorflow as tf

from keras_segattn.export import convert_to_tflite, export_saved_model, run_tflite, verify_export
from keras_segattn.export.saved_model import semantic_serving_fn
from keras_segattn.models import create_model


@pytest.fixture(scope="module")
def model():
    # Seeded: the quantisation tolerances below are for these weights, not
    # for whatever the global random state holds after other tests.
    keras.utils.set_random_seed(0)
    return create_model("fcn8s", num_classes=3, width=0.0625, score_initializer="glorot_uniform")


@pytest.fixture(scope="module")
def exported(model, tmp_path_factory):
    base = tmp_path_factory.mktemp("serving")
    return base, export_saved_model(model, base, name="fcn8s_test", version=3)


def test_tf_serving_layout_and_signature(exported):
    base, path = exported
    assert path == os.path.join(str(base), "fcn8s_test", "3")
    assert os.path.isfile(os.path.join(path, "saved_model.pb"))
    signature = tf.saved_model.load(path).signatures["serving_default"]
    (spec,) = signature.structured_input_signature[1].values()
    assert spec.dtype == tf.uint8 and spec.shape.as_list() == [None, None, None, 3]
    outputs = signature.structured_outputs
    assert outputs["class_map"].dtype == tf.int32
    assert outputs["probabilities"].dtype == tf.float32


@pytest.mark.parametrize("size", [(32, 32), (45, 70)])
def test_saved_model_matches_keras_at_any_size(model, exported, size, rng):
    images = rng.integers(0, 256, size=(2, *size, 3)).astype("uint8")
    reference = {k: v.numpy() for k, v in semantic_serving_fn(model)(images).items()}
    report = verify_export(reference, images, saved_model_dir=exported[1])
    assert report["saved_model"]["probabilities"] < 1e-5
    assert report["saved_model"]["class_map"] == 0
    assert reference["class_map"].shape == (2, *size)


def test_existing_version_is_never_overwritten(model, exported):
    base, _ = exported
    with pytest.raises(ValueError, match="already exists"):
        export_saved_model(model, base, name="fcn8s_test", version=3)
    with pytest.raises(ValueError, match="version"):
        export_saved_model(model, base, name="fcn8s_test", version=0)


@pytest.mark.parametrize("quantization, tolerance", [
    ("float32", 1e-5), ("float16", 5e-3), ("dynamic", 0.2), ("int8", 0.4),
])  # fmt: skip
def test_tflite_quantizations_are_builtin_and_close(
    model, exported, quantization, tolerance, rng, tmp_path
):
    images = rng.integers(0, 256, size=(2, 40, 56, 3)).astype("uint8")
    calibration = [rng.integers(0, 256, size=(1, 40, 56, 3)).astype("uint8") for _ in range(8)]
    path = str(tmp_path / f"model_{quantization}.tflite")
    convert_to_tflite(exported[1], path, quantization, representative_images=calibration)
    reference = {k: v.numpy() for k, v in semantic_serving_fn(model)(images).items()}
    report = verify_export(reference, images, tflite_model=path)["tflite"]
    assert report["probabilities"] <= tolerance, report
    if quantization == "float32":
        assert report["class_map"] == 0
    # The interpreter resizes the dynamic input: another size, same file.
    other = run_tflite(path, {"images": images[:, :33, :47]})
    assert other["class_map"].shape == (2, 33, 47)


def test_int8_needs_representative_images(exported):
    with pytest.raises(ValueError, match="representative_images"):
        convert_to_tflite(exported[1], quantization="int8")
    with pytest.raises(ValueError, match="quantization"):
        convert_to_tflite(exported[1], quantization="int4")


@pytest.mark.parametrize(
    "shape, message",
    [
        ((0, 64, 64, 3), "non-empty batch"),
        ((1, 0, 0, 3), "at least 32x32 pixels; got shape"),
        ((1, 16, 40, 3), "at least 32x32 pixels; got shape"),
        ((1, 64, 64, 4), "batch, height, width, 3.*RGB.*got shape"),
        ((64, 64, 3), "RGB images of at least 32x32 pixels; got shape"),
    ],
)
def test_the_signature_names_what_is_wrong_with_its_input(exported, shape, message):
    signature = tf.saved_model.load(exported[1]).signatures["serving_default"]
    with pytest.raises((tf.errors.InvalidArgumentError, ValueError, TypeError), match=message):
        signature(images=tf.zeros(shape, tf.uint8))
