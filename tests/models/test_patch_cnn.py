import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_segattn.models.semantic  # noqa: F401  (registers patch_cnn)
from keras_segattn.export.tflite import convert_to_tflite, run_tflite
from keras_segattn.models.registry import create_model, get_model_spec, list_models
from keras_segattn.models.semantic import (
    brute_force_predict,
    dense_predict,
    patch_cnn,
    patch_cnn_trunk,
    trunk_geometry,
)
from keras_segattn.testing import run_model_test

METHODS = ["shift_and_stitch", "shifted_pooling"]


def tiny(**overrides):
    return create_model("patch_cnn", **{**get_model_spec("patch_cnn").tiny, **overrides})


def with_random_biases(model, seed=0):
    # Keras zero-initialises biases; random ones make any misalignment show.
    rng = np.random.default_rng(seed)
    for layer in model.get_layer("trunk").layers:
        if isinstance(layer, keras.layers.Conv2D):
            kernel, bias = layer.get_weights()
            layer.set_weights([kernel, rng.normal(0, 0.5, bias.shape).astype("float32")])
    return model


def images_of(rng, *shape):
    return rng.integers(0, 256, size=(*shape, 3)).astype("float32")


def test_registered_as_the_brute_force_patch_baseline():
    assert "patch_cnn" in list_models(task="patch")
    spec = get_model_spec("patch_cnn")
    assert "Farabet" in spec.paper and "rute" in spec.paper


def test_default_network_labels_33x33_patches_with_stride_4(rng):
    model = patch_cnn(num_classes=5)
    trunk = model.get_layer("trunk")
    assert trunk_geometry(trunk) == (32, 4)
    assert trunk.get_layer("conv3").kernel_size == (5, 5)
    assert trunk.get_layer("classifier").kernel_size == (1, 1)
    assert model(images_of(rng, 2, 33, 33)).shape == (2, 5)
    # A whole image: one output every 4 pixels.
    assert trunk(images_of(rng, 1, 33 + 4 * 3, 33 + 4 * 5)).shape == (1, 4, 6, 5)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("padding", ["reflect", "zero"])
def test_dense_predict_equals_brute_force_at_every_pixel(method, padding, rng):
    model = with_random_biases(tiny())
    images = images_of(rng, 2, 13, 17)
    expected = brute_force_predict(model, images, padding=padding)
    dense = dense_predict(model, images, method=method, padding=padding)
    assert dense.shape == (2, 13, 17, 3)
    np.testing.assert_allclose(dense, expected, atol=1e-5, rtol=0)
    # Not trivially equal: the map varies, and a one-pixel shift breaks it.
    assert np.abs(np.diff(expected, axis=1)).max() > 1e-2
    assert np.abs(np.asarray(dense)[:, 1:] - expected[:, :-1]).max() > 1e-2


@pytest.mark.parametrize("size", [(1, 1), (4, 9), (5, 3), (9, 22)])
def test_odd_and_tiny_sizes_with_zero_padding(size, rng):
    model = with_random_biases(tiny(), seed=1)
    images = rng.integers(0, 256, size=(3, *size, 3)).astype("uint8")
    expected = brute_force_predict(model, images, padding="zero")
    for method in METHODS:
        dense = dense_predict(model, images, method=method, padding="zero")
        np.testing.assert_allclose(dense, expected, atol=1e-5, rtol=0, err_msg=method)


def test_default_patch_size_through_the_trunk_alone(rng):
    # A bare trunk is labelled at half its receptive field: patch_size // 2.
    model = with_random_biases(patch_cnn(num_classes=4, width=0.125), seed=2)
    images = images_of(rng, 2, 13, 17)
    expected = brute_force_predict(model, images, padding="zero")
    for method in METHODS:
        dense = dense_predict(model.get_layer("trunk"), images, method=method, padding="zero")
        np.testing.assert_allclose(dense, expected, atol=1e-5, rtol=0, err_msg=method)


def test_stride_is_derived_from_the_poolings(rng):
    # Three poolings: stride 8, 64 shifted copies or three levels of offsets.
    model = with_random_biases(tiny(filters=(4, 4, 4, 4), patch_size=37, width=1.0), seed=3)
    assert trunk_geometry(model.get_layer("trunk")) == (36, 8)
    images = images_of(rng, 2, 11, 19)
    expected = brute_force_predict(model, images, padding="zero")
    for method in METHODS:
        dense = dense_predict(model, images, method=method, padding="zero")
        np.testing.assert_allclose(dense, expected, atol=1e-5, rtol=0, err_msg=method)


