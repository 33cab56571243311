import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_segattn.layers.spatial_transformer import (
    SpatialTransformer,
    affine_grid,
    bilinear_sample,
    projective_grid,
    tps_control_points,
    tps_grid,
)
from keras_segattn.testing import run_layer_test, run_model_test
from tests.references import (
    affine_grid_reference,
    bilinear_sample_reference,
    projective_grid_reference,
    tps_grid_reference,
)

IDENTITY = {
    "affine": [1.0, 0, 0, 0, 1, 0],
    "projective": [1.0, 0, 0, 0, 1, 0, 0, 0],
    "tps": [0.0] * 32,
}


def make_grid(transform, theta, out_h, out_w):
    if transform == "affine":
        return affine_grid(theta, out_h, out_w)
    if transform == "projective":
        return projective_grid(theta, out_h, out_w)
    return tps_grid(theta, tps_control_points(4), out_h, out_w)


def reference_grid(transform, theta, out_h, out_w):
    if transform == "affine":
        return affine_grid_reference(theta, out_h, out_w)
    if transform == "projective":
        return projective_grid_reference(theta, out_h, out_w)
    return tps_grid_reference(theta, tps_control_points(4), out_h, out_w)


def random_theta(rng, transform, batch, scale=1.0):
    identity = np.asarray(IDENTITY[transform])
    noise = rng.normal(scale=0.25 * scale, size=(batch, len(identity)))
    if transform == "projective":
        # Mild perspective keeps the divisor well away from 0.
        noise[:, 6:] *= 0.3
    return (identity + noise).astype("float32")


@pytest.mark.parametrize("transform", ["affine", "projective", "tps"])
@pytest.mark.parametrize("shape", [(3, 7, 9, 2), (2, 5, 1, 3), (2, 13, 6, 1)])
def test_identity_grid_returns_input_exactly(rng, transform, shape):
    images = rng.normal(size=shape).astype("float32")
    theta = np.tile(np.asarray(IDENTITY[transform], "float32"), (shape[0], 1))
    grid = make_grid(transform, theta, *shape[1:3])
    np.testing.assert_array_equal(bilinear_sample(images, grid), images)


@pytest.mark.parametrize("transform", ["affine", "projective", "tps"])
def test_untrained_layer_is_the_identity(rng, transform):
    images = rng.normal(size=(3, 11, 9, 2)).astype("float32")
    warped, theta = SpatialTransformer(transform)(images)
    np.testing.assert_array_equal(warped, images)
    np.testing.assert_array_equal(theta, np.tile(IDENTITY[transform], (3, 1)))


@pytest.mark.parametrize("transform", ["affine", "projective", "tps"])
@pytest.mark.parametrize("out_size", [(7, 9), (5, 12)])
def test_matches_numpy_reference(rng, transform, out_size):
    images = rng.normal(size=(3, 7, 9, 2)).astype("float32")
    theta = random_theta(rng, transform, 3)
    grid = make_grid(transform, theta, *out_size)
    np.testing.assert_allclose(grid, reference_grid(transform, theta, *out_size), atol=1e-5)
    expected = bilinear_sample_reference(images, reference_grid(transform, theta, *out_size))
    # Random transforms move part of the grid outside: zero padding is covered.
    assert np.any(np.abs(np.asarray(grid)) > 1)
    np.testing.assert_allclose(bilinear_sample(images, grid), expected, atol=1e-5)


def test_sampler_matches_reference_on_arbitrary_grids(rng):
    images = rng.normal(size=(2, 6, 8, 3)).astype("float32")
    grid = rng.uniform(-1.6, 1.6, size=(2, 5, 4, 2)).astype("float32")
    grid[0, 0, 0] = [1e9, -np.inf]  # far outside: reads zeros, no indexing error
    expected = bilinear_sample_reference(images, np.nan_to_num(grid, neginf=-1e9))
    np.testing.assert_allclose(bilinear_sample(images, grid), expected, atol=1e-5)


