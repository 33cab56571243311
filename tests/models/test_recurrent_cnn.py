import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_segattn.losses import SegmentationCrossEntropy
from keras_segattn.models.registry import create_model, get_model_spec, list_models
from keras_segattn.models.semantic.recurrent import recurrent_cnn
from keras_segattn.testing import run_model_test


def tiny(**overrides):
    return recurrent_cnn(**{**get_model_spec("recurrent_cnn").tiny, **overrides})


def test_registered_as_semantic():
    assert "recurrent_cnn" in list_models(task="semantic")
    model = create_model("recurrent_cnn", num_classes=3, width=0.125)
    assert model.output_shape == (None, None, None, 3)
    assert model.instances == 3


@pytest.mark.parametrize("instances", [1, 3])
def test_model_passes_shared_checks(instances, rng):
    model = tiny(instances=instances)
    images = rng.integers(0, 256, size=(2, 37, 42, 3)).astype("float32")
    labels = rng.integers(0, 3, size=(2, 37, 42)).astype("int32")
    run_model_test(
        model, images, labels, loss=SegmentationCrossEntropy(), atol=1e-4, tflite_atol=1e-3
    )


def test_one_network_shared_by_every_instance():
    model = tiny(instances=3)
    dense_f = model.get_layer("dense_f")
    assert len(dense_f._inbound_nodes) == 3
    # Only f's weights: three convolutions' kernels and biases.
    assert len(model.trainable_weights) == len(dense_f.trunk.trainable_weights) == 6
    # f reads the image and the label maps of the previous instance.
    assert dense_f.trunk.inputs[0].shape[-1] == 3 + 3


def test_training_mode_returns_every_instance(rng):
    model = tiny(instances=3)
    images = rng.integers(0, 256, size=(2, 32, 40, 3)).astype("float32")
    outputs = model(images, training=True)
    assert [tuple(o.shape) for o in outputs] == [(2, 32, 40, 3)] * 3
    np.testing.assert_allclose(outputs[-1], model(images), atol=1e-5)
    np.testing.assert_allclose(outputs[-1], model.instance_outputs(images)[-1], atol=1e-5)
    # Instances differ: each sees another scale and its predecessor's labels.
    assert np.abs(outputs[0] - outputs[1]).max() > 1e-4


def test_loss_is_taken_on_every_instance(rng):
    model = tiny(instances=2)
    loss = SegmentationCrossEntropy()
    model.compile("sgd", loss)
    images = rng.integers(0, 256, size=(2, 32, 32, 3)).astype("float32")
    labels = rng.integers(0, 3, size=(2, 32, 32)).astype("int32")
    outputs = model(images, training=True)
    total = model.compute_loss(images, labels, outputs)
    expected = sum(float(loss(labels, o)) for o in outputs)
    np.testing.assert_allclose(float(total), expected, rtol=1e-5)
    # evaluate scores the last instance only.
    last = model.compute_loss(images, labels, model(images))
    np.testing.assert_allclose(float(last), float(loss(labels, outputs[-1])), rtol=1e-5)


def test_single_instance_labels_every_pixel_by_its_patch(rng):
    """Shifted pooling makes the output dense: at every pixel, f on the
    zero-padded patch around it (the first instance's label maps are 0)."""
    model = tiny(instances=1)
    f = model.get_layer("dense_f").trunk
    field = model.receptive_field
    half = field // 2
    images = rng.integers(0, 256, size=(1, 33, 35, 3)).astype("float32")
    dense = keras.ops.convert_to_numpy(model(images))
    normalised = images / 127.5 - 1.0
    padded = np.pad(normalised, ((0, 0), (half, half + 1), (half, half + 1), (0, 0)))
    padded = np.concatenate([padded, np.zeros(padded.shape[:3] + (3,), "float32")], -1)
    for y, x in [(0, 0), (16, 17), (32, 34), (5, 30)]:
        patch = padded[:, y : y + field, x : x + field]
        expected = keras.ops.convert_to_numpy(f(patch))[0, 0, 0]
        np.testing.assert_allclose(dense[0, y, x], expected, atol=1e-4)


def test_given_label_maps_replace_the_zeros(rng):
    model = tiny(instances=2)
    images = rng.integers(0, 256, size=(2, 32, 36, 3)).astype("float32")
    default = model.instance_outputs(images)
    zeros = model.instance_outputs(images, label_maps=np.zeros((2, 32, 36, 3), "float32"))
    for a, b in zip(default, zeros):
        np.testing.assert_allclose(a, b, atol=1e-5)
    maps = tf.nn.softmax(rng.normal(size=(2, 32, 36, 3)).astype("float32") * 5)
    given = model.instance_outputs(images, label_maps=maps)
    assert np.abs(given[0] - default[0]).max() > 1e-4


@pytest.mark.parametrize(
    "shape, message",
    [
        ((2, 32, 36, 4), "label_maps: expected 3 channels"),
        ((2, 16, 18, 3), "label_maps: expected one map per image"),
        ((1, 32, 36, 3), "label_maps: expected one map per image"),
        ((32, 36, 3), "label_maps: expected a batch of images of rank 4"),
    ],
)
def test_mismatched_label_maps_are_rejected(shape, message):
    model = tiny(instances=2)
    images = np.zeros((2, 32, 36, 3), "float32")
    with pytest.raises(ValueError, match=message):
        model.instance_outputs(images, label_maps=np.zeros(shape, "float32"))


@pytest.mark.parametrize("instances", [0, -1, 1.5, "2", True])
def test_non_positive_instances_are_rejected(instances):
    with pytest.raises(ValueError, match="instances must be a positive int"):
        tiny(instances=instances)


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="kernel_size must be an odd"):
        tiny(kernel_size=4)
    with pytest.raises(ValueError, match="filters must be"):
        tiny(filters=())
    with pytest.raises(ValueError, match="weights='imagenet' is not available"):
        tiny(weights="imagenet")


def test_too_small_images_are_rejected():
    model = tiny(instances=2)
    with pytest.raises(ValueError, match="smaller than the minimum 32"):
        model(np.zeros((1, 24, 40, 3), "float32"))


def test_weights_file_round_trip(tmp_path, rng):
    model = tiny(instances=2)
    path = str(tmp_path / "rcnn.weights.h5")
    model.save_weights(path)
    images = rng.integers(0, 256, size=(1, 32, 32, 3)).astype("float32")
    reloaded = tiny(instances=2, weights=path)
    np.testing.assert_allclose(reloaded(images), model(images), atol=1e-6)
