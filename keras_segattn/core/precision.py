"""Keras' global dtype policy, set for a block and restored after; the
name scope that keeps a computation in float in a full-integer TFLite file."""

import contextlib

import keras
import tensorflow as tf

# Ops traced inside `keep_float()` carry this in their names; the int8
# TFLite converter (`export.convert_to_tflite`) leaves them in float.
FLOAT_SCOPE = "keep_float_in_int8"


def keep_float():
    """A name scope for a computation that full-integer quantisation would
    ruin (the spatial transformer's sampling coordinates: a sampling
    position quantised to 1/256 of the range moves whole pixels). In an
    `"int8"` TFLite file its ops run in float, between a dequantise and a
    quantise; everywhere else the scope changes nothing."""
    return tf.name_scope(FLOAT_SCOPE)


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


def _is_mixed(policy):
    return getattr(policy, "name", str(policy)).startswith("mixed_")


def _float32_policies(config):
    """`config` with every mixed-precision dtype policy made float32."""
    if isinstance(config, list):
        return [_float32_policies(v) for v in config]
    if not isinstance(config, dict):
        return config
    if config.get("class_name") == "DTypePolicy" and _is_mixed(config["config"].get("name", "")):
        return {**config, "config": {**config["config"], "name": "float32"}}
    return {
        k: "float32"
        if k == "dtype" and isinstance(v, str) and _is_mixed(v)
        else _float32_policies(v)
        for k, v in config.items()
    }


def float32_model(model):
    """`model` itself, or, for a model built under a mixed-precision policy, a
    float32 copy with the same weights (the variables of a mixed model are
    float32 already: nothing is rounded).

    What exports run: TFLite has no bfloat16 arithmetic, and a CPU serves
    float16 slowly; a SavedModel or TFLite file computes in float32 (its
    `"float16"` quantization halves the file instead)."""
    layers, stack = [], [model]
    while stack:
        layer = stack.pop()
        layers.append(layer)
        stack.extend(getattr(layer, "layers", []))
    if not any(_is_mixed(layer.dtype_policy) for layer in layers):
        return model
    config = _float32_policies(keras.saving.serialize_keras_object(model))
    with dtype_policy("float32"):  # what a subclassed model builds inside
        copy = keras.saving.deserialize_keras_object(config)
    mixed = [layer.name for layer in copy.layers if _is_mixed(layer.dtype_policy)]
    if mixed:  # a policy serialised in a form this does not know
        raise ValueError(
            f"Could not make a float32 copy of {model.name!r}: {mixed[:5]} stay mixed."
        )
    copy.set_weights(model.get_weights())
    return copy
