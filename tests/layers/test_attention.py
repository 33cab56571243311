import copy

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_segattn.layers import BahdanauVisualAttention
from keras_segattn.testing import run_model_test
from tests.references import bahdanau_attention_reference

BATCH, LOCATIONS, FEATURES, HIDDEN, UNITS = 2, 6, 4, 5, 3


def make_inputs(rng, batch=BATCH, locations=LOCATIONS, dtype="float32"):
    annotations = rng.normal(size=(batch, locations, FEATURES)).astype(dtype)
    hidden = rng.normal(size=(batch, HIDDEN)).astype(dtype)
    return annotations, hidden


def make_mask(batch=BATCH, locations=LOCATIONS):
    # Row n keeps its first locations - 2n locations: rows of different lengths.
    return np.arange(locations)[None, :] < (locations - 2 * np.arange(batch))[:, None]


def make_layer(rng, gating, dtype=None, **kwargs):
    """A built layer with random biases, so every weight moves the output."""
    layer = BahdanauVisualAttention(UNITS, gating=gating, dtype=dtype, **kwargs)
    layer.build((None, LOCATIONS, FEATURES), (None, HIDDEN))
    for weight in layer.weights:
        weight.assign(rng.normal(scale=0.7, size=weight.shape))
    return layer


def reference(layer, annotations, hidden, mask=None):
    gate = (layer.gate_kernel, layer.gate_bias) if layer.gating else (None, None)
    return bahdanau_attention_reference(
        annotations,
        hidden,
        layer.annotation_kernel.numpy(),
        layer.hidden_kernel.numpy(),
        layer.bias.numpy(),
        layer.score_kernel.numpy(),
        *(None if g is None else g.numpy() for g in gate),
        mask=mask,
    )


@pytest.mark.parametrize("gating", [False, True])
@pytest.mark.parametrize("masked", [False, True])
def test_matches_numpy_reference(rng, gating, masked):
    annotations, hidden = make_inputs(rng)
    layer = make_layer(rng, gating)
    mask = make_mask() if masked else None
    context, weights = layer(annotations, hidden, mask=mask)
    expected_context, expected_weights = reference(layer, annotations, hidden, mask)
    np.testing.assert_allclose(context, expected_context, atol=1e-5)
    np.testing.assert_allclose(weights, expected_weights, atol=1e-5)
    np.testing.assert_allclose(np.sum(weights, axis=-1), 1.0, atol=1e-6)
    if masked:
        np.testing.assert_array_equal(np.asarray(weights)[~mask], 0.0)
        assert np.all(np.asarray(weights)[mask] > 0)
    # The random weights keep the attention away from uniform.
    assert np.ptp(np.asarray(weights)[0, :4]) > 0.02


def test_gating_scales_the_context_by_beta(rng):
    annotations, hidden = make_inputs(rng)
    gated = make_layer(rng, gating=True)
    plain = BahdanauVisualAttention(UNITS)
    plain.build(annotations.shape, hidden.shape)
    plain.set_weights(gated.get_weights()[:4])
    context, weights = gated(annotations, hidden)
    plain_context, plain_weights = plain(annotations, hidden)
    np.testing.assert_array_equal(weights, plain_weights)
    beta = 1.0 / (1.0 + np.exp(-(hidden @ gated.gate_kernel.numpy() + gated.gate_bias.numpy())))
    np.testing.assert_allclose(context, plain_context * beta, atol=1e-6)


def test_mask_dtypes_and_fully_padded_rows(rng):
    annotations, hidden = make_inputs(rng, batch=3)
    layer = make_layer(rng, gating=True)
    mask = make_mask(batch=3)
    expected = layer(annotations, hidden, mask=mask)
    for other in (mask.astype("float32"), mask.astype("int32"), tf.constant(mask)):
        for a, e in zip(layer(annotations, hidden, mask=other), expected):
            np.testing.assert_array_equal(a, e)
    # A row with no valid location: zero weights and context, no NaN.
    mask[1] = False
    context, weights = layer(annotations, hidden, mask=mask)
    np.testing.assert_array_equal(weights[1], 0.0)
    np.testing.assert_array_equal(context[1], 0.0)
    expected_context, expected_weights = reference(layer, annotations, hidden, mask)
    np.testing.assert_allclose(context, expected_context, atol=1e-5)
    np.testing.assert_allclose(weights, expected_weights, atol=1e-5)


@pytest.mark.parametrize("gating", [False, True])
def test_project_then_attend_equals_call(rng, gating):
    annotations, _ = make_inputs(rng)
    layer = make_layer(rng, gating)
    mask = make_mask()
    projected = layer.project_annotations(annotations)
    assert projected.shape == (BATCH, LOCATIONS, UNITS)
    np.testing.assert_allclose(projected, annotations @ layer.annotation_kernel.numpy(), atol=1e-6)
    # A decoder projects once and attends at every step with a new state.
    for _ in range(3):
        hidden = rng.normal(size=(BATCH, HIDDEN)).astype("float32")
        stepped = layer.attend(annotations, projected, hidden, mask=mask)
        called = layer(annotations, hidden, mask=mask)
        for a, e in zip(stepped, called):
            np.testing.assert_array_equal(a, e)


