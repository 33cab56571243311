import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_segattn.export import convert_to_tflite, export_saved_model, run_tflite, verify_export
from keras_segattn.models import create_model
from keras_segattn.tasks.semantic import semantic_serving_fn


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


def test_every_weight_is_stored_once(model, exported):
    # Keras 3.15's ExportArchive stored each weight twice (keras-team/keras#23553).
    prefix = os.path.join(exported[1], "variables", "variables")
    stored = [shape for name, shape in tf.train.list_variables(prefix) if shape]
    weights = sum(int(np.prod(v.shape)) for v in model.variables)  # seed states included
    assert sum(int(np.prod(shape)) for shape in stored) == weights


def test_existing_version_is_never_overwritten(model, exported):
    base, _ = exported
    with pytest.raises(ValueError, match="already exists"):
        export_saved_model(model, base, name="fcn8s_test", version=3)
    with pytest.raises(ValueError, match="version"):
        export_saved_model(model, base, name="fcn8s_test", version=0)


# Measured on these weights and images: float16 5.3e-4, dynamic 0.013, int8
# 0.027 on probabilities, every class map equal; the bounds leave about 3x.
@pytest.mark.parametrize(
    "quantization, tolerance, class_maps",
    [
        ("float32", 1e-5, 0.0),
        ("float16", 2e-3, 0.0),
        ("dynamic", 0.04, 0.01),
        ("int8", 0.08, 0.01),
    ],
)
def test_tflite_quantizations_are_builtin_and_close(
    model, exported, quantization, tolerance, class_maps, rng, tmp_path
):
    images = rng.integers(0, 256, size=(2, 40, 56, 3)).astype("uint8")
    calibration = [rng.integers(0, 256, size=(1, 40, 56, 3)).astype("uint8") for _ in range(8)]
    path = str(tmp_path / f"model_{quantization}.tflite")
    convert_to_tflite(model, path, quantization, representative_images=calibration, task="semantic")
    reference = {k: v.numpy() for k, v in semantic_serving_fn(model)(images).items()}
    report = verify_export(reference, images, tflite_model=path)["tflite"]
    assert report["probabilities"] <= tolerance, report
    assert report["class_map"] <= class_maps, report  # the fraction of pixels that differ
    # The interpreter resizes the dynamic input: another size, same file.
    other = run_tflite(path, {"images": images[:, :33, :47]})
    assert other["class_map"].shape == (2, 33, 47)


def test_int8_needs_representative_images(model):
    with pytest.raises(ValueError, match="representative_images"):
        convert_to_tflite(model, quantization="int8", task="semantic")
    with pytest.raises(ValueError, match="quantization"):
        convert_to_tflite(model, quantization="int4", task="semantic")


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


def test_fixed_size_tflite_has_a_static_shape_and_matches_keras(model, rng):
    from ai_edge_litert.interpreter import Interpreter

    flatbuffer = convert_to_tflite(model, task="semantic", input_size=(40, 56))
    runner = Interpreter(model_content=flatbuffer).get_signature_runner()
    assert list(runner.get_input_details()["images"]["shape"]) == [1, 40, 56, 3]
    images = rng.integers(0, 256, size=(2, 40, 56, 3)).astype("uint8")
    reference = {k: v.numpy() for k, v in semantic_serving_fn(model)(images).items()}
    report = verify_export(reference, images, tflite_model=flatbuffer)["tflite"]
    assert report["probabilities"] < 1e-5 and report["class_map"] == 0
    with pytest.raises(ValueError, match="input_size"):
        convert_to_tflite(model, task="semantic", input_size=(40, 0))


