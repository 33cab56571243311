"""Each task's life cycle in one place: data -> fit -> scores -> run folder.

`semantic` (FCN, DeconvNet, the scene-labelling networks and `patch_cnn`),
`instance` (RPN, MNC, Hypercolumns, SDS), `captioning` (Show, Attend and
Tell), `stn` (Spatial Transformer Networks' Table 1) and the `demo`, all
writing the same run folder through `runs`. The command line is a thin layer
over these functions.
"""

from keras_segattn.recipes.captioning import CaptionerConfig, train_captioner
from keras_segattn.recipes.config import RecipeConfig
from keras_segattn.recipes.instance import (
    InstanceConfig,
    train_hypercolumns,
    train_instance_model,
    train_instances,
    train_sds,
)
from keras_segattn.recipes.runs import RunFolder
from keras_segattn.recipes.semantic import (
    SegmenterConfig,
    compile_segmenter,
    object_centred_dataset,
    train_segmenter,
    two_stage_fit,
)
from keras_segattn.recipes.stn import run_table, train_cell

__all__ = [
    "CaptionerConfig",
    "InstanceConfig",
    "RecipeConfig",
    "RunFolder",
    "SegmenterConfig",
    "compile_segmenter",
    "object_centred_dataset",
    "run_table",
    "train_captioner",
    "train_cell",
    "train_hypercolumns",
    "train_instance_model",
    "train_instances",
    "train_sds",
    "train_segmenter",
    "two_stage_fit",
]
