"""The shared checker refuses a test that cannot fail: constant outputs,
and weights whose gradient is zero everywhere."""

import keras
import numpy as np
import pytest

from keras_segattn.testing import check_gradients, nonzero_weights, run_model_test


def zero_headed_model():
    inputs = keras.Input((8, 8, 3))
    features = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inputs)
    head = keras.layers.Conv2D(2, 1, kernel_initializer="zeros", name="head")(features)
    return keras.Model(inputs, head)


def test_a_model_whose_outputs_are_constant_is_refused(rng):
    images = rng.normal(size=(2, 8, 8, 3)).astype("float32")
    with pytest.raises(AssertionError, match="output 0 is constant .* whatever the code computes"):
        run_model_test(zero_headed_model(), images)


def test_a_weight_without_gradient_is_refused(rng):
    images = rng.normal(size=(2, 8, 8, 3)).astype("float32")
    with pytest.raises(AssertionError, match=r"gradient of conv2d.*/kernel is zero everywhere"):
        check_gradients(zero_headed_model(), images)


def test_the_same_model_with_non_degenerate_weights_passes(rng):
    model = zero_headed_model()
    model.set_weights(nonzero_weights(model))
    images = rng.normal(size=(2, 8, 8, 3)).astype("float32")
    outputs = run_model_test(model, images)
    assert np.ptp(np.asarray(outputs)) > 0
