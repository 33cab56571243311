import keras
import numpy as np
import pytest

from keras_segattn.layers.image_pyramid import ImagePyramid
from keras_segattn.losses import SegmentationCrossEntropy
from keras_segattn.models.registry import create_model, get_model_spec, list_models
from keras_segattn.models.semantic.multiscale import multiscale_convnet, multiscale_tower
from keras_segattn.testing import run_model_test


def tiny(**overrides):
    return multiscale_convnet(**{**get_model_spec("multiscale_convnet").tiny, **overrides})


def test_registered_as_semantic():
    assert "multiscale_convnet" in list_models(task="semantic")
    model = create_model("multiscale_convnet", num_classes=3, width=0.125)
    assert model.output_shape == (None, None, None, 3)


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {
            "upsampling": "bilinear",
            "classifier_hidden": 16,
            "color": "rgb",
            "activation": "softmax",
        },
    ],
)
def test_model_passes_shared_checks(overrides, rng):
    model = tiny(**overrides)
    images = rng.integers(0, 256, size=(2, 37, 50, 3)).astype("float32")
    labels = rng.integers(0, 3, size=(2, 37, 50)).astype("int32")
    run_model_test(
        model, images, labels, loss=SegmentationCrossEntropy(), atol=1e-4, tflite_atol=1e-3
    )


def test_paper_defaults_share_one_tower():
    model = multiscale_convnet()
    tower = model.get_layer("tower")
    assert [layer.filters for layer in tower.layers if isinstance(layer, keras.layers.Conv2D)] == [
        16,
        64,
        256,
    ]
    assert model.get_layer("multiscale_features").output.shape[-1] == 768
    pyramid = model.get_layer("pyramid")
    assert (pyramid.levels, pyramid.kind, pyramid.lcn_size) == (3, "laplacian", 15)


def test_weights_are_shared_across_scales(rng):
    model = tiny(classifier_hidden=8)
    tower = model.get_layer("tower")
    # The tower is one nested model, called once per scale.
    assert len(tower._inbound_nodes) == 3
    alone = multiscale_tower((4, 8, 32))
    assert len(tower.trainable_weights) == len(alone.trainable_weights) == 6
    assert tower.count_params() == alone.count_params()
    classifier = model.get_layer("classifier_hidden").count_params()
    classifier += model.get_layer("classifier").count_params()
    assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == (
        alone.count_params() + classifier
    )
    # Every conv variable of the model belongs to the tower or the classifier.
    tower_ids = {id(w) for w in tower.trainable_weights}
    others = [w for w in model.trainable_weights if id(w) not in tower_ids]
    assert [w.path.split("/")[0] for w in others] == ["classifier_hidden"] * 2 + ["classifier"] * 2
    # Changing the tower's first kernel changes what every scale computes.
    images = rng.integers(0, 256, size=(1, 32, 32, 3)).astype("float32")
    scales = keras.Model(model.input, model.get_layer("multiscale_features").output)
    before = np.asarray(scales(images))
    kernel = tower.get_layer("conv1").kernel
    kernel.assign(kernel * 2.0)
    after = np.asarray(scales(images))
    for k in range(3):
        part = slice(32 * k, 32 * (k + 1))
        assert not np.allclose(before[..., part], after[..., part])


def test_scales_see_the_pyramid_levels(rng):
    # The concatenated features are the tower on each pyramid level,
    # replicated by 2**k.
    model = tiny()
    images = rng.integers(0, 256, size=(1, 48, 64, 3)).astype("float32")
    scales = keras.Model(model.input, model.get_layer("multiscale_features").output)
    levels = keras.Model(model.input, model.get_layer("pyramid").output)(images)
    tower = model.get_layer("tower")
    features = np.asarray(scales(images))
    for k, level in enumerate(levels):
        expected = np.asarray(tower(level))
        expected = expected.repeat(2**k, axis=1).repeat(2**k, axis=2)
        np.testing.assert_allclose(features[..., 32 * k : 32 * (k + 1)], expected, atol=1e-5)


@pytest.mark.parametrize("size", [(32, 32), (33, 47), (37, 50), (71, 40), (49, 97)])
def test_output_has_exactly_the_input_size(size, rng):
    model = tiny()
    images = rng.integers(0, 256, size=(2, *size, 3)).astype("uint8")
    assert model(images).shape == (2, *size, 3)


def test_more_levels_raise_the_minimum_size(rng):
    model = tiny(levels=4, filters=(16, 64, 64, 256))
    assert model.get_layer("pad_to_stride").multiple == 64
    assert model(np.zeros((1, 65, 70, 3), "uint8")).shape == (1, 65, 70, 3)
    with pytest.raises(ValueError, match="smaller than the minimum 64"):
        model(np.zeros((1, 63, 70, 3), "uint8"))
    single = tiny(levels=1)
    assert "multiscale_features" not in {layer.name for layer in single.layers}
    assert single(np.zeros((1, 33, 35, 3), "uint8")).shape == (1, 33, 35, 3)


def test_bad_inputs_raise_clear_errors():
    model = tiny()
    with pytest.raises(ValueError, match="height 31 is smaller than the minimum 32"):
        model(np.zeros((1, 31, 64, 3), "uint8"))
    with pytest.raises(ValueError, match="width 20 is smaller than the minimum 32"):
        model(np.zeros((1, 40, 20, 3), "uint8"))
    with pytest.raises(ValueError, match=r"(?i)'images'.*expected shape"):
        model(np.zeros((1, 64, 64, 4), "uint8"))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"num_classes": 1}, "num_classes"),
        ({"width": 0}, "width"),
        ({"filters": ()}, "filters"),
        ({"filters": (16, 0)}, "filters"),
        ({"levels": 0}, "levels"),
        ({"kernel_size": 4}, "kernel_size"),
        ({"upsampling": "bicubic"}, "upsampling"),
        ({"classifier_hidden": 0}, "classifier_hidden"),
        ({"color": "lab"}, "color"),
        ({"pyramid": "steerable"}, "kind"),
        ({"lcn_size": 4}, "lcn_size"),
        ({"weights": "imagenet"}, "no pretrained weights"),
        ({"weights": "/no/such/file.weights.h5"}, "weights"),
    ],
)
def test_bad_builder_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        tiny(**kwargs)


def test_yuv_conversion_is_fixed(rng):
    model = tiny()
    layer = model.get_layer("rgb_to_yuv")
    assert not layer.trainable and not layer.trainable_weights
    white = layer(np.ones((1, 1, 1, 3), "float32"))
    np.testing.assert_allclose(np.asarray(white)[0, 0, 0], [1.0, 0.0, 0.0], atol=1e-4)
    assert isinstance(model.get_layer("pyramid"), ImagePyramid)


def test_weights_path_round_trip(tmp_path, rng):
    model = tiny(classifier_hidden=8)
    path = str(tmp_path / "multiscale.weights.h5")
    model.save_weights(path)
    restored = tiny(classifier_hidden=8, weights=path)
    images = rng.integers(0, 256, size=(1, 40, 36, 3)).astype("uint8")
    np.testing.assert_allclose(restored(images), model(images), atol=1e-6)
