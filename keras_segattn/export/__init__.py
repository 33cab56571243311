"""Export to SavedModel (TF Serving layout), builtin-only TFLite and ONNX."""

from keras_segattn.export.flow import EXPORT_TOLERANCE, export_checkpoint
from keras_segattn.export.onnx import (
    convert_to_onnx,
    onnx_labels,
    onnx_serving_limits,
    run_onnx,
)
from keras_segattn.export.saved_model import (
    BYTES_SIGNATURE_KEY,
    PORTABLE_SIGNATURE_KEY,
    ServingLimits,
    export_saved_model,
    read_labels,
    serving_module,
    serving_task,
)
from keras_segattn.export.tflite import (
    QUANTIZATIONS,
    convert_to_tflite,
    run_tflite,
    tflite_labels,
    tflite_runner,
    tflite_serving_limits,
)
from keras_segattn.export.verify import verify_export

__all__ = [
    "BYTES_SIGNATURE_KEY",
    "PORTABLE_SIGNATURE_KEY",
    "EXPORT_TOLERANCE",
    "export_checkpoint",
    "QUANTIZATIONS",
    "ServingLimits",
    "convert_to_onnx",
    "convert_to_tflite",
    "export_saved_model",
    "onnx_labels",
    "onnx_serving_limits",
    "read_labels",
    "run_onnx",
    "run_tflite",
    "serving_module",
    "serving_task",
    "tflite_labels",
    "tflite_runner",
    "tflite_serving_limits",
    "verify_export",
]
