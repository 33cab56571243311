"""Datasets and input pipelines for segmentation, detection and captioning.

Every dataset yields dicts with Keras key names: `images` (uint8 HxWx3),
`segmentation_masks` (int32 HxW) and, where available, `bounding_boxes`
(`{"boxes": "xyxy" pixels, "labels"}` padded with -1), `instance_masks`,
`num_instances` and `captions`.

Datasets are named by spec strings (`"shapes"`, `"coco:<root>"`) in one
catalogue (`keras_segattn.data.catalogue`): `load_dataset(data_type, spec,
split, **options)` returns `(dataset, info)` for the data types
`"segmentation"`, `"instances"` and `"captions"`, `list_datasets` lists the
specs, and `register_dataset` adds one.
"""

from keras_segattn.data.augment import (
    augment_dataset,
    augment_segmentation,
    center_crop_or_pad,
    resize_example,
)
from keras_segattn.data.captions import (
    CaptionDatasetInfo,
    CaptionVocabulary,
    caption_pipeline,
    caption_references,
    coco_captions,
    flickr8k_captions,
    load_caption_dataset,
    shapes_caption_objects,
    shapes_captions,
    tfds_caption_dataset,
)
from keras_segattn.data.catalogue import (
    DATA_TYPES,
    DatasetEntry,
    get_dataset_entry,
    list_datasets,
    load_dataset,
    register_dataset,
    unregister_dataset,
)
from keras_segattn.data.distortions import (
    DISTORTIONS,
    apply_distortion,
    distorted_mnist,
    distortion_image_size,
    sample_distortion_params,
)
from keras_segattn.data.folders import (
    CAMVID_CLASSES,
    CAMVID_IGNORE_CLASS,
    VOC_CLASSES,
    VOC_IGNORE_CLASS,
    camvid_dataset,
    folder_dataset,
    list_camvid_files,
    list_voc_files,
    voc_dataset,
)
from keras_segattn.data.instances import (
    COCO_CATEGORIES,
    InstanceDatasetInfo,
    coco_instances,
    instance_pipeline,
    load_instance_dataset,
    resize_instances,
    shapes_instances,
    tfds_coco_instances,
)
from keras_segattn.data.mnist import load_mnist, read_idx
from keras_segattn.data.pipeline import (
    DatasetInfo,
    check_segmentation_labels,
    generation_options,
    is_generated,
    load_segmentation_dataset,
    median_frequency_weights,
    patch_pipeline,
    segmentation_pipeline,
)
from keras_segattn.data.shapes import generate_shapes, shapes_dataset
from keras_segattn.data.tfds import tfds_segmentation_dataset

__all__ = [
    "DATA_TYPES",
    "CaptionDatasetInfo",
    "DatasetEntry",
    "get_dataset_entry",
    "list_datasets",
    "load_dataset",
    "register_dataset",
    "unregister_dataset",
    "COCO_CATEGORIES",
    "InstanceDatasetInfo",
    "coco_instances",
    "instance_pipeline",
    "patch_pipeline",
    "load_instance_dataset",
    "resize_instances",
    "shapes_instances",
    "tfds_coco_instances",
    "CaptionVocabulary",
    "caption_pipeline",
    "caption_references",
    "coco_captions",
    "flickr8k_captions",
    "load_caption_dataset",
    "shapes_caption_objects",
    "shapes_captions",
    "tfds_caption_dataset",
    "CAMVID_CLASSES",
    "CAMVID_IGNORE_CLASS",
    "VOC_CLASSES",
    "VOC_IGNORE_CLASS",
    "DISTORTIONS",
    "DatasetInfo",
    "apply_distortion",
    "distorted_mnist",
    "distortion_image_size",
    "load_mnist",
    "read_idx",
    "sample_distortion_params",
    "augment_dataset",
    "augment_segmentation",
    "camvid_dataset",
    "center_crop_or_pad",
    "check_segmentation_labels",
    "folder_dataset",
    "generate_shapes",
    "generation_options",
    "is_generated",
    "list_camvid_files",
    "list_voc_files",
    "load_segmentation_dataset",
    "median_frequency_weights",
    "resize_example",
    "segmentation_pipeline",
    "shapes_dataset",
    "tfds_segmentation_dataset",
    "voc_dataset",
]
