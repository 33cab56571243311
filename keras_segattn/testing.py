"""The checks every layer and model of the package goes through.

`run_model_test` and `run_layer_test` are what keras-hub's `TestCase` does,
plus builtin-only TFLite parity: config round trip, `.keras` reload,
SavedModel reload, TFLite conversion with `TFLITE_BUILTINS` only, the
fused-kernel and builtin formulations equal (outputs and gradients), a
gradient for every trainable weight, one `fit` step with `jit_compile=True`.
Each raises `AssertionError` describing the first check that fails.
"""

import copy
import os
import tempfile

import keras
import numpy as np
import tensorflow as tf

from keras_segattn.core.kernels import tflite_builtins_only
from keras_segattn.export.tflite import convert_to_tflite, run_tflite


def _as_list(outputs):
    return [keras.ops.convert_to_numpy(o) for o in keras.tree.flatten(outputs)]


def _assert_all_close(actual, expected, atol, what):
    actual, expected = _as_list(actual), _as_list(expected)
    assert len(actual) == len(expected), f"{what}: {len(actual)} outputs, expected {len(expected)}"
    for i, (a, e) in enumerate(zip(actual, expected)):
        assert a.shape == e.shape, f"{what}: output {i} shape {a.shape} != {e.shape}"
        if np.issubdtype(e.dtype, np.integer):
            mismatch = np.mean(a != e)
            assert mismatch == 0, f"{what}: output {i} differs in {mismatch:.2%} of entries"
        else:
            diff = float(np.max(np.abs(a.astype(np.float64) - e))) if e.size else 0.0
            assert diff <= atol, f"{what}: output {i} max |diff| {diff:.3g} > {atol}"


def _input_list(inputs):
    return inputs if isinstance(inputs, (list, tuple)) else [inputs]


def _float_outputs(model):
    outputs = keras.tree.flatten(model.outputs)
    return [o for o in outputs if keras.backend.is_float_dtype(o.dtype)]


def check_config_round_trip(model, inputs, atol):
    config = model.get_config()
    # from_config consumes entries of the dict it is given.
    clone = model.__class__.from_config(copy.deepcopy(config))
    assert clone.get_config() == config, "config round trip changed the config"
    clone.set_weights(model.get_weights())
    _assert_all_close(clone(inputs), model(inputs), atol, "from_config clone")


def check_keras_reload(model, inputs, expected, directory, atol):
    path = os.path.join(directory, "model.keras")
    model.save(path)
    reloaded = keras.saving.load_model(path)
    _assert_all_close(reloaded(inputs), expected, atol, ".keras reload")


def check_saved_model(model, inputs, expected, directory, atol):
    """Exports with `model.export`, reloads, compares; returns the path."""
    path = os.path.join(directory, "saved_model")
    model.export(path, format="tf_saved_model", verbose=False)
    reloaded = tf.saved_model.load(path)
    _assert_all_close(reloaded.serve(inputs), expected, atol, "SavedModel reload")
    return path


def check_tflite(model, inputs, expected, atol):
    flatbuffer = convert_to_tflite(model)
    symbolic = keras.tree.flatten(model.inputs)
    named = {t.name: np.asarray(x).astype(t.dtype) for t, x in zip(symbolic, _input_list(inputs))}
    outputs = run_tflite(flatbuffer, named)
    # The signature names outputs output_0, output_1, ... in flatten order.
    ordered = [outputs[k] for k in sorted(outputs, key=lambda k: int(k.rsplit("_", 1)[-1]))]
    _assert_all_close(ordered, expected, atol, "TFLite (builtin ops)")


def _outputs_and_gradients(model, inputs, training):
    """The model's outputs on `inputs` and the gradients of a random
    projection of its float outputs, for every trainable weight and float
    input (`None` where none flows)."""
    tensors = [tf.convert_to_tensor(x) for x in _input_list(inputs)]
    float_inputs = [t for t in tensors if t.dtype.is_floating]
    call_inputs = tensors if isinstance(inputs, (list, tuple)) else tensors[0]
    with tf.GradientTape() as tape:
        tape.watch(float_inputs)
        all_outputs = keras.tree.flatten(model(call_inputs, training=training))
        outputs = [o for o in all_outputs if o.dtype.is_floating]
        # A random projection: unlike a sum of squares, its gradient is not
        # zero when the outputs are (FCN's zero-initialised score layers).
        loss = sum(
            tf.reduce_sum(tf.cast(o, tf.float32) * tf.random.stateless_normal(tf.shape(o), (0, i)))
            for i, o in enumerate(outputs)
        )
    weights = list(model.trainable_variables)
    return all_outputs, weights, tape.gradient(loss, weights + float_inputs)


