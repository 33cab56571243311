"""One switch: fused TensorFlow kernels, or TFLite's builtin operators.

Several layers have two formulations of the same computation:

- in TensorFlow (`fit`, `predict`, a SavedModel under TF Serving) they
  call TensorFlow's fused kernels: `tf.image.crop_and_resize` (RoIAlign),
  `ImageProjectiveTransformV3` (the affine spatial-transformer sampler,
  outside training only), `tf.nn.max_pool_with_argmax` (pooling with
  switches);
- a graph traced for TFLite must use builtin operators only (no interpreter
  here runs Flex), so there they are written with gathers, strided slices
  and matmuls; and where TFLite runs one builtin much faster than another
  (pixel replication: `RESIZE_NEAREST_NEIGHBOR` rather than a slow
  `BROADCAST_TO`), the TFLite trace takes it.

Both are tested equal, forward and gradients. XLA has no kernels for the
fused ops either, so a graph XLA compiles gets the builtin formulations too.
The package's TFLite converter (`keras_segattn.export.convert_to_tflite`)
traces the model inside `tflite_builtins_only()`, which is all a user
converting a model needs. Set it yourself only to trace your own function
for TFLite (an `ExportArchive` endpoint of your own around one of these
layers) or to compare the two formulations (`keras_segattn.testing`).
"""

import contextlib
import threading

import tensorflow as tf

_state = threading.local()


def fused_kernels():
    """Whether a layer traced now may call TensorFlow's fused kernels.

    Not in a graph traced for TFLite, nor in one XLA compiles (`fit` with
    `jit_compile=True`, TPUs): XLA has no kernel for `CropAndResize`,
    `MaxPoolWithArgmax` or `ImageProjectiveTransformV3`.
    """
    return not tracing_for_tflite() and not _compiling_with_xla()


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
    previous = getattr(_state, "builtins_only", False)
    _state.builtins_only = True
    try:
        yield
    finally:
        _state.builtins_only = previous
