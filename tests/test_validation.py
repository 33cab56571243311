import numpy as np
import pytest

from keras_segattn.core.validation import check_int, check_size


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


def test_check_size_accepts_an_int_or_a_pair():
    assert check_size(7, "output_size") == (7, 7)
    assert check_size([3, np.int32(4)], "output_size") == (3, 4)
    assert check_size(None, "image_size", none_ok=True) is None
    assert check_size((24, 30), "image_size", minimum=24) == (24, 30)


@pytest.mark.parametrize("value", [0, (7, 2.5), "7", (4,), (2, 3, 4), None, (True, 2), (4, -1)])
def test_check_size_names_the_argument_and_what_was_expected(value):
    with pytest.raises(ValueError) as error:
        check_size(value, "output_size")
    assert str(error.value) == (
        "output_size must be a positive int or a (height, width) pair of them; "
        f"got output_size={value!r}."
    )
    with pytest.raises(ValueError, match=r"must be None, an int >= 24 or a \(height, width\)"):
        check_size(23, "image_size", minimum=24, none_ok=True)
