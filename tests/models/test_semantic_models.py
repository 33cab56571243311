import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_segattn.export import convert_to_tflite, export_saved_model, verify_export
from keras_segattn.losses import SegmentationCrossEntropy
from keras_segattn.models import create_model, get_model_spec, list_models
from keras_segattn.models.backbones import transplant_vgg16
from keras_segattn.tasks.semantic import semantic_serving_fn
from keras_segattn.testing import run_model_test

SEMANTIC = list_models(task="semantic")


def tiny(name, **overrides):
    return create_model(name, **{**get_model_spec(name).tiny, **overrides})


def test_registry_lists_the_foundation_models():
    assert {"fcn32s", "fcn16s", "fcn8s", "deconvnet"} <= set(SEMANTIC)
    with pytest.raises(ValueError, match="Unknown model name='fcn4s'.*fcn8s"):
        create_model("fcn4s")


@pytest.mark.parametrize("name", SEMANTIC)
def test_model_passes_shared_checks(name, rng):
    model = tiny(name)
    images = rng.integers(0, 256, size=(2, 35, 50, 3)).astype("uint8")
    labels = rng.integers(0, 3, size=(2, 35, 50)).astype("int32")
    run_model_test(
        model, images, labels, loss=SegmentationCrossEntropy(), atol=1e-4, tflite_atol=1e-3
    )


@pytest.mark.parametrize("name", SEMANTIC)
@pytest.mark.parametrize("size", [(32, 32), (33, 47), (64, 96), (71, 40)])
def test_output_has_exactly_the_input_size(name, size, rng):
    model = tiny(name)
    images = rng.integers(0, 256, size=(1, *size, 3)).astype("uint8")
    assert model(images).shape == (1, *size, 3)


@pytest.mark.parametrize("name", SEMANTIC)
def test_bad_inputs_raise_clear_errors(name):
    model = tiny(name)
    with pytest.raises(ValueError, match="smaller than the minimum 32"):
        model(np.zeros((1, 31, 64, 3), "uint8"))
    # Keras' own input check names the input and the expected shape.
    with pytest.raises(
        ValueError, match=r"(?i)'images'.*expected shape=? ?\(None, None, None, 3\)"
    ):
        model(np.zeros((1, 64, 64, 4), "uint8"))
    with pytest.raises(
        ValueError, match=r"(?i)'images'.*expected shape=? ?\(None, None, None, 3\)"
    ):
        model(np.zeros((64, 64, 3), "uint8"))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"num_classes": 1}, "num_classes"),
        ({"width": 0}, "width"),
        ({"weights": "/no/such/file.weights.h5"}, "weights"),
        ({"weights": "imagenet", "width": 0.5}, "width=1.0"),
    ],
)
def test_bad_builder_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        create_model("fcn8s", **{"width": 0.0625, **kwargs})


def test_fcn_strides_fuse_the_right_skips():
    layers32 = {layer.name for layer in tiny("fcn32s").layers}
    layers8 = {layer.name for layer in tiny("fcn8s").layers}
    assert "score_pool4" not in layers32 and "upscore32" in layers32
    assert {"score_pool4", "score_pool3", "fuse_pool3", "upscore8"} <= layers8


def test_fcn_upsampling_starts_bilinear_and_frozen():
    model = tiny("fcn8s", learnable_upsampling=True)
    assert model.get_layer("upscore_to_pool4").trainable
    assert not model.get_layer("upscore8").trainable
    kernel = model.get_layer("upscore8").get_weights()[0]
    assert kernel.shape == (16, 16, 3, 3)
    assert kernel[:, :, 0, 1].sum() == 0 and kernel[:, :, 0, 0].sum() > 0


def test_deconvnet_unpools_with_every_encoder_switch():
    model = tiny("deconvnet")
    unpool_layers = [layer for layer in model.layers if layer.name.startswith("unpool")]
    assert len(unpool_layers) == 5
    assert sum(isinstance(layer, keras.layers.BatchNormalization) for layer in model.layers) == 29


