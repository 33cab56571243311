"""Custom layers shared by the model builders."""

from keras_segattn.layers.attention import BahdanauVisualAttention
from keras_segattn.layers.image_preprocessing import ImagePreprocessing
from keras_segattn.layers.image_pyramid import ImagePyramid, replicate
from keras_segattn.layers.max_pooling_with_argmax import MaxPoolingWithArgmax2D
from keras_segattn.layers.max_unpooling import MaxUnpooling2D
from keras_segattn.layers.size_alignment import CropToReference, PadToMultiple
from keras_segattn.layers.spatial_transformer import (
    SpatialTransformer,
    affine_grid,
    bilinear_sample,
    projective_grid,
    tps_control_points,
    tps_grid,
)

__all__ = [
    "BahdanauVisualAttention",
    "CropToReference",
    "ImagePreprocessing",
    "ImagePyramid",
    "MaxPoolingWithArgmax2D",
    "MaxUnpooling2D",
    "PadToMultiple",
    "SpatialTransformer",
    "affine_grid",
    "bilinear_sample",
    "projective_grid",
    "replicate",
    "tps_control_points",
    "tps_grid",
]