@pytest.mark.parametrize("transform", ["affine", "projective", "tps"])
def test_gradients_match_finite_differences(rng, transform):
    images = rng.normal(size=(2, 5, 6, 2))
    theta = random_theta(rng, transform, 2, scale=0.5).astype("float64")
    weights = rng.normal(size=(2, 4, 5, 2))

    def loss(images, theta):
        return tf.reduce_sum(bilinear_sample(images, make_grid(transform, theta, 4, 5)) * weights)

    images_t, theta_t = tf.constant(images), tf.constant(theta)
    with tf.GradientTape() as tape:
        tape.watch([images_t, theta_t])
        value = loss(images_t, theta_t)
    grad_images, grad_theta = tape.gradient(value, [images_t, theta_t])

    def numeric(array, other_first):
        eps = 1e-6
        grad = np.zeros_like(array)
        for index in np.ndindex(array.shape):
            plus, minus = array.copy(), array.copy()
            plus[index] += eps
            minus[index] -= eps
            args = (lambda a: (a, theta)) if other_first else (lambda a: (images, a))
            grad[index] = (float(loss(*args(plus))) - float(loss(*args(minus)))) / (2 * eps)
        return grad

    assert np.any(np.asarray(grad_theta) != 0)
    np.testing.assert_allclose(grad_theta, numeric(theta, other_first=False), atol=1e-6)
    np.testing.assert_allclose(grad_images, numeric(images, other_first=True), atol=1e-6)


def test_rotation_by_90_degrees(rng):
    images = rng.normal(size=(2, 7, 7, 3)).astype("float32")
    # Output (x, y) reads input (-y, x): out[i, j] = in[j, n - 1 - i].
    theta = np.tile(np.asarray([[0.0, -1, 0, 1, 0, 0]], "float32"), (2, 1))
    warped = bilinear_sample(images, affine_grid(theta, 7, 7))
    np.testing.assert_allclose(warped, np.rot90(images, k=1, axes=(1, 2)), atol=1e-6)


def test_translation_by_one_pixel_pads_with_zeros(rng):
    images = rng.normal(size=(1, 4, 5, 1)).astype("float32")
    theta = np.asarray([[1.0, 0, 2 / 4, 0, 1, 0]], "float32")
    warped = np.asarray(bilinear_sample(images, affine_grid(theta, 4, 5)))
    np.testing.assert_allclose(warped[:, :, :4], images[:, :, 1:], atol=1e-6)
    np.testing.assert_array_equal(warped[:, :, 4], 0)


def test_zoom_by_two_interpolates_between_pixels():
    images = np.arange(25, dtype="float32").reshape(1, 5, 5, 1)
    theta = np.asarray([[0.5, 0, 0, 0, 0.5, 0]], "float32")
    warped = np.asarray(bilinear_sample(images, affine_grid(theta, 5, 5)))[0, :, :, 0]
    # The centre 3x3 pixels (rows/cols 1..3) spread over 5x5: half-pixel steps.
    steps = np.linspace(1.0, 3.0, 5)
    np.testing.assert_allclose(warped, steps[:, None] * 5 + steps[None, :], atol=1e-5)


def test_output_size_and_tps_grid_size(rng):
    images = rng.normal(size=(2, 12, 10, 3)).astype("float32")
    layer = SpatialTransformer("tps", output_size=(6, 4), tps_grid_size=(3, 5))
    warped, theta = layer(images)
    assert warped.shape == (2, 6, 4, 3) and theta.shape == (2, 30)
    assert layer.compute_output_shape((None, 12, 10, 3)) == ((None, 6, 4, 3), (None, 30))


@pytest.mark.parametrize("transform", ["affine", "projective", "tps"])
def test_layer_passes_shared_checks(rng, transform):
    images = rng.normal(size=(2, 12, 10, 3)).astype("float32")
    theta_size = len(IDENTITY[transform])
    run_layer_test(
        SpatialTransformer,
        {"transform": transform, "output_size": (8, 7)},
        images,
        expected_output_shape=[(2, 8, 7, 3), (2, theta_size)],
    )


@pytest.mark.parametrize(
    "transform, custom_localization", [("affine", True), ("projective", False), ("tps", True)]
)
def test_non_identity_warp_passes_shared_checks(rng, transform, custom_localization):
    # The untrained layer is the identity, which would make TFLite parity
    # trivial and leave the localisation weights out of every comparison:
    # start the regression at a random transform with a random kernel.
    images = rng.normal(size=(2, 9, 8, 2)).astype("float32")
    localization = None
    if custom_localization:
        localization = keras.Sequential(
            [keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(4, activation="tanh")]
        )
    inputs = keras.Input((9, 8, 2))
    layer = SpatialTransformer(transform, localization=localization, tps_grid_size=3)
    model = keras.Model(inputs, layer(inputs))
    kernel, bias = layer.regressor.get_weights()
    if transform == "tps":
        bias = rng.normal(scale=0.2, size=bias.shape)
    else:
        bias = random_theta(rng, transform, 1)[0]
    layer.regressor.set_weights([rng.normal(scale=0.1, size=kernel.shape), bias])
    warped, _ = model(images)
    assert np.max(np.abs(np.asarray(warped) - images)) > 0.1
    run_model_test(model, images)


