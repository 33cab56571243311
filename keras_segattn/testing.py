"""The checks every layer and model of the package goes through.

`run_model_test` and `run_layer_test` are what keras-hub's `TestCase` does,
plus builtin-only TFLite parity: config round trip, `.keras` reload,
SavedModel reload, TFLite conversion with `TFLITE_BUILTINS` only, the
fused-kernel and builtin formulations equal (outputs and gradients), a
non-zero gradient for every trainable weight, one `fit` step with
`jit_compile=True`. They refuse a vacuous test first: an output that is
constant over the test inputs would pass every comparison
(`check_not_vacuous`). `check_standard_exports` runs Keras' and
TensorFlow's own converters (`model.export`, `from_keras_model`).
`check_mixed_precision` rebuilds a model under `mixed_float16` and
`mixed_bfloat16` and compares it with float32 (`run_layer_test` always runs
it; the registry's models go through it in `tests/models`).
Each raises `AssertionError` describing the first check that fails.
"""

import copy
import os
import tempfile

import keras
import numpy as np
import tensorflow as tf

from keras_segattn.core.kernels import tflite_builtins_only
from keras_segattn.core.precision import dtype_policy
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
    outputs = run_tflite(convert_to_tflite(model), _named_inputs(model, inputs))
    _assert_all_close(_ordered(outputs), expected, atol, "TFLite (builtin ops)")


def _ordered(outputs):
    """A converted signature's outputs (`output_0`, `output_1`, ...: Keras'
    flatten order) as a list."""
    return [outputs[k] for k in sorted(outputs, key=lambda k: int(k.rsplit("_", 1)[-1]))]


def _named_inputs(model, inputs):
    symbolic = keras.tree.flatten(model.inputs)
    return {t.name: np.asarray(x).astype(t.dtype) for t, x in zip(symbolic, _input_list(inputs))}


def check_standard_exports(model, inputs, expected, directory, atol):
    """The converters a Keras user reaches for, without this package's own:
    `model.export(format="litert")` and `tf.lite.TFLiteConverter
    .from_keras_model` with builtin operators only, each run in
    `ai_edge_litert` (which has no Flex delegate), and `model.export(
    format="onnx")` run in onnxruntime; each within `atol` of `expected`."""
    import onnxruntime

    check_not_vacuous(expected)
    named = _named_inputs(model, inputs)
    litert_path = os.path.join(directory, "model.tflite")
    model.export(litert_path, format="litert", verbose=False)
    with open(litert_path, "rb") as f:
        outputs = run_tflite(f.read(), named)
    _assert_all_close(_ordered(outputs), expected, atol, "model.export(format='litert')")

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    outputs = run_tflite(converter.convert(), named)
    _assert_all_close(_ordered(outputs), expected, atol, "TFLiteConverter.from_keras_model")

    onnx_path = os.path.join(directory, "model.onnx")
    model.export(onnx_path, format="onnx", verbose=False)
    session = onnxruntime.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    feed = dict(zip([i.name for i in session.get_inputs()], named.values()))
    _assert_all_close(session.run(None, feed), expected, atol, "model.export(format='onnx')")


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
                tf.convert_to_tensor(a),
                tf.convert_to_tensor(b),
                atol * 10,
                f"gradient of {name}, builtin vs fused kernels",
            )


def check_not_vacuous(expected):
    """Every float output varies over the test inputs. A constant output
    (a zero-initialised score layer gives all zeros) passes every
    comparison whatever the code computes: the checks would prove nothing."""
    for i, output in enumerate(_as_list(expected)):
        if output.dtype.kind != "f" or output.size < 2:
            continue
        assert np.ptp(output) > 0, (
            f"output {i} is constant ({output.flat[0]!r}) on the test inputs: every check "
            "would pass whatever the code computes. Give the model non-degenerate weights "
            "(model.set_weights(keras_segattn.testing.nonzero_weights(model))) or inputs."
        )


def check_gradients(model, inputs):
    _, weights, gradients = _outputs_and_gradients(model, inputs, training=True)
    for weight, grad in zip(weights, gradients):
        assert grad is not None, f"no gradient reaches {weight.path}"
        assert np.any(tf.convert_to_tensor(grad) != 0), (
            f"the gradient of {weight.path} is zero everywhere: a check of it proves nothing "
            "(a zero-initialised layer after it?). Give the model non-degenerate weights "
            "(keras_segattn.testing.nonzero_weights)."
        )
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


# Largest |mixed - float32| output difference, relative to the output's
# scale (max(1, max |float32 output|)): float16 keeps 11 significant bits,
# bfloat16 8, and a tiny network's few layers add up a few roundings each.
MIXED_PRECISION_RTOL = {"mixed_float16": 1e-2, "mixed_bfloat16": 5e-2}