def test_weights_path_round_trip(tmp_path, rng):
    model = tiny("fcn16s", score_initializer="glorot_uniform")
    path = str(tmp_path / "fcn.weights.h5")
    model.save_weights(path)
    images = rng.integers(0, 256, size=(1, 40, 40, 3)).astype("uint8")
    restored = tiny("fcn16s", weights=path)
    np.testing.assert_allclose(restored(images), model(images), atol=1e-6)


def test_vgg16_transplant_reproduces_keras_applications_features(rng):
    # The ImageNet route without a download: a randomly initialised
    # keras.applications.VGG16 stands in for the pretrained one.
    source = keras.applications.VGG16(weights=None, include_top=True)
    model = create_model("fcn32s", num_classes=3)
    from keras_segattn.models.backbones.vgg import transplant_vgg16 as transplant

    assert transplant is transplant_vgg16
    loaded = transplant_vgg16(source, model)
    assert "fc6" in loaded and "fc7" in loaded and len(loaded) == 15
    images = rng.integers(0, 256, size=(1, 224, 224, 3)).astype("float32")
    expected = keras.Model(source.input, source.get_layer("fc2").output)(
        keras.applications.vgg16.preprocess_input(images.copy())
    )
    ours = keras.Model(model.input, model.get_layer("fc7").output)(images)
    # fc7 on a 7x7 pool5 with "same" padding: the centre location sees the
    # whole 7x7 window, exactly the dense layer of the classifier.
    np.testing.assert_allclose(ours[0, 3, 3], expected[0], rtol=1e-3, atol=1e-3)

    # Batch-norm variants have no convolution bias: the kernels still move.
    deconv_style = create_model("fcn32s", num_classes=3, batch_norm=True)
    assert len(transplant_vgg16(source, deconv_style, include_fc=False)) == 13
    np.testing.assert_array_equal(
        deconv_style.get_layer("block5_conv3").get_weights()[0],
        source.get_layer("block5_conv3").get_weights()[0],
    )


@pytest.mark.parametrize("name", SEMANTIC)
def test_uint8_serving_signature_and_tflite_match_keras(name, rng, tmp_path):
    model = tiny(name)
    path = export_saved_model(model, tmp_path, name=name)
    images = rng.integers(0, 256, size=(2, 45, 38, 3)).astype("uint8")
    reference = {k: v.numpy() for k, v in semantic_serving_fn(model)(images).items()}
    report = verify_export(
        reference,
        images,
        saved_model_dir=path,
        tflite_model=convert_to_tflite(model, task="semantic"),
    )
    assert (
        report["saved_model"]["probabilities"] < 1e-5 and report["tflite"]["probabilities"] < 1e-4
    )
    assert report["saved_model"]["class_map"] == 0 and report["tflite"]["class_map"] < 0.01


TWO_REPLICAS = """
import keras, numpy as np, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from keras_segattn.evaluation import evaluate_segmentation
from keras_segattn.models import create_model
from keras_segattn.recipes.semantic import compile_segmenter
keras.utils.set_random_seed(0)
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
assert strategy.num_replicas_in_sync == 2
with strategy.scope():
    model = create_model("NAME", num_classes=3, width=0.0625)
    norms = [l for l in model.layers if isinstance(l, keras.layers.BatchNormalization)]
    for layer in norms:
        # Moving statistics = the last batch's, so that the untrained
        # network's inference scores are not ties (with 0.99 they start
        # from mean 0 and variance 1 and shrink to nothing through 29 layers).
        layer.momentum = 0.0
    compile_segmenter(model, 3, ignore_class=255)
rng = np.random.default_rng(0)
images = rng.integers(0, 256, (6, 32, 40, 3)).astype("uint8")
labels = rng.integers(0, 3, (6, 32, 40)).astype("int32")
labels[:, :4] = 255
model.fit(images, labels, batch_size=4, epochs=1, verbose=0)
for layer in norms:
    for variable in (layer.moving_mean, layer.moving_variance):
        first, second = strategy.experimental_local_results(variable.value)
        np.testing.assert_array_equal(first, second, err_msg=variable.path)
replicated = model.predict(images, batch_size=4, verbose=0)
scale = np.abs(replicated).max()
np.testing.assert_allclose(replicated, model(images), rtol=1e-4, atol=1e-4 * scale)
metrics = model.evaluate(images, labels, batch_size=4, verbose=0, return_dict=True)
data = tf.data.Dataset.from_tensor_slices({"images": images, "segmentation_masks": labels})
direct = evaluate_segmentation(model, data, 3, 255)
assert abs(metrics["mean_iou"] - direct["mean_iou"]) < TOL, (metrics, direct)
assert abs(metrics["pixel_accuracy"] - direct["global_accuracy"]) < TOL
print("ok", metrics)
"""


