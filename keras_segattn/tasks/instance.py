"""Instance segmentation: the RPN and MNC (detections in the graph), and SDS
and Hypercolumns, whose detection loop runs on the host and whose networks
are exported alone (`region_scoring`, `box_segmentation`).

A model's task is `instance`; the registry entry of SDS and Hypercolumns
names the serving task of their network (`register_model(serving_task=...)`),
which decides their signatures and how a checkpoint is scored.
"""

import numpy as np
import tensorflow as tf

from keras_segattn.checkpoints import load_model
from keras_segattn.data.instances import load_instance_dataset, resize_instances
from keras_segattn.data.pipeline import generation_options, is_generated
from keras_segattn.evaluation.instance import (
    oracle_predictions,
    predict_instances,
    timed_coco_scores,
)
from keras_segattn.models.instance.sds import crop_regions, sds_parts
from keras_segattn.models.registry import get_model_spec
from keras_segattn.tasks.base import Task, get_task, register_task

# What `segattn evaluate` prints of an instance model's scores.
PRINTED = ("mAPr@0.5", "mAPr@0.7", "mask_AP", "box_AP", "box_AP50")


def instance_serving_fn(model):
    """uint8 images of any size in; `boxes`, `scores`, `classes`, `masks`,
    `num_detections` out (`model.detect`).

    `boxes` float32 `(batch, D, 4)` `"xyxy"` pixels, `scores` float32
    `(batch, D)`, `classes` int32 `(batch, D)`, `masks` uint8 `(batch, D,
    height, width)` at the image's resolution (0/1) and `num_detections`
    int32 `(batch,)`; `D` is the model's fixed number of detections, the
    entries after `num_detections` zero. Builtin TFLite ops only, at any
    image size.
    """

    def serve(images):
        return model.detect(images)

    return serve


def region_scoring_serving_fn(model):
    """SDS's network: `box_crops` uint8 `(batch, S, S, 3)` and `region_masks`
    float32 `(batch, S, S)` in [0, 1] (`sds.crop_regions` makes both) in;
    `probabilities` float32 `(batch, num_classes)` and `figure_ground`
    float32 `(batch, G, G)` out. Proposals, cropping, NMS and the superpixel
    refinement stay on the host (`sds.sds_detect`)."""

    def serve(box_crops, region_masks):
        probabilities, figure_ground = model([box_crops, region_masks], training=False)
        return {"probabilities": probabilities, "figure_ground": figure_ground}

    return serve


def box_segmentation_serving_fn(model):
    """The hypercolumns network: uint8 `images` of any size, `boxes` float32
    `(batch, R, 4)` `"xyxy"` pixels (and, for a class-specific model,
    `classes` int32 `(batch, R)`) in; `masks` float32 `(batch, R, K, K)`,
    each box's figure-ground probabilities on its K x K grid, out. The
    boxes come from a detector; pasting the grids into the image stays on
    the host (`hypercolumns.segment_boxes`)."""

    def serve(images, boxes, classes=None):
        inputs = [images, boxes] + ([] if classes is None else [classes])
        return {"masks": model(inputs, training=False)}

    return serve


def instance_examples(data_spec, count, image_size=64):
    """`count` examples of an instance dataset (the shapes by default) that
    have at least one instance, as NumPy dicts."""
    spec = data_spec or "shapes"
    options = generation_options(spec, num_images=2 * count, image_size=image_size)
    data, _ = load_instance_dataset(spec, "val", **options)
    examples = []
    for example in data.as_numpy_iterator():
        keep = example["bounding_boxes"]["labels"] > 0
        if keep.any():
            examples.append(
                {
                    "images": example["images"],
                    "boxes": example["bounding_boxes"]["boxes"][keep],
                    "classes": example["bounding_boxes"]["labels"][keep],
                    "masks": example["instance_masks"][keep] > 0,
                }
            )
        if len(examples) == count:
            break
    return examples


