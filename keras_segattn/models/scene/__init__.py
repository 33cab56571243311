"""Scene labelling before FCN: the patch baseline, its dense versions, and
Farabet et al.'s multiscale ConvNet."""

from keras_segattn.models.scene.multiscale import multiscale_convnet, multiscale_tower
from keras_segattn.models.scene.patch_cnn import patch_cnn, patch_cnn_trunk
from keras_segattn.models.scene.shift_and_stitch import (
    brute_force_predict,
    dense_predict,
    trunk_geometry,
)

__all__ = [
    "brute_force_predict",
    "dense_predict",
    "multiscale_convnet",
    "multiscale_tower",
    "patch_cnn",
    "patch_cnn_trunk",
    "trunk_geometry",
]