def test_dynamic_batch_and_locations(rng):
    layer = BahdanauVisualAttention(UNITS, gating=True)
    annotations_in = keras.Input((None, FEATURES))
    hidden_in = keras.Input((HIDDEN,))
    mask_in = keras.Input((None,), dtype="bool")
    context, weights = layer(annotations_in, hidden_in, mask=mask_in)
    assert context.shape == (None, FEATURES) and weights.shape == (None, None)
    model = keras.Model([annotations_in, hidden_in, mask_in], [context, weights])
    for batch, locations in ((1, 6), (3, 2), (2, 9)):
        annotations, hidden = make_inputs(rng, batch, locations)
        mask = make_mask(batch, locations + 2 * batch)[:, :locations]
        context, weights = model([annotations, hidden, mask])
        expected_context, expected_weights = reference(layer, annotations, hidden, mask)
        np.testing.assert_allclose(context, expected_context, atol=1e-5)
        np.testing.assert_allclose(weights, expected_weights, atol=1e-5)


@pytest.mark.parametrize("gating, masked", [(False, False), (True, True)])
def test_layer_passes_shared_checks(rng, gating, masked):
    # `run_layer_test` calls a layer on one (possibly list) argument; this
    # layer takes (annotations, hidden, mask=...), so the functional model
    # is built here and the layer-level checks of run_layer_test repeated.
    init_kwargs = {"units": UNITS, "gating": gating}
    layer = BahdanauVisualAttention(**init_kwargs)
    config = layer.get_config()
    assert BahdanauVisualAttention.from_config(copy.deepcopy(config)).get_config() == config
    annotations, hidden = make_inputs(rng)
    inputs = [annotations, hidden]
    symbolic = [
        keras.Input((LOCATIONS, FEATURES), name="annotations"),
        keras.Input((HIDDEN,), name="hidden"),
    ]
    mask_kwargs = {}
    if masked:
        inputs.append(make_mask())
        symbolic.append(keras.Input((LOCATIONS,), dtype="bool", name="mask"))
        mask_kwargs["mask"] = symbolic[2]
    outputs = layer(symbolic[0], symbolic[1], **mask_kwargs)
    model = keras.Model(symbolic, outputs)
    for weight in layer.weights:
        weight.assign(rng.normal(scale=0.7, size=weight.shape))
    context, weights = run_model_test(model, inputs)
    assert [tuple(o.shape) for o in outputs] == [(None, FEATURES), (None, LOCATIONS)]
    assert context.shape == (BATCH, FEATURES) and weights.shape == (BATCH, LOCATIONS)
    assert len(layer.trainable_weights) == (6 if gating else 4)


def test_gradients_reach_every_weight_and_the_inputs(rng):
    annotations, hidden = (tf.constant(x) for x in make_inputs(rng))
    layer = make_layer(rng, gating=True)
    with tf.GradientTape() as tape:
        tape.watch([annotations, hidden])
        context, weights = layer(annotations, hidden, mask=make_mask())
        loss = tf.reduce_sum(context * rng.normal(size=context.shape)) + tf.reduce_sum(
            weights * rng.normal(size=weights.shape)
        )
    variables = layer.trainable_weights
    gradients = tape.gradient(loss, variables + [annotations, hidden])
    assert len(variables) == 6
    for target, grad in zip([v.path for v in variables] + ["annotations", "hidden"], gradients):
        assert grad is not None, f"no gradient reaches {target}"
        assert np.all(np.isfinite(grad)) and np.any(np.asarray(grad) != 0), target
    # Padded locations influence nothing.
    grad_annotations = np.asarray(gradients[-2])
    np.testing.assert_array_equal(grad_annotations[~make_mask()], 0.0)


def test_gradients_match_finite_differences(rng):
    annotations, hidden = make_inputs(rng, dtype="float64")
    layer = make_layer(rng, gating=True, dtype="float64")
    mask = make_mask()
    r_context = rng.normal(size=(BATCH, FEATURES))
    r_weights = rng.normal(size=(BATCH, LOCATIONS))

    def loss_reference(a, h):
        context, weights = reference(layer, a, h, mask)
        return np.sum(context * r_context) + np.sum(weights * r_weights)

    a_t, h_t = tf.constant(annotations), tf.constant(hidden)
    with tf.GradientTape() as tape:
        tape.watch([a_t, h_t])
        context, weights = layer(a_t, h_t, mask=mask)
        loss = tf.reduce_sum(context * r_context) + tf.reduce_sum(weights * r_weights)
    grad_a, grad_h = tape.gradient(loss, [a_t, h_t])

    def numeric(array, loss_of):
        eps, grad = 1e-6, np.zeros_like(array)
        for index in np.ndindex(array.shape):
            plus, minus = array.copy(), array.copy()
            plus[index] += eps
            minus[index] -= eps
            grad[index] = (loss_of(plus) - loss_of(minus)) / (2 * eps)
        return grad

    expected_a = numeric(annotations, lambda a: loss_reference(a, hidden))
    expected_h = numeric(hidden, lambda h: loss_reference(annotations, h))
    np.testing.assert_allclose(grad_a, expected_a, atol=1e-6)
    np.testing.assert_allclose(grad_h, expected_h, atol=1e-6)


