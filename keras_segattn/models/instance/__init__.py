"""Instance segmentation: Faster R-CNN's region proposal network, Multi-task
Network Cascades (Dai, He and Sun, CVPR 2016), Hypercolumns and SDS.

Builders and host-side inference only; training lives in
`keras_segattn.recipes.instance`, scoring in `keras_segattn.evaluation.instance`,
the `(images, targets)` pipeline in `keras_segattn.data.instance_pipeline`.
"""

from keras_segattn.models.instance.common import (
    ProposalLayer,
    crop_and_resize_masks,
    paste_masks,
)
from keras_segattn.models.instance.hypercolumns import (
    hypercolumns,
    resegment_detections,
    segment_boxes,
)
from keras_segattn.models.instance.mnc import (
    DetectionLayer,
    MaskedClassifierHead,
    MaskHead,
    MultitaskNetworkCascade,
    RefineBoxes,
    mnc,
)
from keras_segattn.models.instance.presets import COCO_LIGHT_MNC, SHAPES_MNC
from keras_segattn.models.instance.rpn import RegionProposalNetwork, rpn
from keras_segattn.models.instance.sds import SDSParts, sds, sds_detect, sds_parts

__all__ = [
    "COCO_LIGHT_MNC",
    "DetectionLayer",
    "MaskHead",
    "MaskedClassifierHead",
    "MultitaskNetworkCascade",
    "ProposalLayer",
    "RefineBoxes",
    "RegionProposalNetwork",
    "SDSParts",
    "SHAPES_MNC",
    "crop_and_resize_masks",
    "hypercolumns",
    "mnc",
    "paste_masks",
    "resegment_detections",
    "rpn",
    "sds",
    "sds_detect",
    "sds_parts",
    "segment_boxes",
]
