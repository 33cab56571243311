"""Patch-based scene labelling: the brute-force baseline and its dense versions."""

from keras_segattn.models.scene.patch_cnn import patch_cnn, patch_cnn_trunk
from keras_segattn.models.scene.shift_and_stitch import (
    brute_force_predict,
    dense_predict,
    trunk_geometry,
)

__all__ = [
    "brute_force_predict",
    "dense_predict",
    "patch_cnn",
    "patch_cnn_trunk",
    "trunk_geometry",
]
