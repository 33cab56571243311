import json
import os
import re
import tempfile

import keras
import numpy as np
import tensorflow as tf

from keras_segattn.core.kernels import tflite_builtins_only
from keras_segattn.core.precision import FLOAT_SCOPE, float32_model
from keras_segattn.core.saving import write_bytes
from keras_segattn.export.saved_model import check_labels, tflite_archive

QUANTIZATIONS = ("float32", "float16", "dynamic", "int8")
# The names of the metadata entries that hold a TFLite model's labels and
# the serving limits it was exported with.
LABELS_METADATA = "keras_segattn.labels"
LIMITS_METADATA = "keras_segattn.serving_limits"


def convert_to_tflite(
    source,
    output_path=None,
    quantization="float32",
    representative_images=None,
    signature_key="serving_default",
    task=None,
    input_size=None,
    labels=None,
    limits=None,
):
    """Converts a model to TFLite with builtin ops only.

    No interpreter here ships the Flex delegate, so Select TF ops are never
    enabled: a graph that needs one fails at conversion rather than at
    `allocate_tensors` on a device.

    Convert the Keras model. Its layers are traced for TFLite (inside
    `keras_segattn.core.kernels.tflite_builtins_only`): where they call
    TensorFlow's fused kernels in a SavedModel (RoIAlign, pooling with
    switches, the affine sampler), which TFLite runs only through Flex,
    the TFLite graph gets their builtin formulations, tested equal.

    Args:
        source: a `keras.Model`, or the path of a SavedModel whose graph
            uses builtin-convertible ops only (one exported by this package
            has them in its `"portable"` signature: pass
            `signature_key="portable"`).
        output_path: str or `None`. Where to write the `.tflite` file.
        quantization: str. `"float32"` (none), `"float16"` (weights in
            float16), `"dynamic"` (int8 weights, float activations) or
            `"int8"` (full-integer with a representative dataset). Defaults
            to `"float32"`.
        representative_images: iterable of uint8 image batches (or, for a
            signature of several inputs, of dicts of input name to batch),
            needed for `"int8"`: a few dozen typical inputs.
        signature_key: str. The signature to convert (of the SavedModel, or
            of `task`'s serving signatures). Defaults to `"serving_default"`.
        task: str or `None`. With a model: trace the serving signature of
            this task (`"semantic"`, `"classification"`, `"captioning"`,
            `"instance"`; see `export_saved_model`), uint8 images in. `None`
            traces the model's own inputs and outputs (`model.export`'s
            signature). Defaults to `None`.
        input_size: `(height, width)` or `None`. With a model: fix the
            images' height and width (the batch stays dynamic), so that
            TFLite's XNNPACK delegate takes the whole graph (it leaves ops
            of a dynamic size, such as `TRANSPOSE_CONV`, to TFLite's slower
            kernels). `None` keeps any size. Defaults to `None`.
        labels: sequence of str or `None`. The class names (or a captioner's
            vocabulary), by id, embedded in the file (`tflite_labels` reads
            them back). Defaults to `None`.
        limits: a `ServingLimits` or `None`. Recorded in the file's
            metadata as JSON (`tflite_serving_limits` reads it back) for an
            app to apply: the TFLite interpreter does not check them.
            Defaults to `None` (none recorded).

    The signature's input and output tensors carry the signature's names
    (`images`, `class_map`, ...), not the converter's
    (`serving_default_images:0`, `StatefulPartitionedCall:0`), so an app
    that looks tensors up by name, without the signature runner, finds them.

    Returns:
        The flatbuffer as `bytes`.
    """
    if quantization not in QUANTIZATIONS:
        raise ValueError(f"quantization must be one of {QUANTIZATIONS}; got {quantization!r}.")
    if quantization == "int8" and representative_images is None:
        raise ValueError(
            "quantization='int8' needs representative_images: an iterable of "
            "uint8 image batches used to calibrate activation ranges."
        )
    if isinstance(source, keras.Model):
        source = float32_model(source)  # TFLite has no bfloat16 arithmetic
        with tempfile.TemporaryDirectory() as directory:
            # Traced and written inside the switch: every layer call in the
            # SavedModel is its builtin formulation.
            with tflite_builtins_only():
                archive = tflite_archive(source, task, input_size, signature_key, limits)
                archive.write_out(directory, verbose=False)
            flatbuffer = _convert(directory, quantization, representative_images, signature_key)
    else:
        if task is not None or input_size is not None:
            raise ValueError(
                "task and input_size retrace the model, so they need the Keras model as "
                f"source; got the SavedModel path {os.fspath(source)!r}."
            )
        flatbuffer = _convert(source, quantization, representative_images, signature_key)
    flatbuffer = name_tensors(flatbuffer, labels, limits)
    if output_path is not None:
        # Written beside its name, then moved into place: never half a file.
        os.makedirs(os.path.dirname(os.path.abspath(output_path)), exist_ok=True)
        write_bytes(os.path.abspath(output_path), flatbuffer)
    return flatbuffer


