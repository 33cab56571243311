import numpy as np
import tensorflow as tf

from keras_segattn.export.onnx import run_onnx
from keras_segattn.export.tflite import run_tflite


def verify_export(
    reference_outputs, inputs, saved_model_dir=None, tflite_model=None, onnx_model=None
):
    """Runs exported artifacts on `images` and compares them with Keras.

    Args:
        reference_outputs: dict of output name to the array Keras gave for
            `images` (for a semantic model, `semantic_serving_fn(model)
            (images)`).
        inputs: uint8 array `(batch, h, w, 3)`, the signature's `images`;
            or a dict of input name to array for a signature of several
            inputs (SDS's and hypercolumns' networks).
        saved_model_dir: str or `None`. A SavedModel to run through its
            `serving_default` signature.
        tflite_model: bytes, str or `None`. A TFLite model to run in
            `ai_edge_litert`.
        onnx_model: bytes, str or `None`. An ONNX model to run in
            onnxruntime.

    Returns:
        A dict `{artifact: {output: largest absolute difference}}`; for
        integer and string outputs (such as `class_map`, `captions`) the
        value is the fraction of elements that differ. String outputs a
        TFLite or ONNX model lacks (a captioner's `words`, `captions`) are
        skipped.
    """
    if not isinstance(inputs, dict):
        inputs = {"images": inputs}
    report = {}
    artifacts = {}
    if saved_model_dir is not None:
        signature = tf.saved_model.load(str(saved_model_dir)).signatures["serving_default"]
        artifacts["saved_model"] = {
            k: v.numpy() for k, v in signature(**tf.nest.map_structure(tf.constant, inputs)).items()
        }
    if tflite_model is not None:
        artifacts["tflite"] = run_tflite(tflite_model, inputs)
    if onnx_model is not None:
        artifacts["onnx"] = run_onnx(onnx_model, inputs)
    for artifact, outputs in artifacts.items():
        report[artifact] = {}
        for key, expected in reference_outputs.items():
            expected = np.asarray(expected)
            is_string = expected.dtype.kind in "OSU"
            if key not in outputs and is_string and artifact != "saved_model":
                continue  # strings stay in the SavedModel (from a captioner's tokens)
            actual = np.asarray(outputs[key])
            if actual.shape != expected.shape:
                raise ValueError(
                    f"{artifact} output {key!r} has shape {actual.shape}; Keras "
                    f"gave {expected.shape}."
                )
            if is_string:
                same = [_text(a) == _text(e) for a, e in zip(actual.ravel(), expected.ravel())]
                report[artifact][key] = float(1.0 - np.mean(same)) if same else 0.0
            elif expected.size == 0:  # e.g. the transform of a model without one
                report[artifact][key] = 0.0
            elif np.issubdtype(expected.dtype, np.integer):
                report[artifact][key] = float(np.mean(actual != expected))
            else:
                report[artifact][key] = float(np.max(np.abs(actual - expected)))
    return report


def _text(value):
    return value.decode() if isinstance(value, bytes) else str(value)