@pytest.mark.parametrize("method", METHODS)
def test_dense_predict_exports_to_builtin_only_tflite(method, rng, tmp_path):
    model = with_random_biases(tiny(), seed=4)
    images = images_of(rng, 1, 13, 17)
    spec = tf.TensorSpec(images.shape, tf.float32, name="images")
    predict = lambda x: dense_predict(model, x, method=method)
    # ExportArchive tracks the Keras variables; a bare tf.Module around the
    # model converted to garbage weights here.
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serve", predict, input_signature=[spec])
    archive.write_out(str(tmp_path / "dense"), verbose=False)
    flatbuffer = convert_to_tflite(tmp_path / "dense", signature_key="serve")
    (output,) = run_tflite(flatbuffer, images).values()
    np.testing.assert_allclose(output, predict(images), atol=1e-5, rtol=0)


def test_patch_cnn_passes_shared_checks(rng):
    model = with_random_biases(tiny())
    patches = rng.integers(0, 256, size=(4, 17, 17, 3)).astype("float32")
    labels = rng.integers(0, 3, size=(4,)).astype("int32")
    run_model_test(
        model, patches, labels, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"patch_size": 18}, "patch_size"),
        ({"patch_size": 13}, "patch_size"),
        ({"patch_size": 19}, "patch_size"),
        ({"num_classes": 1}, "num_classes"),
        ({"width": 0}, "width"),
        ({"filters": ()}, "filters"),
        ({"kernel_size": 4}, "kernel_size"),
    ],
)
def test_bad_builder_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        tiny(**kwargs)


def test_bad_inputs_raise_clear_errors(rng):
    model = tiny()
    with pytest.raises(ValueError, match=r"images: image height 8 is too small for .*reflect"):
        dense_predict(model, images_of(rng, 1, 8, 20))
    with pytest.raises(ValueError, match=r"images: image width 5 is too small"):
        brute_force_predict(model, images_of(rng, 1, 20, 5))
    with pytest.raises(ValueError, match=r"images: expected .* rank 4"):
        dense_predict(model, images_of(rng, 20, 20))
    with pytest.raises(ValueError, match=r"images: expected 3 channels"):
        dense_predict(model, np.zeros((1, 20, 20, 4), "float32"))
    with pytest.raises(ValueError, match="method"):
        dense_predict(model, images_of(rng, 1, 20, 20), method="atrous")
    with pytest.raises(ValueError, match="padding"):
        dense_predict(model, images_of(rng, 1, 20, 20), padding="edge")
    with pytest.raises(ValueError, match="patch_model"):
        brute_force_predict(model.get_layer("trunk"), images_of(rng, 1, 20, 20))
    with pytest.raises(ValueError, match="smaller than the minimum 16"):
        model.get_layer("trunk")(images_of(rng, 1, 15, 40))


def test_trunks_that_are_not_shift_equivariant_are_rejected():
    inputs = keras.Input((None, None, 3))
    same = keras.Model(inputs, keras.layers.Conv2D(2, 3, padding="same", name="c")(inputs))
    with pytest.raises(ValueError, match="model_or_trunk: convolution 'c' must have padding"):
        dense_predict(same, np.zeros((1, 8, 8, 3), "float32"), padding="zero")
    x = keras.layers.MaxPooling2D(2)(inputs)
    upsampled = keras.Model(inputs, keras.layers.UpSampling2D(2, name="up")(x))
    with pytest.raises(ValueError, match="model_or_trunk: unsupported layer 'up'"):
        dense_predict(upsampled, np.zeros((1, 8, 8, 3), "float32"), padding="zero")


def test_trunk_builder_matches_the_model_trunk():
    trunk = patch_cnn_trunk(num_classes=3, patch_size=17, width=0.125)
    assert trunk_geometry(trunk) == (16, 4)
    assert [layer.name for layer in trunk.layers] == [
        layer.name for layer in tiny().get_layer("trunk").layers
    ]


@pytest.mark.parametrize("method", METHODS)
def test_dense_predict_in_a_graph_with_unknown_sizes(method, rng):
    model = with_random_biases(tiny(), seed=5)
    predict = tf.function(
        lambda x: dense_predict(model, x, method=method),
        input_signature=[tf.TensorSpec((None, None, None, 3), tf.float32)],
    )
    for shape in [(2, 13, 17), (1, 22, 9)]:
        images = images_of(rng, *shape)
        np.testing.assert_allclose(
            predict(images), brute_force_predict(model, images), atol=1e-5, rtol=0
        )
