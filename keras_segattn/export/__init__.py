"""Export to SavedModel (TF Serving layout) and builtin-only TFLite."""

from keras_segattn.export.flow import EXPORT_TOLERANCE, export_checkpoint
from keras_segattn.export.saved_model import export_saved_model, serving_module
from keras_segattn.export.tflite import QUANTIZATIONS, convert_to_tflite, run_tflite
from keras_segattn.export.verify import verify_export

__all__ = [
    "EXPORT_TOLERANCE",
    "export_checkpoint",
    "QUANTIZATIONS",
    "convert_to_tflite",
    "export_saved_model",
    "run_tflite",
    "serving_module",
    "verify_export",
]
