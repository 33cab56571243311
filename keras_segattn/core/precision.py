"""Keras' global dtype policy, set for a block and restored after."""

import contextlib

import keras


@contextlib.contextmanager
def dtype_policy(policy):
    """Sets the global Keras dtype policy (e.g. `"mixed_bfloat16"`) inside
    the block and restores the previous one after, also on an exception.
    Layers take the policy in force when they are constructed."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)