def nonzero_weights(model, seed=0):
    """The model's weights with every all-zero kernel drawn at random.

    Zero-initialised layers (FCN's score layers, the transformer's
    regression) make the outputs constant, which no precision can get
    wrong: the comparison needs them to depend on the input."""
    rng = np.random.default_rng(seed)
    weights = model.get_weights()
    for i, w in enumerate(weights):
        if w.ndim >= 2 and w.dtype.kind == "f" and not np.any(w):
            weights[i] = rng.normal(0.0, 0.05, w.shape).astype(w.dtype)
    return weights


def check_mixed_precision(build, inputs, fit=None, compared=None, rtol=None):
    """Rebuilds a model under each mixed-precision policy and checks it.

    For `mixed_float16` and `mixed_bfloat16`: every variable is float32,
    every float output is float32, the outputs equal the float32 model's
    (same weights) within `rtol` times the output's scale, and `fit`, when
    given, takes a step with a finite loss and finite weights; under
    `mixed_float16`, with Keras' loss scaling.

    Args:
        build: a zero-argument callable returning a new, built model; it
            is called under each policy.
        inputs: array or list of arrays, a small batch.
        fit: `None` or a callable `fit(model) -> history dict` that
            compiles the model and runs `model.fit` for a step.
        compared: `None` or a callable `compared(model, inputs)` returning
            what to compare, for a model whose outputs are not comparable
            across precisions (a detector ranks the near-tied scores of an
            untrained network: any rounding reorders its boxes). Defaults to
            the model's outputs.
        rtol: dict policy -> float. Defaults to `MIXED_PRECISION_RTOL`.
    """
    rtol = {**MIXED_PRECISION_RTOL, **(rtol or {})}
    custom = compared
    compared = compared or (lambda model, inputs: model(inputs))
    with dtype_policy("float32"):
        reference_model = build()
        weights = nonzero_weights(reference_model)
        reference_model.set_weights(weights)
        expected = _as_list(compared(reference_model, inputs))
    for policy in ("mixed_float16", "mixed_bfloat16"):
        with dtype_policy(policy):
            model = build()
            low = [v.path for v in model.weights if v.dtype != "float32"]
            assert not low, f"{policy}: variables not in float32: {low[:5]}"
            model.set_weights(weights)
            outputs = keras.tree.flatten(model(inputs))
            # The outputs themselves unless a detector compares other ones.
            actual = _as_list(outputs if custom is None else custom(model, inputs))
            assert len(actual) == len(expected), f"{policy}: {len(actual)} outputs"
            low = [str(o.dtype) for o in outputs if o.dtype.is_floating and o.dtype != tf.float32]
            assert not low, f"{policy}: float outputs must be float32; got {low}"
            for i, (a, e) in enumerate(zip(actual, expected)):
                scale = max(1.0, float(np.max(np.abs(e)))) if e.size else 1.0
                _assert_all_close([a], [e], rtol[policy] * scale, f"{policy} output {i}")
            if fit is not None:
                history = fit(model)
                if policy == "mixed_float16":
                    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer), (
                        "mixed_float16 training must scale the loss"
                    )
                losses = [v[-1] for k, v in history.items() if k.endswith("loss")]
                assert losses and np.all(np.isfinite(losses)), f"{policy} fit: {history}"
                for v in model.trainable_variables:
                    assert np.all(np.isfinite(v.numpy())), f"{policy} fit: {v.path} non-finite"


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
    check_not_vacuous(expected)
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


def _float32_head(model):
    outputs = [
        keras.layers.Activation("linear", dtype="float32")(o)
        if keras.backend.is_float_dtype(o.dtype)
        else o
        for o in keras.tree.flatten(model.outputs)
    ]
    return keras.Model(model.inputs, outputs)


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

    def wrap(layer):
        symbolic = [
            keras.Input(
                shape=np.asarray(x).shape[1:], dtype=str(np.asarray(x).dtype), name=f"input_{i}"
            )
            for i, x in enumerate(_input_list(inputs))
        ]
        symbolic_inputs = symbolic if isinstance(inputs, (list, tuple)) else symbolic[0]
        return keras.Model(symbolic_inputs, layer(symbolic_inputs))

    model = wrap(layer)
    # A zero-initialised kernel (the spatial transformer's regression, which
    # starts at the identity) makes outputs constant and gradients zero:
    # the checks need weights that every output depends on.
    model.set_weights(nonzero_weights(model))
    symbolic_outputs = model.outputs
    eager = model(inputs)
    for s, e in zip(keras.tree.flatten(symbolic_outputs), _as_list(eager)):
        assert tuple(s.shape[1:]) == e.shape[1:], f"symbolic shape {s.shape} vs eager {e.shape}"
    if expected_output_shape is not None:
        shapes = [e.shape for e in _as_list(eager)]
        expected = expected_output_shape
        if not isinstance(expected[0], (list, tuple)):
            expected = [expected]
        assert shapes == [tuple(s) for s in expected], f"output shapes {shapes} != {expected}"
    outputs = run_model_test(model, inputs, **kwargs)
    # A layer's outputs are its compute dtype: float32 outputs are the
    # model's business, so a float32 layer on top stands in for the head.
    check_mixed_precision(lambda: _float32_head(wrap(layer_cls(**init_kwargs))), inputs)
    return outputs
