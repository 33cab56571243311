import numpy as np
import pytest

from keras_segattn.validation import check_int


def test_check_int_accepts_ints_and_numpy_ints():
    assert check_int(3, "units") == 3
    assert type(check_int(np.int64(2), "units")) is int
    assert check_int(2, "levels", minimum=2) == 2
    assert check_int(None, "num_groups", none_ok=True) is None


@pytest.mark.parametrize(
    "value, kwargs, message",
    [
        (0, {}, "units must be a positive int; got units=0."),
        (True, {}, "units must be a positive int; got units=True."),
        (2.0, {}, "units must be a positive int; got units=2.0."),
        ("3", {}, "units must be a positive int; got units='3'."),
        (None, {}, "units must be a positive int; got units=None."),
        (1, {"minimum": 2}, "units must be an int >= 2; got units=1."),
        (0, {"none_ok": True}, "units must be a positive int or None; got units=0."),
        (0, {"hint": " (why)"}, "units must be a positive int (why); got units=0."),
    ],
)
def test_check_int_names_the_argument_and_what_was_expected(value, kwargs, message):
    with pytest.raises(ValueError) as error:
        check_int(value, "units", **kwargs)
    assert str(error.value) == message