def _flatbuffer_utils():
    from tensorflow.lite.tools import flatbuffer_utils

    return flatbuffer_utils


def metadata_entries(labels=None, limits=None):
    """`{name: text}` of what an exported file carries besides its graph:
    the labels (`LABELS_METADATA`, one per line) and the serving limits
    (`LIMITS_METADATA`, JSON); TFLite and ONNX files alike."""
    entries = {}
    if labels is not None:
        entries[LABELS_METADATA] = "\n".join(check_labels(labels))
    if limits is not None:
        entries[LIMITS_METADATA] = json.dumps(limits.as_dict())
    return entries


def name_tensors(flatbuffer, labels=None, limits=None):
    """Renames every signature input and output tensor to its signature
    name, and embeds `labels` (metadata `LABELS_METADATA`, one per line) and
    `limits` (`LIMITS_METADATA`, JSON)."""
    from tensorflow.lite.python import schema_py_generated as schema

    utils = _flatbuffer_utils()
    model = utils.convert_bytearray_to_object(bytearray(flatbuffer))
    for signature in model.signatureDefs or []:
        tensors = model.subgraphs[signature.subgraphIndex].tensors
        for entry in [*(signature.inputs or []), *(signature.outputs or [])]:
            tensors[entry.tensorIndex].name = entry.name
    for name, text in metadata_entries(labels, limits).items():
        buffer = schema.BufferT()
        buffer.data = np.frombuffer(text.encode("utf-8"), np.uint8)
        model.buffers.append(buffer)
        entry = schema.MetadataT()
        entry.name, entry.buffer = name, len(model.buffers) - 1
        model.metadata = [*(model.metadata or []), entry]
    return bytes(utils.convert_object_to_bytearray(model))


def _metadata(model, wanted):
    """The text of the metadata entry `wanted` of a flatbuffer or `.tflite`
    path, or `None`."""
    if isinstance(model, (str, os.PathLike)):
        with open(model, "rb") as f:
            model = f.read()
    parsed = _flatbuffer_utils().convert_bytearray_to_object(bytearray(model))
    for entry in parsed.metadata or []:
        name = entry.name.decode() if isinstance(entry.name, bytes) else entry.name
        if name == wanted:
            return bytes(parsed.buffers[entry.buffer].data).decode("utf-8")
    return None


def tflite_labels(model):
    """The labels embedded by `convert_to_tflite(..., labels=...)`.

    Args:
        model: bytes or str. The flatbuffer or a `.tflite` path.

    Returns:
        A list of str, or `None` if the file has none.
    """
    text = _metadata(model, LABELS_METADATA)
    return None if text is None else text.split("\n")


def tflite_serving_limits(model):
    """The serving limits recorded by `convert_to_tflite(..., limits=...)`
    (`segattn export` records them in every file): a dict `max_pixels`,
    `max_batch_pixels`, or `None`. The interpreter does not apply them: an
    app checks an image against them before it resizes the input tensors.
    """
    text = _metadata(model, LIMITS_METADATA)
    return None if text is None else json.loads(text)


