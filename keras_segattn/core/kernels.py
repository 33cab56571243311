"""One switch: fused TensorFlow kernels, or TFLite's builtin operators.

Several layers have two formulations of the same computation:

- TensorFlow's fused kernels: `tf.image.crop_and_resize` (RoIAlign),
  `ImageProjectiveTransformV3` (the affine spatial-transformer sampler,
  outside training only), `tf.nn.max_pool_with_argmax` (pooling with
  switches). Fast, but TensorFlow only: TFLite has them only through Flex
  (which no interpreter here runs), ONNX not at all, XLA has no kernel;
- a portable formulation written with gathers, strided slices and matmuls,
  which every converter turns into builtin operators. Where TFLite runs
  one builtin much faster than another (pixel replication:
  `RESIZE_NEAREST_NEIGHBOR` rather than a slow `BROADCAST_TO`), a trace for
  TFLite takes it.

Both are tested equal, forward and gradients. The choice is made when a
layer's `call` is traced, by where the trace happens:

- fused: eager calls, Keras' own `fit` / `evaluate` / `predict` step
  functions, and functions traced inside `tensorflow_kernels()`: the
  package's evaluation loops and the `serving_default` / `serving_bytes`
  signatures of `keras_segattn.export.export_saved_model`, which stay in
  TensorFlow (TF Serving);
- portable: every other graph, so that whatever a user converts gets it
  without asking: `model.export(format="litert" | "onnx" |
  "tf_saved_model")`, `tf.lite.TFLiteConverter.from_keras_model`, a
  `tf.function` of their own; and a graph XLA compiles;
- builtins for TFLite (portable, and TFLite's fastest builtins): inside
  `tflite_builtins_only()`, as the package's TFLite converter traces.
"""

import contextlib
import functools
import re
import threading

import tensorflow as tf

_state = threading.local()


# The graphs of Keras' own step functions (`fit`, `evaluate`, `predict`,
# with and without a distribution strategy or steps_per_execution): the
# names of private functions, hence a test that they trace the fused path
# (tests/layers/test_fused_kernels.py), which fails if Keras renames them.
_KERAS_STEP_GRAPHS = frozenset(
    {
        "one_step_on_data",
        "one_step_on_data_distributed",
        "one_step_on_iterator",
        "multi_step_on_data",
        "multi_step_on_iterator",
    }
)


def fused_kernels():
    """Whether a layer traced now calls TensorFlow's fused kernels (see the
    module's docstring for where): never for TFLite, nor in a graph XLA
    compiles (`jit_compile=True`, TPUs)."""
    if tracing_for_tflite() or _compiling_with_xla():
        return False
    if tf.executing_eagerly() or getattr(_state, "tensorflow_only", False):
        return True
    return _in_keras_step()


def _in_keras_step():
    graph = tf.compat.v1.get_default_graph()
    while graph is not None:
        name = re.sub(r"_\d+$", "", getattr(graph, "name", None) or "")  # "..._1": a retrace
        if name in _KERAS_STEP_GRAPHS:
            return True
        graph = getattr(graph, "outer_graph", None)
    return False


@contextlib.contextmanager
def tensorflow_kernels():
    """Layers traced inside this block call TensorFlow's fused kernels: for
    functions that run in TensorFlow only (a `tf.function` of evaluation,
    a signature for TF Serving). `tflite_builtins_only()` still wins.

    Per thread, and nests. Use `in_tensorflow(fn)` to trace a function so.
    """
    with _switch("tensorflow_only"):
        yield


def _inside(context, fn):
    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        with context():
            return fn(*args, **kwargs)

    return wrapped


def in_tensorflow(fn):
    """`fn`, calling its layers inside `tensorflow_kernels()`: wrap the
    Python function a `tf.function` traces."""
    return _inside(tensorflow_kernels, fn)


def in_tflite(fn):
    """`fn`, calling its layers inside `tflite_builtins_only()`: wrap the
    Python function a `tf.function` traces for a converter."""
    return _inside(tflite_builtins_only, fn)


def _compiling_with_xla():
    # TensorFlow marks the graphs of jit-compiled functions with an XLA
    # context; the check lives in a private module, hence the guard (the
    # shared test helper's jit_compile fit step fails if it stops working).
    try:
        from tensorflow.python.ops.control_flow_util import GraphOrParentsInXlaContext
    except ImportError:  # pragma: no cover
        return False
    return bool(GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph()))


def tracing_for_tflite():
    """Whether the graph traced now is meant for TFLite: builtin operators
    only, and whatever runs fastest there."""
    return getattr(_state, "builtins_only", False)


@contextlib.contextmanager
def tflite_builtins_only():
    """Layers traced inside this block use TFLite builtin operators only.

    The switch is read when a layer's `call` is traced, so a function traced
    inside the block keeps the builtin formulation when it is called later.
    Per thread, and nests.
    """
    with _switch("builtins_only"):
        yield


@contextlib.contextmanager
def _switch(name):
    """Sets the per-thread flag `name` inside the block, restoring it after."""
    previous = getattr(_state, name, False)
    setattr(_state, name, True)
    try:
        yield
    finally:
        setattr(_state, name, previous)