@register_task
class InstanceTask(Task):
    """Objects with their masks: trained by `segattn instance-train`
    (validation loss picks `best.keras`), scored by COCO mask AP and
    mAP^r, served as `boxes`, `scores`, `classes`, `masks` and
    `num_detections` (`model.detect`)."""

    name = "instance"
    train_command = "instance-train"
    evaluate_command = "evaluate"
    monitor = "val_loss"
    mode = "min"
    per_pixel_outputs = {"masks": (1, 0)}

    def serving_model(self, model):
        """The model under its registry entry's serving task (SDS's and
        Hypercolumns' networks), else this one."""
        serving = get_model_spec(model.name).serving_task
        return model, (get_task(serving) if serving else self)

    def serving_functions(self, model):
        return {"serving_default": instance_serving_fn(model)}

    def sample_inputs(self, model, data_spec, image_size, count=32):
        spec = data_spec or "shapes"
        options = generation_options(spec, num_images=count, image_size=image_size or 64)
        data, _ = load_instance_dataset(spec, "val", **options)
        return [{"images": e["images"].numpy()[None]} for e in data.take(count)]

    def dataset_class_names(self, data_spec):
        spec = data_spec or "shapes"
        options = generation_options(spec, num_images=1, image_size=32)
        return list(load_instance_dataset(spec, "val", **options)[1].class_names)

    def evaluate(self, model, options):
        if options.postprocess:
            raise ValueError("--postprocess applies to semantic models only.")
        options.refuse_dense_predictors(self)
        data, info = load_instance_dataset(options.data, options.split)
        if options.image_size and not is_generated(options.data):  # generated at their size
            data = resize_instances(data, options.image_size)
        detector = load_model(options.detector, "--detector") if options.detector else None
        _, serving = self.serving_model(model)
        metrics = serving.score_instances(
            model, data, info.num_classes, options.batch_size, detector=detector
        )
        lines = [f"{key:<10} {metrics[key]:.3f}" for key in PRINTED]
        lines.append(f"seconds per image (detect): {metrics['predict_seconds_per_image']:.3f}")
        return metrics, lines

    # Whether `model.detect` runs as one TensorFlow graph (`rpn`, `mnc`) or
    # on the host around the network (`sds`, `hypercolumns`).
    detect_in_graph = True

    def detect(self, model, dataset, batch_size=16, detector=None):
        """Every instance model's detections in one structure: a list of
        per-image dicts `{"image_id", "boxes" (K, 4) "xyxy" pixels, "scores"
        (K,), "labels" (K,), "masks" (K, H, W)}` (what
        `evaluation.instance.evaluate_instances` scores), one per image of
        the unbatched instance `dataset`: `model.detect` on its batches
        (`evaluation.instance.predict_instances`). `detector`: the model
        whose boxes a box-segmentation network segments.
        """
        _no_detector(detector, self)
        return predict_instances(model, dataset, batch_size, in_graph=self.detect_in_graph)

    def score_instances(self, model, dataset, num_classes, batch_size=16, detector=None):
        """COCO scores of `detect` on `dataset` (`mask_AP`, `mAPr@0.5`,
        `mAPr@0.7`, `box_AP`, `box_AP50`), with `seconds` (detection and
        scoring) and `predict_seconds_per_image` (detection, reading the
        images included)."""
        return timed_coco_scores(
            lambda: self.detect(model, dataset, batch_size, detector), dataset, num_classes
        )


def _no_detector(detector, task):
    if detector is not None:
        raise ValueError(f"--detector applies to hypercolumns models only, not to {task.name}.")


class HostSideTask(InstanceTask):
    """An instance network whose detection runs partly on the host: trained
    by `instance-train`'s array trainers, exported as the network alone,
    served by `serving_fn(model)`."""

    train_command = None
    takes_images = False
    per_pixel_outputs = {}
    detect_in_graph = False

    @staticmethod
    def serving_fn(model):
        raise NotImplementedError

    def serving_model(self, model):
        return model, self

    def serving_functions(self, model):
        return {"serving_default": self.serving_fn(model)}


@register_task
class RegionScoringTask(HostSideTask):
    """SDS's network: scores region crops. Detection (proposals, cropping,
    NMS, refinement) runs on the host (`sds_detect`); the export is the
    network alone."""

    name = "region_scoring"
    serving_fn = staticmethod(region_scoring_serving_fn)

    def crop_size(self, model):
        return sds_parts(model).crop_size

    def input_signature(self, model, image_size=None):
        size = self.crop_size(model)
        if image_size is not None and tuple(image_size) != (size, size):
            raise ValueError(
                f"An SDS network takes crops of its crop size {(size, size)}; got "
                f"input_size={image_size!r}."
            )
        return [
            tf.TensorSpec([None, size, size, 3], tf.uint8, "box_crops"),
            tf.TensorSpec([None, size, size], tf.float32, "region_masks"),
        ]

    def sample_inputs(self, model, data_spec, image_size, count=32):
        size = self.crop_size(model)
        inputs = []
        for example in instance_examples(data_spec, count):
            crops, masks = crop_regions(example["images"], example["masks"], example["boxes"], size)
            inputs.append({"box_crops": crops, "region_masks": masks})
        return inputs


@register_task
class BoxSegmentationTask(HostSideTask):
    """The hypercolumns network: masks for given boxes. The boxes come from a
    detector (an SDS model) or, for its table row, from jittered ground
    truth; the export is the network alone."""

    name = "box_segmentation"
    serving_fn = staticmethod(box_segmentation_serving_fn)

    def input_signature(self, model, image_size=None):
        specs = [
            self.image_spec(model, image_size),
            tf.TensorSpec([None, None, 4], tf.float32, "boxes"),
        ]
        if len(model.inputs) == 3:  # class-specific
            specs.append(tf.TensorSpec([None, None], tf.int32, "classes"))
        return specs

    def sample_inputs(self, model, data_spec, image_size, count=32):
        inputs = []
        for example in instance_examples(data_spec, count):
            batch = {"images": example["images"][None], "boxes": example["boxes"][None]}
            if len(model.inputs) == 3:
                batch["classes"] = example["classes"][None].astype(np.int32)
            inputs.append(batch)
        return inputs

    def detect(self, model, dataset, batch_size=16, detector=None):
        """With a `detector` (an instance model: `sds` in the paper's
        pairing), the full Hypercolumn detector (`model.detect(images,
        detector=...)`: the detector's boxes, the model's masks); without
        one, the masks of jittered ground-truth boxes (`oracle_predictions`),
        the protocol of its table row."""
        if detector is None:
            return oracle_predictions(model, dataset)[0]
        return predict_instances(model, dataset, batch_size, in_graph=False, detector=detector)
