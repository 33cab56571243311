"""The two formulations of each layer: TensorFlow's fused kernels (TF,
SavedModels) and the builtin ones (the TFLite trace), equal forward and
backward on the edge cases; and the switch that picks between them."""

import contextlib
import threading

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_segattn.core.kernels import (
    fused_kernels,
    in_tensorflow,
    tensorflow_kernels,
    tflite_builtins_only,
    tracing_for_tflite,
)
from keras_segattn.export import convert_to_tflite, run_tflite
from keras_segattn.layers import (
    MaxPoolingWithArgmax2D,
    StrideOneConv2DTranspose,
    replicate,
    roi_align,
    sample_affine,
)
from keras_segattn.layers.max_pooling_with_argmax import (
    builtin_max_pool_with_argmax,
    fused_max_pool_with_argmax,
)
from keras_segattn.testing import run_layer_test
from tests.layers.test_roi_align import make_boxes


def both(fn, *tensors):
    """`(fused, builtin)`: each `(outputs, gradients w.r.t. tensors)` of a
    random projection of `fn(*tensors)`'s float outputs."""
    results = []
    for builtin in (False, True):
        with tf.GradientTape() as tape:
            tape.watch(tensors)
            if builtin:
                with tflite_builtins_only():
                    outputs = fn(*tensors)
            else:
                outputs = fn(*tensors)
            flat = [o for o in tf.nest.flatten(outputs) if o.dtype.is_floating]
            loss = sum(
                tf.reduce_sum(o * tf.random.stateless_normal(tf.shape(o), (3, i)))
                for i, o in enumerate(flat)
            )
        gradients = tape.gradient(loss, list(tensors))
        results.append(([np.asarray(o) for o in tf.nest.flatten(outputs)], gradients))
    return results


def assert_same(fn, *tensors, atol=1e-5):
    (fused, fused_grads), (builtin, builtin_grads) = both(fn, *tensors)
    for a, b in zip(fused, builtin):
        np.testing.assert_allclose(a, b, atol=atol, rtol=0)
    for a, b in zip(fused_grads, builtin_grads):
        assert (a is None) == (b is None)
        if a is not None:
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=10 * atol, rtol=1e-5)
    return fused


def test_the_switch_nests_restores_and_is_per_thread():
    assert fused_kernels() and not tracing_for_tflite()
    with tflite_builtins_only():
        assert tracing_for_tflite() and not fused_kernels()
        with tflite_builtins_only():
            assert tracing_for_tflite()
        assert tracing_for_tflite()
        seen = []
        thread = threading.Thread(target=lambda: seen.append(tracing_for_tflite()))
        thread.start()
        thread.join()
        assert seen == [False]
    assert not tracing_for_tflite()
    with pytest.raises(RuntimeError):
        with tflite_builtins_only():
            raise RuntimeError("boom")
    assert not tracing_for_tflite()