def test_regression_false_uses_the_localization_output():
    theta = np.asarray([[0.0, -1, 0, 1, 0, 0]], "float32")
    localization = keras.Sequential(
        [
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(6, kernel_initializer="zeros", bias_initializer="ones"),
        ]
    )
    layer = SpatialTransformer(localization=localization, regression=False)
    images = np.arange(2 * 5 * 5, dtype="float32").reshape(2, 5, 5, 1)
    localization.build((None, 5, 5, 1))
    localization.layers[-1].set_weights([np.zeros((1, 6)), theta[0]])
    warped, out_theta = layer(images)
    np.testing.assert_array_equal(out_theta, np.tile(theta, (2, 1)))
    np.testing.assert_allclose(warped, np.rot90(images, k=1, axes=(1, 2)), atol=1e-5)
    config = layer.get_config()
    clone = SpatialTransformer.from_config(config)
    assert clone.get_config() == config and clone.localization is not localization


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="transform=.*'similarity'"):
        SpatialTransformer("similarity")
    with pytest.raises(ValueError, match="output_size=0"):
        SpatialTransformer(output_size=0)
    with pytest.raises(ValueError, match=r"output_size=\(4, -1\)"):
        SpatialTransformer(output_size=(4, -1))
    with pytest.raises(ValueError, match="tps_grid_size=1"):
        SpatialTransformer("tps", tps_grid_size=1)
    with pytest.raises(ValueError, match="localization=None"):
        SpatialTransformer(regression=False)
    with pytest.raises(ValueError, match="4-D"):
        SpatialTransformer()(np.zeros((2, 5, 5), "float32"))
    with pytest.raises(ValueError, match="output_size=None"):
        SpatialTransformer(localization=keras.layers.GlobalAveragePooling2D())(
            keras.Input((None, None, 3))
        )
    # A fully convolutional localisation net on a dynamic size: no flat size.
    with pytest.raises(ValueError, match="output size must be known"):
        SpatialTransformer(output_size=4, localization=keras.layers.Conv2D(2, 3))(
            keras.Input((None, None, 3))
        )
    # regression=False: the localisation output must be theta itself.
    with pytest.raises(ValueError, match="localization=.*6 parameters.*affine"):
        SpatialTransformer(
            localization=keras.Sequential(
                [keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(8)]
            ),
            regression=False,
        )(keras.Input((8, 8, 1)))
    with pytest.raises(ValueError, match="tps_grid_size=\\(3, 3\\)"):
        SpatialTransformer(
            "tps",
            tps_grid_size=3,
            localization=keras.Sequential(
                [keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(32)]
            ),
            regression=False,
        )(keras.Input((8, 8, 1)))


def test_mirrored_strategy_fit_step(rng):
    # The same step under a (one-replica) MirroredStrategy and without one.
    images = rng.normal(size=(4, 12, 12, 1)).astype("float32")
    labels = rng.integers(0, 3, size=(4,))
    results = []
    for strategy in (tf.distribute.MirroredStrategy(["/cpu:0"]), tf.distribute.get_strategy()):
        with strategy.scope():
            inputs = keras.Input((12, 12, 1))
            warped, _ = SpatialTransformer("affine", output_size=6)(inputs)
            outputs = keras.layers.Dense(3)(keras.layers.Flatten()(warped))
            model = keras.Model(inputs, outputs)
            model.compile(
                optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)
            )
        if results:
            model.set_weights(results[0][0])
        start = model.get_weights()
        history = model.fit(images, labels, batch_size=4, epochs=1, verbose=0)
        results.append((start, model.get_weights(), history.history["loss"][0]))
    (start, mirrored, loss), (_, plain, plain_loss) = results
    assert np.isfinite(loss) and np.isclose(loss, plain_loss, rtol=1e-6)
    assert any(not np.array_equal(a, b) for a, b in zip(start, mirrored))  # it trained
    for a, b in zip(mirrored, plain):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_called_at_another_size_than_its_localization_net_was_built_for():
    # Convolutional features: 4x4x2 at 28x28, 8x8x2 (four times as many) at 56x56.
    net = keras.Sequential([keras.layers.Conv2D(2, 3, strides=7)])
    layer = SpatialTransformer(localization=net, output_size=(28, 28))
    layer(np.zeros((2, 28, 28, 1), "float32"))
    with pytest.raises(ValueError, match=r"gives features of shape .* but it was built for"):
        layer(np.zeros((2, 56, 56, 1), "float32"))  # would have become a batch of 8
