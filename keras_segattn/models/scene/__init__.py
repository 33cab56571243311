"""Scene labelling before FCN: the patch baseline, its dense versions,
Farabet et al.'s multiscale ConvNet and Pinheiro and Collobert's recurrent CNN."""

from keras_segattn.models.scene.multiscale import multiscale_convnet, multiscale_tower
from keras_segattn.models.scene.patch_cnn import patch_cnn, patch_cnn_trunk
from keras_segattn.models.scene.recurrent import RecurrentCNN, recurrent_cnn
from keras_segattn.models.scene.shift_and_stitch import (
    DenseLabeller,
    brute_force_predict,
    dense_predict,
    trunk_geometry,
)

__all__ = [
    "DenseLabeller",
    "RecurrentCNN",
    "brute_force_predict",
    "dense_predict",
    "multiscale_convnet",
    "multiscale_tower",
    "patch_cnn",
    "patch_cnn_trunk",
    "recurrent_cnn",
    "trunk_geometry",
]