class RecordsTheSwitch(keras.layers.Layer):
    """Records `fused_kernels()` each time its `call` is traced or run."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.seen = []

    def call(self, x):
        # Keras infers some output shapes in a scratch graph that never runs.
        graph = getattr(tf.compat.v1.get_default_graph(), "name", "")
        if not graph.startswith("scratch_graph"):
            self.seen.append(fused_kernels())
        return x


def recording_model(strategy=None):
    with strategy.scope() if strategy else contextlib.nullcontext():
        inputs = keras.Input((4,))
        switch = RecordsTheSwitch()
        model = keras.Model(inputs, keras.layers.Dense(1)(switch(inputs)))
        model.compile("sgd", "mse", steps_per_execution=2 if strategy else 1)
    return model, switch


@pytest.mark.parametrize("strategy", [None, "mirrored"])
def test_keras_own_steps_and_eager_calls_take_the_fused_kernels(strategy):
    # The step functions are found by their (private) graph names: if Keras
    # renames them, this fails, rather than fit silently slowing down.
    strategy = tf.distribute.MirroredStrategy(["CPU:0"]) if strategy else None
    model, switch = recording_model(strategy)
    x, y = np.ones((8, 4), "float32"), np.ones((8, 1), "float32")
    for run in (
        lambda: model.fit(x, y, batch_size=2, epochs=1, verbose=0),
        lambda: model.evaluate(x, y, batch_size=2, verbose=0),
        lambda: model.predict(x, batch_size=2, verbose=0),
        lambda: model.predict_on_batch(x),
        lambda: model(x),
    ):
        switch.seen.clear()
        run()
        assert switch.seen and all(switch.seen), switch.seen


def test_any_other_trace_takes_the_portable_formulation(tmp_path):
    # What a user converts (model.export, TFLiteConverter.from_keras_model,
    # a tf.function of their own) gets builtin operators without asking.
    model, switch = recording_model()
    x = np.ones((2, 4), "float32")
    tf.function(model)(x)
    model.export(str(tmp_path / "saved_model"), verbose=False)
    assert switch.seen and not any(switch.seen), switch.seen
    switch.seen.clear()
    tf.function(in_tensorflow(model))(x)
    with tensorflow_kernels():
        tf.function(model)(x)
        with tflite_builtins_only():  # TFLite wins
            tf.function(model)(x[:1])
    assert switch.seen == [True, True, False], switch.seen


def test_roi_align_calls_crop_and_resize_where_fused(rng):
    features = tf.constant(rng.normal(size=(1, 8, 8, 2)).astype("float32"))
    boxes = tf.constant([[[1.0, 1.0, 6.0, 5.0]]])

    def ops(fn):
        graph = tf.function(fn).get_concrete_function(features, boxes).graph
        return {op.type for op in graph.get_operations()}

    assert "CropAndResize" in ops(in_tensorflow(lambda f, b: roi_align(f, b, 2)))
    assert "CropAndResize" not in ops(lambda f, b: roi_align(f, b, 2))


def test_xla_compilation_takes_the_builtin_formulations(rng):
    # XLA has no kernel for the fused ops: a jit-compiled function must not
    # reach them (this would fail to compile otherwise).
    x = tf.constant(rng.normal(size=(1, 6, 6, 2)).astype("float32"))
    seen = []

    @tf.function(jit_compile=True)
    def pooled(x):
        seen.append(fused_kernels())
        return MaxPoolingWithArgmax2D()(x)[0]

    np.testing.assert_array_equal(pooled(x), tf.nn.max_pool2d(x, 2, 2, "VALID"))
    assert seen == [False]


@pytest.mark.parametrize(
    "shape, pool_size, padding",
    [
        ((2, 7, 9, 3), (2, 2), "valid"),  # odd sizes: the last row and column dropped
        ((2, 7, 9, 3), (2, 2), "same"),  # odd sizes: padded at the bottom and right
        ((1, 6, 6, 2), (3, 2), "valid"),
        ((1, 7, 8, 2), (3, 3), "same"),  # TF would pad the top: the builtin path runs
    ],
)
@pytest.mark.parametrize("ties", [False, True])
def test_pooling_with_switches_fused_equals_builtin(rng, shape, pool_size, padding, ties):
    values = rng.integers(0, 3, shape) if ties else rng.normal(size=shape)
    x = tf.constant(values.astype("float32"))
    pool = MaxPoolingWithArgmax2D(pool_size, padding)
    fused = assert_same(lambda x: pool(x), x, atol=0)
    if ties:
        # The first maximum of each window wins, in the switches and the gradient.
        pooled, switches = fused_max_pool_with_argmax(x, (2, 2), "valid")
        reference = builtin_max_pool_with_argmax(x, (2, 2), "valid")
        np.testing.assert_array_equal(switches, reference[1])
    assert fused[1].dtype == np.int32


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"aligned": False},
        {"sampling_ratio": 1, "output_size": 3},
        {"sampling_ratio": 3, "output_size": (2, 5)},
    ],
)
def test_roi_align_fused_equals_builtin_on_the_edge_cases(rng, kwargs):
    features = tf.constant(rng.normal(size=(2, 9, 11, 6)).astype("float32"))
    boxes = make_boxes(rng, 2, 9, 11, 1 / 16)  # on, across and beyond the border
    boxes[0, 0] = [np.nan, 1, 5, 5]  # non-finite: reads nothing
    boxes[1, 0] = [50, 40, 20, 10]  # x2 < x1: the zero-size box at (x1, y1)
    boxes[1, 1] = [8, 8, 8, 8]  # zero size
    boxes = tf.constant(boxes)
    # Gradients to the features here: a box derivative at a sample that lands
    # on a cell centre is a kink, where float rounding picks the side (the
    # shared helper compares box gradients on random boxes).
    out = assert_same(lambda f: roi_align(f, boxes, spatial_scale=1 / 16, **kwargs), features)
    assert np.all(out[0][0, 0] == 0)


def test_class_specific_roi_align_fused_equals_builtin(rng):
    features = tf.constant(rng.normal(size=(2, 9, 11, 12)).astype("float32"))
    boxes = tf.constant(make_boxes(rng, 2, 9, 11, 1 / 16, num_random=3))
    groups = rng.integers(-1, 5, size=boxes.shape[:2]).astype("int32")  # some out of range
    out = assert_same(
        lambda f, b: roi_align(f, b, 4, 2, 1 / 16, groups=groups, num_groups=4), features, boxes
    )
    assert out[0].shape == (2, 11, 4, 4, 3)
    assert np.all(out[0][(groups < 0) | (groups >= 4)] == 0)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_roi_align_fused_in_low_precision(rng, dtype):
    features = rng.normal(size=(1, 9, 11, 4)).astype("float32")
    boxes = make_boxes(rng, 1, 9, 11, 1 / 16, num_random=2)
    low = roi_align(tf.cast(features, dtype), boxes, 3, spatial_scale=1 / 16)
    assert low.dtype == dtype
    np.testing.assert_allclose(
        tf.cast(low, "float32"), roi_align(features, boxes, 3, spatial_scale=1 / 16), atol=0.05
    )


@pytest.mark.parametrize("out_size", [(9, 12), (5, 7), (1, 4), (1, 1), (20, 3)])
def test_affine_sampler_fused_equals_builtin(rng, out_size):
    images = tf.constant(rng.normal(size=(5, 9, 12, 3)).astype("float32"))
    theta = np.tile([[1.0, 0, 0, 0, 1, 0]], (5, 1))
    theta[1] = [0.8, 0.3, 0.5, -0.2, 1.1, -0.9]  # partly outside
    theta[2] = [1, 0, 1.5, 0, 1, 0]  # mostly outside
    theta[3] = [-1, 0, 0, 0, -1, 0]  # a half turn
    theta[4] = [0.5, 0.1, 0.05, 0.2, 0.6, 0.1]
    theta = tf.constant(theta.astype("float32"))
    out = assert_same(lambda i, t: sample_affine(i, t, *out_size), images, theta)
    if out_size == (9, 12):
        # The identity warp returns its input exactly, in the fused kernel too.
        np.testing.assert_array_equal(out[0][0], images[0])
        np.testing.assert_array_equal(out[0][3], images[3][::-1, ::-1])


def test_affine_sampler_in_training_runs_the_gather_sampler(rng):
    images = tf.constant(rng.normal(size=(2, 6, 6, 1)).astype("float32"))
    theta = tf.constant([[0.9, 0.1, 0.1, 0.0, 1.1, -0.2]] * 2, tf.float32)
    graph = tf.function(
        in_tensorflow(lambda i, t, training: sample_affine(i, t, 6, 6, training=training))
    )
    ops = {
        training: {
            op.type
            for op in graph.get_concrete_function(images, theta, training).graph.get_operations()
        }
        for training in (False, True)
    }
    assert "ImageProjectiveTransformV3" in ops[False]
    assert "ImageProjectiveTransformV3" not in ops[True]


def test_replication_in_tflite_avoids_broadcast_to(rng):
    x = rng.normal(size=(2, 5, 7, 3)).astype("float32")
    inputs = keras.Input((None, None, 3))
    model = keras.Model(inputs, keras.layers.Lambda(lambda t: replicate(t, 3))(inputs))
    flatbuffer = convert_to_tflite(model)
    assert "BROADCAST_TO" not in tflite_ops(flatbuffer)
    assert "RESIZE_NEAREST_NEIGHBOR" in tflite_ops(flatbuffer)
    (out,) = run_tflite(flatbuffer, x).values()
    np.testing.assert_array_equal(out, replicate(tf.constant(x), 3))
    np.testing.assert_array_equal(out, np.repeat(np.repeat(x, 3, axis=1), 3, axis=2))


def tflite_ops(flatbuffer):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=flatbuffer)
    return {op["op_name"] for op in interpreter._get_ops_details()}


@pytest.mark.parametrize("kernel_size", [1, 2, 3, 4, 7, (3, 2)])
@pytest.mark.parametrize("padding", ["same", "valid"])
def test_stride_one_transposed_convolution_equals_keras(rng, kernel_size, padding):
    x = rng.normal(size=(2, 7, 6, 3)).astype("float32")
    reference = keras.layers.Conv2DTranspose(5, kernel_size, padding=padding, activation="relu")
    reference.build(x.shape)
    reference.bias.assign(rng.normal(size=5).astype("float32"))
    ours = StrideOneConv2DTranspose(5, kernel_size, padding=padding, activation="relu")
    ours.build(x.shape)
    ours.set_weights(reference.get_weights())
    np.testing.assert_allclose(ours(x), reference(x), atol=1e-5, rtol=0)
    with tflite_builtins_only():  # the flipped-kernel convolution
        np.testing.assert_allclose(ours(x), reference(x), atol=1e-5, rtol=0)
    assert ours.get_config() == {**reference.get_config(), "name": ours.name}


def test_stride_one_transposed_convolution_is_a_plain_convolution_in_tflite(rng):
    x = rng.normal(size=(2, 9, 8, 4)).astype("float32")
    run_layer_test(
        StrideOneConv2DTranspose,
        {"filters": 3, "kernel_size": 3, "padding": "same"},
        x,
        expected_output_shape=(2, 9, 8, 3),
    )
    inputs = keras.Input((None, None, 4))
    model = keras.Model(inputs, StrideOneConv2DTranspose(3, 3, padding="same")(inputs))
    ops = tflite_ops(convert_to_tflite(model))
    assert "CONV_2D" in ops and "TRANSPOSE_CONV" not in ops


def test_stride_one_transposed_convolution_refuses_strides():
    with pytest.raises(ValueError, match="strides=1"):
        StrideOneConv2DTranspose(3, 3, strides=2)
    with pytest.raises(ValueError, match="dilation_rate=1"):
        StrideOneConv2DTranspose(3, 3, dilation_rate=2)


def test_pooling_switches_from_int32_and_int64_indices_agree(rng):
    from keras_segattn.layers.max_pooling_with_argmax import _fused_pool

    x = tf.constant(rng.integers(0, 3, (2, 7, 9, 3)).astype("float32"))  # ties
    for pool_size, padding in (((2, 2), "same"), ((3, 2), "valid")):
        small = _fused_pool(x, pool_size, padding, tf.int32)
        large = _fused_pool(x, pool_size, padding, tf.int64)
        np.testing.assert_array_equal(small[1], large[1])
        # A graph of unknown size picks the index type at run time.
        dynamic = tf.function(
            lambda t, p=pool_size, q=padding: fused_max_pool_with_argmax(t, p, q),
            input_signature=[tf.TensorSpec([None, None, None, 3])],
        )
        np.testing.assert_array_equal(dynamic(x)[1], small[1])


def test_fused_roi_align_on_an_empty_batch():
    out = roi_align(np.zeros((0, 5, 6, 3), "float32"), np.zeros((0, 4, 4), "float32"), 2)
    assert tuple(out.shape) == (0, 4, 2, 2, 3)


def test_stride_one_transposed_convolution_is_channels_last_only():
    with pytest.raises(ValueError, match="channels_last"):
        StrideOneConv2DTranspose(3, 3, data_format="channels_first")
