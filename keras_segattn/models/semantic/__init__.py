"""Semantic segmentation: FCN-32s/16s/8s (Long et al.), DeconvNet (Noh et al.),
and scene labelling before FCN: the patch baseline and its dense versions,
Farabet et al.'s multiscale ConvNet, Pinheiro and Collobert's recurrent CNN."""

from keras_segattn.models.semantic.deconvnet import deconvnet
from keras_segattn.models.semantic.fcn import fcn8s, fcn16s, fcn32s
from keras_segattn.models.semantic.multiscale import multiscale_convnet, multiscale_tower
from keras_segattn.models.semantic.patch_cnn import patch_cnn, patch_cnn_trunk
from keras_segattn.models.semantic.recurrent import RecurrentCNN, recurrent_cnn
from keras_segattn.models.semantic.shift_and_stitch import (
    DenseLabeller,
    brute_force_predict,
    dense_model,
    dense_predict,
    trunk_geometry,
)

__all__ = [
    "deconvnet",
    "fcn8s",
    "fcn16s",
    "fcn32s",
    "DenseLabeller",
    "RecurrentCNN",
    "brute_force_predict",
    "dense_model",
    "dense_predict",
    "multiscale_convnet",
    "multiscale_tower",
    "patch_cnn",
    "patch_cnn_trunk",
    "recurrent_cnn",
    "trunk_geometry",
]
