"""Argument checks shared by the layers and builders, with one message format.

Every check names the argument and says what was expected, so that a bad
argument fails where it is given rather than deep inside TensorFlow.
"""

import numpy as np


def check_int(value, name, minimum=1, none_ok=False, hint=""):
    """Returns `value` as an int if it is an int >= `minimum`.

    Args:
        value: the argument.
        name: str. The argument's name, for the message.
        minimum: int. The smallest allowed value. Defaults to `1`.
        none_ok: bool. Let `None` through (returned as `None`). Defaults to
            `False`.
        hint: str. Appended to what was expected, e.g. why. Defaults to `""`.

    Raises:
        ValueError: for a bool, a non-integer or a value below `minimum`,
            e.g. "sampling_ratio must be a positive int; got sampling_ratio=0.".
    """
    if value is None and none_ok:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        expected = "a positive int" if minimum == 1 else f"an int >= {minimum}"
        expected += " or None" if none_ok else ""
        raise ValueError(f"{name} must be {expected}{hint}; got {name}={value!r}.")
    return int(value)


def check_size(value, name, minimum=1, none_ok=False):
    """Returns `value`, an int or a `(height, width)` pair, as an int pair.

    Args:
        value: the argument: an int (a square) or a pair of ints.
        name: str. The argument's name, for the message.
        minimum: int. The smallest allowed side. Defaults to `1`.
        none_ok: bool. Let `None` through (returned as `None`). Defaults to
            `False`.

    Raises:
        ValueError: for anything else, e.g. "output_size must be a positive
            int or a (height, width) pair of them; got output_size=(7, 2.5).".
    """
    if value is None and none_ok:
        return None
    pair = (value, value) if isinstance(value, (int, np.integer)) else value
    if isinstance(pair, (list, tuple)) and len(pair) == 2:
        try:
            return tuple(check_int(side, name, minimum) for side in pair)
        except ValueError:
            pass
    expected = "a positive int" if minimum == 1 else f"an int >= {minimum}"
    expected = ("None, " if none_ok else "") + expected
    raise ValueError(
        f"{name} must be {expected} or a (height, width) pair of them; got {name}={value!r}."
    )


def optional_size(value, name):
    """`None`, an int, or a `[side]` / `[height, width]` sequence (as argparse's
    `nargs="+"` and `run.json` give them) as `None` or an int pair."""
    if isinstance(value, (list, tuple)) and len(value) == 1:
        value = value[0]
    return check_size(value, name, none_ok=True)
