"""ONNX export of a task's serving signature, through tf2onnx as Keras'
`model.export(format="onnx")` does, run in onnxruntime.

Needs the `onnx` extra: `pip install keras_segattn[onnx]` (onnx,
onnxruntime, tf2onnx).
"""

import json
import os

import numpy as np
import tensorflow as tf

from keras_segattn.core.kernels import in_tflite
from keras_segattn.core.precision import float32_model
from keras_segattn.core.saving import write_bytes
from keras_segattn.export.saved_model import checked_inputs, minimum_image_size
from keras_segattn.export.tflite import LABELS_METADATA, LIMITS_METADATA, metadata_entries
from keras_segattn.tasks import get_task, task_of


def _tf2onnx():
    try:
        import tf2onnx
    except ImportError as error:
        raise ImportError(
            "ONNX export needs tf2onnx, onnx and onnxruntime: pip install keras_segattn[onnx]"
        ) from error
    try:  # Keras' own numpy-2 compatibility patch, which its ONNX export applies
        from keras.src.export.tf2onnx_lib import patch_tf2onnx
    except ImportError:  # pragma: no cover
        pass
    else:
        patch_tf2onnx()
    return tf2onnx


def convert_to_onnx(
    model, output_path=None, task=None, signature_key=None, labels=None, limits=None, opset=None
):
    """Converts a task's serving signature to ONNX.

    The same function the SavedModel serves, traced with builtin operators
    only (as for TFLite: every layer's portable formulation), converted by
    tf2onnx: uint8 `images` of any size and batch in, the signature's named
    outputs out (`class_map`, `probabilities`; an instance model's
    `boxes`, ..., `masks`; a captioner's `token_ids` and `attention`: the
    whole detector and the whole greedy decoder are in the graph).

    Args:
        model: `keras.Model`. A model of this package (a mixed-precision
            one is converted through its float32 copy).
        output_path: str or `None`. Where to write the `.onnx` file
            (under a temporary name, then moved into place).
        task: a `keras_segattn.tasks.Task`, its name or `None` (the
            model's, as `export_saved_model` serves it).
        signature_key: str or `None`. Which of the task's serving functions;
            defaults to its TFLite one (`Task.tflite_signature`: numeric
            outputs only).
        labels: sequence of str or `None`. Recorded in the file's
            `metadata_props` as `keras_segattn.labels`, one per line
            (`onnx_labels` reads them back).
        limits: a `ServingLimits` or `None`. Recorded as JSON under
            `keras_segattn.serving_limits` (`onnx_serving_limits`) for an
            app to apply; the graph itself does not check them.
        opset: int or `None`. The ONNX opset; `None` is tf2onnx's default.

    Returns:
        The serialized `onnx.ModelProto` as `bytes`.
    """
    tf2onnx = _tf2onnx()
    model = float32_model(model)
    if task is None:
        model, task = task_of(model).serving_model(model)
    else:
        task = get_task(task)
    signature_key = signature_key or task.tflite_signature
    functions = task.serving_functions(model)
    if signature_key not in functions:
        raise ValueError(
            f"signature_key must be one of {sorted(functions)} for a {task.name} model; "
            f"got {signature_key!r}."
        )
    specs = task.input_signature(model)
    serve = checked_inputs(functions[signature_key], specs, minimum_image_size(model), limits)
    function = tf.function(in_tflite(serve), input_signature=specs)
    proto, _ = tf2onnx.convert.from_function(function, input_signature=specs, opset=opset)
    for key, value in metadata_entries(labels, limits).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    data = proto.SerializeToString()
    if output_path is not None:
        os.makedirs(os.path.dirname(os.path.abspath(output_path)), exist_ok=True)
        write_bytes(os.path.abspath(output_path), data)
    return data


def onnx_session(model, num_threads=None):
    """An onnxruntime `InferenceSession` (CPU) of a `.onnx` path or bytes."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    if num_threads is not None:
        options.intra_op_num_threads = num_threads
    source = os.fspath(model) if isinstance(model, (str, os.PathLike)) else model
    return onnxruntime.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def run_onnx(model, inputs):
    """Runs an ONNX model once in onnxruntime.

    Args:
        model: bytes, str or an `InferenceSession`.
        inputs: dict of input name to array, or one array for one input.

    Returns:
        A dict of output name to NumPy array.
    """
    session = model if hasattr(model, "get_inputs") else onnx_session(model)
    names = [i.name for i in session.get_inputs()]
    if not isinstance(inputs, dict):
        if len(names) != 1:
            raise ValueError(f"The model has inputs {names}; pass a dict.")
        inputs = {names[0]: inputs}
    outputs = session.run(None, {k: np.asarray(v) for k, v in inputs.items()})
    return dict(zip([o.name for o in session.get_outputs()], outputs))


def _metadata(model, key):
    import onnx

    if isinstance(model, (str, os.PathLike)):
        proto = onnx.load(os.fspath(model), load_external_data=False)
    else:
        proto = onnx.load_from_string(model)
    return {p.key: p.value for p in proto.metadata_props}.get(key)


def onnx_labels(model):
    """The labels recorded by `convert_to_onnx(..., labels=...)`, or `None`."""
    text = _metadata(model, LABELS_METADATA)
    return None if text is None else text.split("\n")


def onnx_serving_limits(model):
    """The serving limits recorded by `convert_to_onnx(..., limits=...)` (a
    dict `max_pixels`, `max_batch_pixels`), or `None`."""
    text = _metadata(model, LIMITS_METADATA)
    return None if text is None else json.loads(text)
