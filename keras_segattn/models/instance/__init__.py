"""Instance segmentation: Faster R-CNN's region proposal network, Multi-task
Network Cascades (Dai, He and Sun, CVPR 2016), Hypercolumns and SDS."""

# Importing the modules registers "hypercolumns", "sds", "rpn" and "mnc".
from keras_segattn.models.instance import hypercolumns, sds  # noqa: F401
from keras_segattn.models.instance.common import (
    ProposalLayer,
    crop_and_resize_masks,
    instance_pipeline,
    paste_masks,
)
from keras_segattn.models.instance.mnc import (
    DetectionLayer,
    MaskedClassifierHead,
    MaskHead,
    MultitaskNetworkCascade,
    RefineBoxes,
    mnc,
)
from keras_segattn.models.instance.rpn import RegionProposalNetwork, rpn
from keras_segattn.models.instance.train import (
    evaluate_instance_model,
    predict_instances,
    train_instance_model,
)

__all__ = [
    "DetectionLayer",
    "MaskHead",
    "MaskedClassifierHead",
    "MultitaskNetworkCascade",
    "ProposalLayer",
    "RefineBoxes",
    "RegionProposalNetwork",
    "crop_and_resize_masks",
    "evaluate_instance_model",
    "instance_pipeline",
    "mnc",
    "paste_masks",
    "predict_instances",
    "rpn",
    "train_instance_model",
]