# Batch composition (4 images vs 2 per replica) moves the last float bits of
# DeconvNet's 29 convolutions, so a pixel or two whose top scores are nearly tied
# may flip; FCN-8s' scores are decisive and must agree exactly. Batch norm
# statistics must agree across replicas (see `models.common.batch_normalization`).
@pytest.mark.parametrize("name, tolerance", [("fcn8s", 1e-5), ("deconvnet", 2e-3)])
def test_fit_and_metrics_over_two_replicas(name, tolerance):
    # Logical devices must be set before TensorFlow starts: a fresh process.
    result = subprocess.run(
        [sys.executable, "-c", TWO_REPLICAS.replace("NAME", name).replace("TOL", str(tolerance))],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0 and "ok" in result.stdout, (result.stdout, result.stderr[-3000:])


def test_builds_and_fits_under_a_distribution_strategy(rng):
    # One fit step under a (one-replica) MirroredStrategy updates the weights
    # exactly as the same step without a strategy.
    images = rng.integers(0, 256, size=(3, 32, 40, 3)).astype("uint8")
    labels = rng.integers(0, 3, size=(3, 32, 40)).astype("int32")
    labels[0, :5] = 255
    weights, losses = [], []
    for strategy in (tf.distribute.MirroredStrategy(["/cpu:0"]), tf.distribute.get_strategy()):
        with strategy.scope():
            model = tiny("fcn8s", dropout=0.0)  # no random draws: the same step twice
            model.compile("adam", SegmentationCrossEntropy(ignore_class=255))
        if weights:
            model.set_weights(weights[0][0])
        start = model.get_weights()
        history = model.fit(images, labels, batch_size=2, epochs=1, shuffle=False, verbose=0)
        weights.append((start, model.get_weights()))
        losses.append(history.history["loss"][0])
    assert np.isfinite(losses[0]) and np.isclose(losses[0], losses[1], rtol=1e-5), losses
    (start, mirrored), (_, plain) = weights
    assert any(not np.array_equal(a, b) for a, b in zip(start, mirrored))  # it trained
    for a, b in zip(mirrored, plain):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_the_registry_decides_a_models_task(tmp_path):
    from keras_segattn.checkpoints import load_model
    from keras_segattn.models import list_models
    from keras_segattn.tasks import Task, get_task, task_of

    for name in list_models():
        assert isinstance(get_task(get_model_spec(name).task), Task)
    model = create_model("patch_cnn", **get_model_spec("patch_cnn").tiny)
    assert task_of(model) is get_task("patch")
    model.save(tmp_path / "m.keras")
    assert task_of(load_model(tmp_path / "m.keras")).name == "patch"  # the name survives saving
    model.name = "renamed"
    with pytest.raises(ValueError, match="'renamed' is not a registered model"):
        task_of(model)


def test_builder_numbers_are_checked_by_value_not_by_type():
    model = create_model("fcn8s", num_classes=np.int64(3), width=np.float32(0.0625))
    assert model.output.shape[-1] == 3
    with pytest.raises(ValueError, match="width must be a float in \\(0, 4\\]; got width=True"):
        create_model("fcn8s", num_classes=3, width=True)
    with pytest.raises(ValueError, match="class_weights must be finite numbers >= 0"):
        SegmentationCrossEntropy(class_weights=[1.0, float("nan")])
