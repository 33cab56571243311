"""Custom layers shared by the model builders."""

from keras_segattn.layers.anchors import (
    AnchorGenerator,
    anchors_inside,
    box_iou,
    decode_boxes,
    encode_boxes,
    match_anchors,
    sample_anchors,
)
from keras_segattn.layers.attention import BahdanauVisualAttention
from keras_segattn.layers.deconvolution import StrideOneConv2DTranspose
from keras_segattn.layers.image_preprocessing import ImagePreprocessing
from keras_segattn.layers.image_pyramid import ImagePyramid, replicate
from keras_segattn.layers.max_pooling_with_argmax import MaxPoolingWithArgmax2D
from keras_segattn.layers.max_unpooling import MaxUnpooling2D
from keras_segattn.layers.nms import (
    NonMaxSuppression,
    WindowNonMaxSuppression,
    non_max_suppression,
    window_nms,
)
from keras_segattn.layers.roi_align import RoIAlign, roi_align, roi_max_pool
from keras_segattn.layers.size_alignment import CropToReference, PadToMultiple
from keras_segattn.layers.spatial_transformer import (
    SpatialTransformer,
    affine_grid,
    bilinear_sample,
    projective_grid,
    sample_affine,
    tps_control_points,
    tps_grid,
)

__all__ = [
    "AnchorGenerator",
    "anchors_inside",
    "box_iou",
    "decode_boxes",
    "encode_boxes",
    "match_anchors",
    "sample_anchors",
    "BahdanauVisualAttention",
    "CropToReference",
    "ImagePreprocessing",
    "ImagePyramid",
    "MaxPoolingWithArgmax2D",
    "MaxUnpooling2D",
    "NonMaxSuppression",
    "PadToMultiple",
    "RoIAlign",
    "SpatialTransformer",
    "StrideOneConv2DTranspose",
    "WindowNonMaxSuppression",
    "affine_grid",
    "bilinear_sample",
    "sample_affine",
    "non_max_suppression",
    "projective_grid",
    "replicate",
    "roi_align",
    "roi_max_pool",
    "tps_control_points",
    "tps_grid",
    "window_nms",
]
