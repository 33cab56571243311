"""The semantic recipe's per-epoch learning-rate schedule (`--schedule`)."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_segattn.recipes.runs import RunFolder
from keras_segattn.recipes.semantic import epoch_schedule, two_stage_fit


def test_cosine_holds_through_stage_one_then_decays_to_near_zero():
    rate = epoch_schedule("cosine", 0.1, epochs=6, start=2).schedule
    rates = [rate(epoch, 0.0) for epoch in range(6)]
    half_cosine = [0.05 * (1 + math.cos(math.pi * k / 4)) for k in range(4)]
    np.testing.assert_allclose(rates, [0.1, 0.1] + half_cosine)
    assert epoch_schedule("constant", 0.1, epochs=6) is None


def test_an_unknown_schedule_is_named():
    with pytest.raises(ValueError, match="schedule must be one of .*'linear'"):
        epoch_schedule("linear", 0.1, epochs=6)


def test_a_killed_run_resumes_with_the_rates_of_an_uninterrupted_one(tmp_path):
    data = tf.data.Dataset.from_tensor_slices((np.ones((4, 2)), np.zeros((4, 1)))).batch(2)

    class Killed(Exception):
        pass

    class Kill(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 4:  # in stage 2, after epoch 3 was committed
                raise Killed

    def fit(folder, *more):
        model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
        model.compile(keras.optimizers.SGD(0.1), "mse")
        callbacks = [epoch_schedule("cosine", 0.1, epochs=6, start=2)]  # first, as the recipe
        callbacks += RunFolder(folder).callbacks("val_loss", "min", tensorboard=False) + [*more]
        two_stage_fit(model, data, data, 2, 6, callbacks=callbacks, validation_data=data,
                      verbose=0)  # fmt: skip

    fit(tmp_path / "whole")
    with pytest.raises(Killed):
        fit(tmp_path / "killed", Kill())
    assert len(RunFolder(tmp_path / "killed").history_column("loss")) == 4
    fit(tmp_path / "killed")  # the same command again
    whole = RunFolder(tmp_path / "whole").history_column("learning_rate")
    resumed = RunFolder(tmp_path / "killed").history_column("learning_rate")
    expected = [epoch_schedule("cosine", 0.1, 6, 2).schedule(e, 0.0) for e in range(6)]
    np.testing.assert_allclose(whole, expected, rtol=1e-6)
    np.testing.assert_allclose(resumed, expected, rtol=1e-6)