def check_kernel_parity(model, inputs, atol):
    """The TensorFlow formulation (fused kernels) and the TFLite one
    (builtins, `tflite_builtins_only`) give the same outputs and gradients.
    In inference mode, where no dropout draws differ between the two calls
    (and where the spatial transformer's sampler is fused)."""
    fused, weights, fused_gradients = _outputs_and_gradients(model, inputs, training=False)
    with tflite_builtins_only():
        builtin, _, builtin_gradients = _outputs_and_gradients(model, inputs, training=False)
    _assert_all_close(builtin, fused, atol, "builtin vs fused kernels")
    names = [w.path for w in weights] + [f"input {i}" for i in range(len(fused_gradients))]
    for name, a, b in zip(names, builtin_gradients, fused_gradients):
        assert (a is None) == (b is None), f"gradient of {name}: only one formulation has one"
        if a is not None:
            _assert_all_close(
                tf.convert_to_tensor(a), tf.convert_to_tensor(b), atol * 10,
                f"gradient of {name}, builtin vs fused kernels",
            )  # fmt: skip


def check_gradients(model, inputs):
    _, weights, gradients = _outputs_and_gradients(model, inputs, training=True)
    for weight, grad in zip(weights, gradients):
        assert grad is not None, f"no gradient reaches {weight.path}"
    # An input may legitimately carry no gradient (a shape reference, say),
    # but something must.
    # Embedding gradients come as IndexedSlices.
    present = [tf.convert_to_tensor(g) for g in gradients if g is not None]
    assert present, "no gradient reaches any weight or input"
    for grad in present:
        assert np.all(np.isfinite(grad)), "non-finite gradient"
    assert any(np.any(g != 0) for g in present), "every gradient is zero"


def check_jit_fit_step(model, inputs, targets, loss):
    model.compile(optimizer="sgd", loss=loss, jit_compile=True)
    history = model.fit(
        inputs, targets, batch_size=len(_input_list(inputs)[0]), epochs=1, verbose=0
    )
    value = history.history["loss"][0]
    assert np.isfinite(value), f"jit_compile fit step gave loss {value}"


def run_model_test(
    model,
    inputs,
    targets=None,
    loss="mse",
    atol=1e-5,
    tflite_atol=None,
    tflite=True,
    fit=True,
):
    """Runs every shared check on a functional `model`.

    Args:
        model: `keras.Model`.
        inputs: array or list of arrays, a small batch.
        targets: what `fit` trains towards; defaults to zeros like each float
            output (enough to take one step).
        loss: loss for the `fit` step. Defaults to `"mse"`.
        atol: float. Tolerance of every reload comparison.
        tflite_atol: float. Tolerance of TFLite parity. Defaults to `atol`.
        tflite: bool. Run the TFLite check. Defaults to `True`.
        fit: bool. Run the gradient and `fit` checks. Defaults to `True`.
    """
    expected = model(inputs)
    check_config_round_trip(model, inputs, atol)
    with tempfile.TemporaryDirectory() as directory:
        check_keras_reload(model, inputs, expected, directory, atol)
        check_saved_model(model, inputs, expected, directory, atol)
    if tflite:
        check_tflite(model, inputs, expected, tflite_atol or atol)
    check_kernel_parity(model, inputs, tflite_atol or atol)
    if fit:
        check_gradients(model, inputs)
        float_outputs = _float_outputs(model)
        trainable = model
        if len(float_outputs) != len(keras.tree.flatten(model.outputs)):
            trainable = keras.Model(model.input, float_outputs)
        if targets is None:
            targets = [np.zeros_like(o) for o in _as_list(trainable(inputs))]
            targets = targets[0] if len(targets) == 1 else targets
        check_jit_fit_step(trainable, inputs, targets, loss)
    return expected


def run_layer_test(layer_cls, init_kwargs, inputs, expected_output_shape=None, **kwargs):
    """Wraps `layer_cls(**init_kwargs)` in a functional model and checks it.

    Also checks that the layer's own config round-trips and that its
    symbolic output shape matches the eager one.

    Args:
        layer_cls: a Keras layer class.
        init_kwargs: dict. Constructor arguments.
        inputs: array or list of arrays. Float inputs get gradients checked.
        expected_output_shape: shape or list of shapes of the eager output.
        **kwargs: passed to `run_model_test`.

    Returns:
        The layer's eager output on `inputs`.
    """
    layer = layer_cls(**init_kwargs)
    config = layer.get_config()
    assert layer_cls.from_config(copy.deepcopy(config)).get_config() == config, (
        "layer config round trip"
    )
    symbolic = [
        keras.Input(
            shape=np.asarray(x).shape[1:], dtype=str(np.asarray(x).dtype), name=f"input_{i}"
        )
        for i, x in enumerate(_input_list(inputs))
    ]
    symbolic_inputs = symbolic if isinstance(inputs, (list, tuple)) else symbolic[0]
    symbolic_outputs = layer(symbolic_inputs)
    model = keras.Model(symbolic_inputs, symbolic_outputs)
    eager = model(inputs)
    for s, e in zip(keras.tree.flatten(symbolic_outputs), _as_list(eager)):
        assert tuple(s.shape[1:]) == e.shape[1:], f"symbolic shape {s.shape} vs eager {e.shape}"
    if expected_output_shape is not None:
        shapes = [e.shape for e in _as_list(eager)]
        expected = expected_output_shape
        if not isinstance(expected[0], (list, tuple)):
            expected = [expected]
        assert shapes == [tuple(s) for s in expected], f"output shapes {shapes} != {expected}"
    return run_model_test(model, inputs, **kwargs)
