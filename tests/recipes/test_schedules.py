"""The semantic recipe's per-epoch learning-rate schedule (`--schedule`)."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_segattn.models.registry import get_model_spec
from keras_segattn.recipes.instance import train_instance_model
from keras_segattn.recipes.runs import RunFolder
from keras_segattn.recipes.schedules import ScheduledRate, per_epoch, per_step, scheduled_rate
from keras_segattn.recipes.semantic import epoch_schedule, two_stage_fit
from keras_segattn.recipes.stn import learning_rate_schedule, train_cell


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
        epoch = lambda e: data  # noqa: E731 (the same two batches every epoch)
        two_stage_fit(model, epoch, epoch, 2, 6, callbacks, validation_data=data, verbose=0)

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


# ---------------------------------------------------------------------------
# recipes.schedules: the one implementation every recipe uses
# ---------------------------------------------------------------------------


def old_stn_and_instance_schedule(schedule, learning_rate, total_steps):
    """What recipes/stn.py (both) and recipes/instance.py (cosine) built
    before recipes.schedules, written out."""
    if schedule == "cosine":
        return keras.optimizers.schedules.CosineDecay(learning_rate, total_steps)
    boundaries = [max(1, total_steps // 3), max(2, 2 * total_steps // 3)]
    values = [learning_rate, learning_rate / 10, learning_rate / 100]
    return keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values)


def old_semantic_rate(learning_rate, epochs, start, epoch):
    """recipes/semantic.py's `epoch_schedule("cosine", ...)` rate, written out."""
    span = max(1, epochs - start)
    done = min(max(epoch - start, 0), span)
    return float(learning_rate * 0.5 * (1.0 + np.cos(np.pi * done / span)))


@pytest.mark.parametrize("schedule", ["cosine", "step"])
def test_per_step_rates_are_bit_identical_to_the_keras_schedules_they_replace(schedule):
    for total in (1, 2, 7, 300, 4679):  # 4679: 90 epochs of 52 steps, say
        for learning_rate in (1e-3, 0.05):
            old = old_stn_and_instance_schedule(schedule, learning_rate, total)
            new = per_step(schedule, learning_rate, total)
            # As the optimizer calls it: on its int64 step counter, traced.
            rates = tf.function(lambda s, old=old, new=new: tf.stack([old(s), new(s)]))
            third, two_thirds = total // 3, 2 * total // 3
            steps = np.r_[
                0:12,
                third - 2 : third + 3,
                two_thirds - 2 : two_thirds + 3,
                total - 3 : total + 3,
                np.linspace(0, total, 50, dtype=int),
            ]
            steps = tf.constant(steps[steps >= 0], tf.int64)
            values = tf.map_fn(rates, steps, fn_output_signature=tf.float32).numpy()
            np.testing.assert_array_equal(values[:, 1], values[:, 0])  # bit for bit
            assert values.dtype == np.float32
            # And eagerly (`run_eagerly`), where no graph rewrite evens out
            # operations done in another order.
            for step in steps:
                assert np.float32(new(step)) == np.float32(old(step)), (total, step)


@pytest.mark.parametrize(
    "optimizer, schedule",
    [(keras.optimizers.Adam, "cosine"), (lambda rate: keras.optimizers.SGD(rate, 0.9), "step")],
)
def test_training_with_the_new_schedule_gives_the_same_weights(optimizer, schedule):
    x = np.random.default_rng(0).normal(size=(24, 3)).astype("float32")
    y = x.sum(axis=1, keepdims=True)

    def train(rate):
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4), keras.layers.Dense(1)])
        model.compile(optimizer(rate), "mse")
        model.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0)
        return model.get_weights()

    old = train(old_stn_and_instance_schedule(schedule, 0.05, 12))
    new = train(per_step(schedule, 0.05, 12))
    for a, b in zip(old, new, strict=True):
        np.testing.assert_array_equal(a, b)


def test_per_epoch_cosine_sets_the_float32_rates_of_the_semantic_recipe():
    # The rate a LearningRateScheduler sets lands in the optimizer's float32
    # variable: the float32 rates are the old ones, every one.
    for epochs in (1, 2, 3, 6, 10, 30, 40, 90):
        for start in (0, 1, 2, 5):
            if start >= epochs:
                continue
            rate = per_epoch("cosine", 1e-3, epochs, start).schedule
            for epoch in range(epochs + 1):
                old = old_semantic_rate(1e-3, epochs, start, epoch)
                new = rate(epoch, 0.0)
                assert np.float32(new) == np.float32(old), (epochs, start, epoch)
                assert new == pytest.approx(old, rel=1e-12)
    assert per_epoch("constant", 1e-3, 10) is None


