"""The learning-rate schedules of every recipe, written once.

A schedule gives the learning rate at a position (an epoch, or an
optimizer step) from the peak `learning_rate`, the `length` of the run in
the same unit, and a held part `start` (trained at `learning_rate`, e.g.
DeconvNet's first stage) after which the `span = max(1, length - start)`
decaying positions follow:

- `"constant"`: `learning_rate` throughout;
- `"cosine"`: position `start + k` trains at
  `learning_rate * (1 + cos(pi * k / span)) / 2`, `k` counted from 0 and
  held at `span` once it is reached (the rate is then 0);
- `"step"`: the Spatial Transformer paper's, `learning_rate` up to and
  including position `start + max(1, span // 3)`, a tenth of it up to
  `start + max(2, 2 * span // 3)`, a hundredth after (its 50k and 100k of
  150k iterations).

The rate is a function of the position alone, so a run resumed from its
folder goes on with the rates an uninterrupted one would use. Two ways to
apply one:

- `per_step`: a Keras `LearningRateSchedule` the optimizer evaluates at
  each step (`recipes.instance`, `recipes.stn`). With `start=0` it computes
  exactly, bit for bit, what Keras' `CosineDecay(learning_rate, length)` and
  `PiecewiseConstantDecay` computed for those recipes before (the same
  float32 operations in the same order);
- `per_epoch`: a `LearningRateScheduler` callback that sets the rate once
  an epoch (`recipes.semantic`), computed in float64.
"""

import math

import keras
from keras import ops

SCHEDULES = ("constant", "cosine", "step")


def check_schedule(schedule, allowed=SCHEDULES):
    """Returns `schedule` if it is one of `allowed`.

    Raises:
        ValueError: naming `schedule` and the allowed names.
    """
    if schedule not in allowed:
        raise ValueError(f"schedule must be one of {tuple(allowed)}; got schedule={schedule!r}.")
    return schedule


def _check_lengths(**lengths):
    for name, value in lengths.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be an int >= 0; got {name}={value!r}.")


def scheduled_rate(schedule, learning_rate, position, length, start=0, dtype=None):
    """The learning rate of `schedule` at `position` (see the module docstring).

    Args:
        schedule: `"constant"`, `"cosine"` or `"step"`.
        learning_rate: float. The peak (and held) rate.
        position: int or integer tensor. The epoch or step, from 0; may be
            symbolic (an optimizer's `iterations`).
        length: int. Epochs or steps of the run, `start` included.
        start: int. Positions held at `learning_rate` before the decay.
            Defaults to `0`.
        dtype: the float dtype computed in. Defaults to Keras' `floatx`
            (float32, what the optimizers use).

    Returns:
        A scalar tensor of `dtype`.

    Raises:
        ValueError: an unknown `schedule`, a negative `length` or `start`.
    """
    check_schedule(schedule)
    _check_lengths(length=length, start=start)
    dtype = dtype or keras.config.floatx()
    peak = ops.convert_to_tensor(learning_rate, dtype=dtype)
    if schedule == "constant":
        return peak
    span = max(1, length - start)
    if schedule == "cosine":
        # CosineDecay's operations, in its order (alpha = 0 adds nothing).
        done = ops.clip(ops.cast(position, dtype) - start, 0, span)
        fraction = ops.divide(done, ops.cast(span, dtype))
        pi = ops.array(math.pi, dtype=dtype)
        return ops.multiply(peak, 0.5 * (1.0 + ops.cos(ops.multiply(pi, fraction))))
    # "step": compared as integers, as PiecewiseConstantDecay compares steps;
    # the lower rates divided in float64 before they are cast, as it did.
    done = ops.cast(position, "int64") - start
    first, second = max(1, span // 3), max(2, 2 * span // 3)
    tenth = ops.convert_to_tensor(learning_rate / 10, dtype=dtype)
    hundredth = ops.convert_to_tensor(learning_rate / 100, dtype=dtype)
    return ops.where(done <= first, peak, ops.where(done <= second, tenth, hundredth))


@keras.saving.register_keras_serializable(package="keras_segattn")
class ScheduledRate(keras.optimizers.schedules.LearningRateSchedule):
    """A `scheduled_rate` schedule evaluated at every optimizer step.

    Args:
        schedule: `"constant"`, `"cosine"` or `"step"`.
        learning_rate: float. The peak rate.
        steps: int. Optimizer steps of the run.
        start: int. Steps held at `learning_rate` first. Defaults to `0`.
    """

    def __init__(self, schedule, learning_rate, steps, start=0):
        check_schedule(schedule)
        _check_lengths(steps=steps, start=start)
        self.schedule = schedule
        self.learning_rate = float(learning_rate)
        self.steps = steps
        self.start = start

    def __call__(self, step):
        return scheduled_rate(self.schedule, self.learning_rate, step, self.steps, self.start)

    def get_config(self):
        return {
            "schedule": self.schedule,
            "learning_rate": self.learning_rate,
            "steps": self.steps,
            "start": self.start,
        }


def per_step(schedule, learning_rate, steps, start=0):
    """The learning rate to give an optimizer: `learning_rate` itself for
    `"constant"` (a plain rate, as `Adam(learning_rate)` always had), else a
    `ScheduledRate` over `steps` optimizer steps.

    Raises:
        ValueError: an unknown `schedule`, a negative `steps` or `start`.
    """
    check_schedule(schedule)
    _check_lengths(steps=steps, start=start)
    if schedule == "constant":
        return learning_rate
    return ScheduledRate(schedule, learning_rate, steps, start)


def per_epoch(schedule, learning_rate, epochs, start=0):
    """A `keras.callbacks.LearningRateScheduler` that sets the rate of each
    epoch (computed in float64), or `None` for `"constant"` (the optimizer
    keeps its rate).

    Put it before the run folder's callbacks, so that its rate joins the
    epoch's logs (and `history.csv`) before they are written.

    Raises:
        ValueError: an unknown `schedule`, a negative `epochs` or `start`.
    """
    check_schedule(schedule)
    _check_lengths(epochs=epochs, start=start)
    if schedule == "constant":
        return None

    def rate(epoch, _current=None):
        return float(scheduled_rate(schedule, learning_rate, epoch, epochs, start, "float64"))

    return keras.callbacks.LearningRateScheduler(rate)