def _convert(saved_model_dir, quantization, representative_images, signature_key):
    converter = tf.lite.TFLiteConverter.from_saved_model(
        os.fspath(saved_model_dir), signature_keys=[signature_key]
    )
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantization != "float32":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantization == "float16":
        converter.target_spec.supported_types = [tf.float16]
    elif quantization == "int8":
        images = list(representative_images)

        def representative_dataset():
            for batch in images:  # by signature input name, or the single input
                if isinstance(batch, dict):
                    yield {k: np.asarray(v) for k, v in batch.items()}
                else:
                    yield [np.asarray(batch)]

        converter.representative_dataset = representative_dataset
        converter.target_spec.supported_ops = [
            tf.lite.OpsSet.TFLITE_BUILTINS_INT8,
            tf.lite.OpsSet.TFLITE_BUILTINS,
        ]
    try:
        flatbuffer = converter.convert()
    except Exception as error:  # the converter raises its own ConverterError
        message = str(error).lower()
        if "select tf" not in message and "flex" not in message:
            raise
        raise ValueError(
            f"The SavedModel {os.fspath(saved_model_dir)!r} needs TensorFlow ops that TFLite "
            "runs only through Flex, which no interpreter here has. A SavedModel exported by "
            "keras_segattn calls fused TensorFlow kernels (crop_and_resize, "
            "max_pool_with_argmax, ImageProjectiveTransformV3) in its serving signatures "
            "and has the builtin formulations in its 'portable' one: pass "
            "signature_key='portable', or convert the Keras model, convert_to_tflite(model, "
            f"path, task=...). The converter said: {str(error)[:400]}"
        ) from None
    if quantization == "int8":
        flatbuffer = _keep_float_scopes(flatbuffer, converter, representative_dataset)
    return flatbuffer


def in_float_scope(name):
    """Whether a tensor name lies inside a `core.precision.keep_float()`
    scope: a `keep_float_in_int8` component, or `keep_float_in_int8_<n>`,
    the name TensorFlow gives the scope's later uses in one parent scope."""
    return re.search(rf"(^|/){FLOAT_SCOPE}(_\d+)?/", name) is not None


def _keep_float_scopes(flatbuffer, converter, representative_dataset):
    """Converts again with the ops of `core.precision.keep_float()` scopes
    (their output tensors named `.../keep_float_in_int8/...`) left in float
    (TFLite's selective quantisation), if the model has any."""
    from ai_edge_litert.interpreter import Interpreter

    tensors = Interpreter(model_content=flatbuffer).get_tensor_details()
    float_nodes = [t["name"] for t in tensors if in_float_scope(t["name"])]
    if not float_nodes:
        return flatbuffer
    options = tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=float_nodes)
    debugger = tf.lite.experimental.QuantizationDebugger(
        converter=converter, debug_dataset=representative_dataset, debug_options=options
    )
    return debugger.get_nondebug_quantized_model()


def tflite_runner(model, signature_key=None, num_threads=None):
    """The signature runner of a TFLite model in the `ai_edge_litert`
    interpreter, to call many times: `runner(images=...)` returns a dict of
    output name to NumPy array.

    Args:
        model: bytes or str. The flatbuffer or a `.tflite` path.
        signature_key: str or `None`. Defaults to the only signature.
        num_threads: int or `None`. Interpreter threads.
    """
    from ai_edge_litert.interpreter import Interpreter

    if isinstance(model, (str, os.PathLike)):
        interpreter = Interpreter(model_path=os.fspath(model), num_threads=num_threads)
    else:
        interpreter = Interpreter(model_content=model, num_threads=num_threads)
    return interpreter.get_signature_runner(signature_key)


def run_tflite(model, inputs, signature_key=None, num_threads=None):
    """Runs a TFLite model once in the `ai_edge_litert` interpreter.

    Args:
        model: bytes or str. The flatbuffer or a `.tflite` path.
        inputs: dict of input name to array, or a single array for a model
            with one input.
        signature_key: str or `None`. Defaults to the only signature.
        num_threads: int or `None`. Interpreter threads.

    Returns:
        A dict of output name to NumPy array.
    """
    runner = tflite_runner(model, signature_key, num_threads)
    if not isinstance(inputs, dict):
        names = list(runner.get_input_details())
        if len(names) != 1:
            raise ValueError(f"The model has inputs {names}; pass a dict.")
        inputs = {names[0]: inputs}
    return runner(**{k: np.asarray(v) for k, v in inputs.items()})