def test_a_saved_model_converts_from_its_portable_signature_only(tmp_path, rng):
    from ai_edge_litert.interpreter import Interpreter

    from keras_segattn.models.registry import get_model_spec

    deconvnet = create_model("deconvnet", **get_model_spec("deconvnet").tiny)
    path = export_saved_model(deconvnet, tmp_path, name="deconvnet")
    graph = tf.saved_model.load(path).signatures["serving_default"].graph.as_graph_def()
    ops = {node.op for function in graph.library.function for node in function.node_def}
    assert "MaxPoolWithArgmax" in ops  # the SavedModel calls the fused kernel
    with pytest.raises(ValueError, match="pass signature_key='portable'"):
        convert_to_tflite(path)
    with pytest.raises(ValueError, match="need the Keras model"):
        convert_to_tflite(path, input_size=(32, 32))
    # Its portable signature converts, with TF's converter as with ours.
    portable = tf.saved_model.load(path).signatures["portable"].graph.as_graph_def()
    assert "MaxPoolWithArgmax" not in {
        node.op for function in portable.library.function for node in function.node_def
    }
    images = rng.integers(0, 256, (1, 32, 32, 3)).astype("uint8")
    expected = {
        k: v.numpy()
        for k, v in tf.saved_model.load(path)
        .signatures["serving_default"](images=tf.constant(images))
        .items()
    }
    converter = tf.lite.TFLiteConverter.from_saved_model(path, signature_keys=["portable"])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    for flatbuffer in (converter.convert(), convert_to_tflite(path, signature_key="portable")):
        report = verify_export(expected, images, tflite_model=flatbuffer)["tflite"]
        assert report["probabilities"] < 1e-5 and report["class_map"] == 0, report
    # Its Keras model converts; the decoder's stride-1 transposed
    # convolutions are plain convolutions there, which XNNPACK takes.
    interpreter = Interpreter(model_content=convert_to_tflite(deconvnet, task="semantic"))
    ops = {op["op_name"] for op in interpreter._get_ops_details()}
    assert "TRANSPOSE_CONV" not in ops and "CONV_2D" in ops


@pytest.mark.parametrize(
    "name, task, size",
    [
        ("fcn8s", "semantic", (33, 40)),
        ("st_cnn", "classification", (28, 28)),
        ("mnc", "instance", (40, 48)),
    ],
)
def test_a_mixed_precision_model_exports_computing_in_float32(tmp_path, rng, name, task, size):
    from keras_segattn.core.precision import dtype_policy, float32_model
    from keras_segattn.models import get_model_spec
    from keras_segattn.tasks import get_task

    with dtype_policy("mixed_bfloat16"):  # as trained on a TPU
        mixed = create_model(name, **get_model_spec(name).tiny)
    copy = float32_model(mixed)
    assert copy is not mixed and copy.name == mixed.name  # the registry still knows it
    assert float32_model(copy) is copy  # a float32 model is returned as it is
    assert not [layer.name for layer in copy.layers if layer.dtype_policy.name != "float32"]
    for a, b in zip(copy.weights, mixed.weights):  # auto-named sublayers renumber: by value
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    channels = 1 if task == "classification" else 3
    images = rng.integers(0, 256, size=(2, *size, channels)).astype("uint8")
    reference = {k: v.numpy() for k, v in get_task(task).serving_function(copy)(images).items()}
    for value in reference.values():
        assert value.dtype not in (np.float16, tf.bfloat16.as_numpy_dtype)
    path = export_saved_model(mixed, tmp_path, task=task)
    flatbuffer = convert_to_tflite(mixed, task=task)  # bfloat16 ops would need Flex
    report = verify_export(reference, images, saved_model_dir=path, tflite_model=flatbuffer)
    for artifact in report.values():
        assert max(artifact.values()) < 1e-3, report


def test_int8_keeps_the_spatial_transformer_sampler_in_float(rng):
    # Quantised sampling coordinates move whole pixels (a trained ST-CNN went
    # from 1.3% to 45% error on RTS MNIST): the sampler stays float, the
    # rest of the network int8.
    from ai_edge_litert.interpreter import Interpreter

    from keras_segattn.core.precision import FLOAT_SCOPE
    from keras_segattn.testing import nonzero_weights

    model = create_model("st_cnn", input_size=42)
    model.set_weights(nonzero_weights(model))
    calibration = [rng.integers(0, 256, (1, 42, 42, 1)).astype("uint8") for _ in range(8)]
    flatbuffer = convert_to_tflite(
        model, quantization="int8", task="classification", representative_images=calibration
    )
    tensors = Interpreter(model_content=flatbuffer).get_tensor_details()
    scoped = [t for t in tensors if f"/{FLOAT_SCOPE}/" in t["name"]]
    assert scoped and not any(t["dtype"] == np.int8 for t in scoped), scoped
    assert any(t["dtype"] == np.int8 for t in tensors if t not in scoped)  # the rest is int8
    images = rng.integers(0, 256, (2, 42, 42, 1)).astype("uint8")
    outputs = run_tflite(flatbuffer, {"images": images})
    assert np.isfinite(outputs["probabilities"]).all()