def test_mixed_float16(rng):
    annotations, hidden = make_inputs(rng)
    layer = make_layer(rng, gating=True, dtype="mixed_float16")
    mask = make_mask()
    assert all(w.dtype == "float32" for w in layer.weights)
    context, weights = layer(annotations, hidden, mask=mask)
    assert context.dtype == tf.float16 and weights.dtype == tf.float16
    # The float16 padding bias is finite: no NaN, padding still exactly 0.
    assert np.all(np.isfinite(context)) and np.all(np.isfinite(weights))
    np.testing.assert_array_equal(np.asarray(weights)[~mask], 0.0)
    expected_context, expected_weights = reference(layer, annotations, hidden, mask)
    np.testing.assert_allclose(np.asarray(context, np.float32), expected_context, atol=2e-2)
    np.testing.assert_allclose(np.asarray(weights, np.float32), expected_weights, atol=1e-2)
    # The two halves, called outside __call__, also compute in float16.
    projected = layer.project_annotations(annotations)
    assert projected.dtype == tf.float16
    stepped = layer.attend(annotations, projected, hidden, mask=mask)
    assert all(s.dtype == tf.float16 for s in stepped)
    for a, e in zip(stepped, (context, weights)):
        np.testing.assert_array_equal(a, e)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf.cast(layer(annotations, hidden, mask=mask)[0], tf.float32))
    assert all(g is not None for g in tape.gradient(loss, layer.trainable_weights))


def test_output_shape_and_config():
    layer = BahdanauVisualAttention(7, gating=True, name="attend")
    assert layer.compute_output_shape((None, 196, 512), (None, 256)) == (
        (None, 512),
        (None, 196),
    )
    assert layer.compute_output_shape((4, None, 8), (4, 3)) == ((4, 8), (4, None))
    config = layer.get_config()
    assert config["units"] == 7 and config["gating"] is True
    clone = BahdanauVisualAttention.from_config(config)
    assert (clone.units, clone.gating, clone.name) == (7, True, "attend")
    assert (
        keras.saving.get_registered_object("keras_segattn>BahdanauVisualAttention")
        is BahdanauVisualAttention
    )


@pytest.mark.parametrize("units", [0, -3, 2.5, "4", True, None])
def test_bad_units(units):
    with pytest.raises(ValueError, match="units"):
        BahdanauVisualAttention(units)


def test_bad_shapes_raise_clear_errors(rng):
    annotations, hidden = make_inputs(rng)
    with pytest.raises(ValueError, match=r"annotations must be 3-D.*\(2, 24\)"):
        BahdanauVisualAttention(UNITS)(annotations.reshape(BATCH, -1), hidden)
    with pytest.raises(ValueError, match=r"hidden must be 2-D.*\(2, 5, 1\)"):
        BahdanauVisualAttention(UNITS)(annotations, hidden[..., None])
    with pytest.raises(ValueError, match="known feature size"):
        BahdanauVisualAttention(UNITS)(keras.Input((6, None)), keras.Input((HIDDEN,)))
    with pytest.raises(ValueError, match=r"same batch size.*hidden with shape \(3, 5\)"):
        BahdanauVisualAttention(UNITS)(annotations, make_inputs(rng, batch=3)[1])
    with pytest.raises(ValueError, match="call the layer"):
        BahdanauVisualAttention(UNITS).project_annotations(annotations)

    layer = make_layer(rng, gating=False)
    with pytest.raises(ValueError, match=r"mask must have shape.*got mask with shape \(2, 5\)"):
        layer(annotations, hidden, mask=np.ones((BATCH, LOCATIONS - 1), bool))
    with pytest.raises(ValueError, match=r"got mask with shape \(3, 6\)"):
        layer(annotations, hidden, mask=np.ones((3, LOCATIONS), bool))
    with pytest.raises(ValueError, match=r"got mask with shape \(2, 6, 1\)"):
        layer(annotations, hidden, mask=np.ones((BATCH, LOCATIONS, 1), bool))
    # A built layer checks the sizes it was built for.
    with pytest.raises(ValueError, match=r"annotations must have shape.*4\).*\(2, 6, 3\)"):
        layer(annotations[..., :3], hidden)
    with pytest.raises(ValueError, match=r"hidden must have shape.*5\).*\(2, 4\)"):
        layer(annotations, hidden[:, :4])
    projected = layer.project_annotations(annotations)
    with pytest.raises(ValueError, match=r"projected must have shape.*\(2, 5, 3\)"):
        layer.attend(annotations, projected[:, :5], hidden)
