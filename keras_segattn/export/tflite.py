import os

import numpy as np
import tensorflow as tf

QUANTIZATIONS = ("float32", "float16", "dynamic", "int8")


def convert_to_tflite(
    saved_model_dir,
    output_path=None,
    quantization="float32",
    representative_images=None,
    signature_key="serving_default",
):
    """Converts a SavedModel signature to TFLite with builtin ops only.

    No interpreter here ships the Flex delegate, so Select TF ops are never
    enabled: a graph that needs one fails at conversion rather than at
    `allocate_tensors` on a device.

    Args:
        saved_model_dir: str. A SavedModel version folder.
        output_path: str or `None`. Where to write the `.tflite` file.
        quantization: str. `"float32"` (none), `"float16"` (weights in
            float16), `"dynamic"` (int8 weights, float activations) or
            `"int8"` (full-integer with a representative dataset). Defaults
            to `"float32"`.
        representative_images: iterable of uint8 image batches, needed for
            `"int8"`: a few dozen typical inputs.
        signature_key: str. Defaults to `"serving_default"`.

    Returns:
        The flatbuffer as `bytes`.
    """
    if quantization not in QUANTIZATIONS:
        raise ValueError(f"quantization must be one of {QUANTIZATIONS}; got {quantization!r}.")
    converter = tf.lite.TFLiteConverter.from_saved_model(
        os.fspath(saved_model_dir), signature_keys=[signature_key]
    )
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantization != "float32":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantization == "float16":
        converter.target_spec.supported_types = [tf.float16]
    elif quantization == "int8":
        if representative_images is None:
            raise ValueError(
                "quantization='int8' needs representative_images: an iterable of "
                "uint8 image batches used to calibrate activation ranges."
            )
        images = list(representative_images)

        def representative_dataset():
            for batch in images:
                yield [np.asarray(batch)]

        converter.representative_dataset = representative_dataset
        converter.target_spec.supported_ops = [
            tf.lite.OpsSet.TFLITE_BUILTINS_INT8,
            tf.lite.OpsSet.TFLITE_BUILTINS,
        ]
    flatbuffer = converter.convert()
    if output_path is not None:
        # Written beside its name, then moved into place: never half a file.
        os.makedirs(os.path.dirname(os.path.abspath(output_path)), exist_ok=True)
        folder, name = os.path.split(os.path.abspath(output_path))
        temporary = os.path.join(folder, f".{name}.partial-{os.getpid()}")
        with open(temporary, "wb") as f:
            f.write(flatbuffer)
        os.replace(temporary, output_path)
    return flatbuffer


def run_tflite(model, inputs, signature_key=None, num_threads=None):
    """Runs a TFLite model in the `ai_edge_litert` interpreter.

    Args:
        model: bytes or str. The flatbuffer or a `.tflite` path.
        inputs: dict of input name to array, or a single array for a model
            with one input.
        signature_key: str or `None`. Defaults to the only signature.
        num_threads: int or `None`. Interpreter threads.

    Returns:
        A dict of output name to NumPy array.
    """
    from ai_edge_litert.interpreter import Interpreter

    if isinstance(model, (str, os.PathLike)):
        interpreter = Interpreter(model_path=os.fspath(model), num_threads=num_threads)
    else:
        interpreter = Interpreter(model_content=model, num_threads=num_threads)
    runner = interpreter.get_signature_runner(signature_key)
    if not isinstance(inputs, dict):
        names = list(runner.get_input_details())
        if len(names) != 1:
            raise ValueError(f"The model has inputs {names}; pass a dict.")
        inputs = {names[0]: inputs}
    return runner(**{k: np.asarray(v) for k, v in inputs.items()})