def test_the_held_part_and_the_step_schedule():
    rates = [float(scheduled_rate("step", 0.1, e, 11, start=2, dtype="float64")) for e in range(11)]
    # Held for 2, then 9 decaying epochs: /10 after 3 of them, /100 after 6.
    np.testing.assert_allclose(rates, [0.1] * 6 + [0.01] * 3 + [0.001] * 2, rtol=1e-12)
    cosine = [float(scheduled_rate("cosine", 0.1, e, 6, start=2)) for e in range(8)]
    np.testing.assert_allclose(cosine[:2], [0.1, 0.1])
    half_cosine = [0.05 * (1 + math.cos(math.pi * k / 4)) for k in range(4)]
    np.testing.assert_allclose(cosine[2:6], half_cosine, rtol=1e-6)
    assert cosine[6] == cosine[7] == 0.0  # held at 0 past the end
    assert float(scheduled_rate("constant", 0.1, 7, 6)) == pytest.approx(0.1)
    assert per_step("constant", 0.1, 6) == 0.1  # a plain rate, as Adam(learning_rate) had


def test_a_scheduled_rate_round_trips_through_its_config():
    rate = per_step("step", 0.02, 90, start=3)
    assert isinstance(rate, ScheduledRate)
    again = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(rate))
    assert again.get_config() == rate.get_config()
    assert float(again(50)) == float(rate(50))


def test_bad_schedule_arguments_are_named():
    with pytest.raises(ValueError, match=r"schedule must be one of \('constant', 'cosine', "):
        per_step("linear", 0.1, 10)
    with pytest.raises(ValueError, match="steps must be an int >= 0; got steps=-1"):
        per_step("cosine", 0.1, -1)
    with pytest.raises(ValueError, match="start must be an int >= 0"):
        per_epoch("cosine", 0.1, 10, start=-2)
    with pytest.raises(ValueError, match=r"schedule must be one of \('cosine', 'step'\)"):
        learning_rate_schedule("constant", 0.1, 10)  # not a Table 1 schedule
    with pytest.raises(ValueError, match="schedule must be one of"):
        train_instance_model("rpn", schedule="linear")


def test_instance_trainers_use_the_schedule_they_are_given():
    def rate_of(**schedule):
        result = train_instance_model(
            "rpn",
            image_size=32,
            num_train=2,
            num_val=1,
            batch_size=2,
            epochs=1,
            model_kwargs=get_model_spec("rpn").tiny,
            evaluate=False,
            **schedule,
        )
        return result["model"].optimizer._learning_rate

    assert rate_of().get_config() == {
        "schedule": "cosine",
        "learning_rate": 1e-3,
        "steps": 1,
        "start": 0,
    }
    assert isinstance(rate_of(schedule="constant"), keras.Variable)
    assert rate_of(schedule="step").get_config()["schedule"] == "step"


def test_stn_cell_takes_a_strategy_and_mixed_precision(shared_data, tmp_path):
    # train_cell's strategy and mixed_precision (the other recipes'): the
    # precision is a setting of the cell, the strategy is not.
    kwargs = dict(
        epochs=1,
        batch_size=64,
        output=str(tmp_path),
        source=f"{shared_data}/mnist",
        limit=128,
        verbose=0,
    )
    before = keras.config.dtype_policy().name
    result = train_cell("cnn", "R", strategy="mirrored", mixed_precision="bfloat16", **kwargs)
    assert keras.config.dtype_policy().name == before  # restored after the cell
    assert result["settings"]["mixed_precision"] == "bfloat16"
    assert 0 <= result["test_error"] <= 100
    # The same cell on one device is the same cell: read back, not retrained.
    assert (
        train_cell("cnn", "R", strategy="default", mixed_precision="bfloat16", **kwargs) == result
    )
    with pytest.raises(ValueError, match="mixed_precision: 'bfloat16' -> None"):
        train_cell("cnn", "R", **kwargs)
