"""Training and COCO-style evaluation of the instance models (`rpn`, `mnc`).

`train_instance_model` loads an instance dataset (`load_instance_dataset`),
builds the model from the registry, fits it with `model.fit` on
`instance_pipeline` batches and scores the held-out split with
`evaluate_instances` (mask AP, mAP^r at 0.5 and 0.7, box AP).
"""

import time

import keras
import numpy as np
import tensorflow as tf

from keras_segattn.data.coco import load_instance_dataset, resize_instances
from keras_segattn.instance_metrics import evaluate_instances
from keras_segattn.models.instance.common import instance_pipeline
from keras_segattn.models.registry import create_model, get_model_spec
from keras_segattn.validation import check_int

# MNC on the built-in shapes at 64 x 64 (objects of 10 to 21 pixels) on a
# CPU: the light backbone (stride 8, anchors of 16, 32, 64 pixels), a 7 x 7
# RoI grid with one sample per bin, 28 x 28 masks, fc layers of 256, 32 RoIs
# per image, 64 proposals, 20 detections. Pass as `model_kwargs`.
SHAPES_MNC = {
    "backbone": "light",
    "fc_units": 256,
    "roi_size": 7,
    "roi_sampling_ratio": 1,
    "rois_per_image": 32,
    "pre_nms_top_n": 1000,
    "post_nms_top_n": 64,
    "max_detections": 20,
}


# MNC on COCO images resized to 256 x 256 on a CPU (the README's COCO-slice
# run): the light backbone with anchors of 16 to 128 pixels, a 7 x 7 RoI
# grid, fc layers of 512 (the default 4096 on 7 x 7 x 128 RoI features would
# be 26M weights a layer), 50 detections.
COCO_LIGHT_MNC = {
    "backbone": "light",
    "fc_units": 512,
    "roi_size": 7,
    "anchor_scales": (16, 32, 64, 128),
    "max_detections": 50,
}


class TimeBudget(keras.callbacks.Callback):
    """Stops `fit` once `seconds` of training have passed (checked every batch)."""

    def __init__(self, seconds):
        super().__init__()
        self.seconds = float(seconds)
        self.stopped_at = None

    def on_train_begin(self, logs=None):
        self._start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        if time.perf_counter() - self._start > self.seconds:
            self.model.stop_training = True
            self.stopped_at = batch


def train_and_held_out(
    dataset="shapes", image_size=64, num_train=None, num_eval=None, eval_split=None, shapes=None
):
    """The training and held-out instance datasets of the array trainers.

    `"shapes"` images are generated at `image_size` (`num_train` and
    `num_eval` of them, `shapes` giving the defaults); any other
    `load_instance_dataset` spec is read from its `"train"` and
    `eval_split` (default `"val"`) splits, resized to `image_size`
    (`resize_instances`, which is also the resolution it is scored at) and
    cut to `num_train` / `num_eval` images when those are given.

    Returns:
        `(train, held_out, info)`.
    """
    if dataset == "shapes":
        default_train, default_eval = shapes or (None, None)
        num_train = default_train if num_train is None else num_train
        num_eval = default_eval if num_eval is None else num_eval

        def generate(split, count):
            options = {"image_size": image_size}
            if count is not None:
                options["num_images"] = count
            return load_instance_dataset("shapes", split, **options)

        train, info = generate("train", num_train)
        held_out, _ = generate(eval_split or "test", num_eval)
        return train, held_out, info
    train, info = load_instance_dataset(dataset, "train")
    held_out, _ = load_instance_dataset(dataset, eval_split or "val")
    train, held_out = resize_instances(train, image_size), resize_instances(held_out, image_size)
    if num_train is not None:
        train = train.take(check_int(num_train, "num_train"))
    if num_eval is not None:
        held_out = held_out.take(check_int(num_eval, "num_eval"))
    return train, held_out, info


def fit_arrays(model, loss, inputs, targets, weights, batch_size, epochs, learning_rate, verbose):
    """Compiles `model` with Adam and `loss`, fits the arrays, shuffled.

    Returns:
        `(history dict, seconds)`.
    """
    model.compile(keras.optimizers.Adam(learning_rate), loss=loss)
    start = time.perf_counter()
    history = model.fit(
        inputs,
        targets,
        sample_weight=weights,
        batch_size=batch_size,
        epochs=epochs,
        shuffle=True,
        verbose=verbose,
    )
    return history.history, time.perf_counter() - start


def predict_instances(model, dataset, batch_size=16, score_threshold=0.0):
    """Runs `model.detect` over an instance dataset; returns per-image predictions.

    Args:
        model: an `rpn` or `mnc` model.
        dataset: unbatched instance dicts with `images` and `image_id`.
            Images of one static size are batched by `batch_size`, others
            one at a time.
        batch_size: int. Defaults to `16`.
        score_threshold: float. Detections scoring at or below it are
            dropped. Defaults to `0`.

    Returns:
        A list of dicts `{"image_id", "boxes" (K, 4), "scores" (K,),
        "labels" (K,), "masks" (K, H, W) uint8}`, the format of
        `evaluate_instances`.
    """
    batch_size = check_int(batch_size, "batch_size")
    static = dataset.element_spec["images"].shape.is_fully_defined()
    # Only the images and ids are batched: instance counts differ per image.
    images = dataset.map(lambda e: {"images": e["images"], "image_id": e["image_id"]})
    batches = images.batch(batch_size if static else 1)
    detect = tf.function(model.detect, reduce_retracing=True)
    predictions = []
    for example in batches:
        outputs = {k: v.numpy() for k, v in detect(example["images"]).items()}
        for row, image_id in enumerate(example["image_id"].numpy()):
            count = int(outputs["num_detections"][row])
            keep = np.flatnonzero(outputs["scores"][row, :count] > score_threshold)
            predictions.append(
                {
                    "image_id": int(image_id),
                    "boxes": outputs["boxes"][row, keep],
                    "scores": outputs["scores"][row, keep],
                    "labels": outputs["classes"][row, keep],
                    "masks": outputs["masks"][row, keep],
                }
            )
    return predictions


def evaluate_instance_model(model, dataset, num_classes, batch_size=16):
    """COCO-style scores of `model` on an instance dataset.

    Returns:
        A dict: `mask_AP`, `mAPr@0.5`, `mAPr@0.7` (mask IoU), `box_AP`,
        `box_AP50`, `seconds` (prediction and evaluation time),
        `predict_seconds_per_image` (`detect`, its masks pasted at image
        resolution, copied to NumPy).
    """
    start = time.perf_counter()
    predictions = predict_instances(model, dataset, batch_size)
    predict_seconds = time.perf_counter() - start
    segm = evaluate_instances(predictions, dataset, "segm", num_classes)
    bbox = evaluate_instances(predictions, dataset, "bbox", num_classes)
    return {
        "mask_AP": segm["AP"],
        "mAPr@0.5": segm["mAPr@0.5"],
        "mAPr@0.7": segm["mAPr@0.7"],
        "box_AP": bbox["AP"],
        "box_AP50": bbox["AP50"],
        "seconds": time.perf_counter() - start,
        "predict_seconds_per_image": predict_seconds / max(1, len(predictions)),
    }


def train_instance_model(
    model="mnc",
    dataset="shapes",
    image_size=64,
    num_train=1000,
    num_val=200,
    max_instances=None,
    batch_size=8,
    epochs=10,
    learning_rate=1e-3,
    time_budget=None,
    flip=True,
    model_kwargs=None,
    jit_compile=False,
    seed=0,
    evaluate=True,
    verbose=0,
):
    """Trains an instance model and scores it on the held-out split.

    Args:
        model: str. Registry name (`"mnc"` or `"rpn"`), or a built model.
            Defaults to `"mnc"`.
        dataset: str. `load_instance_dataset` spec. Defaults to `"shapes"`.
        image_size: int or `(height, width)`. The shapes are generated at
            this size; other datasets are resized to it, for training and
            for scoring (`resize_instances`: the model is scored at the
            scale it learned). Defaults to `64`.
        num_train, num_val: int. Shapes images per split (ignored for other
            datasets). Defaults to `1000` and `200`.
        max_instances: int or `None`. Instances kept per training image
            (the rest are dropped, so they would be taught as background).
            Defaults to `None`: 3 for the shapes (as many as they are
            generated with), every instance otherwise.
        batch_size: int. Defaults to `8`.
        epochs: int. Passes over the training images. Defaults to `10`.
        learning_rate: float. Peak Adam learning rate, cosine-decayed to
            zero over the epochs. Defaults to `1e-3`.
        time_budget: float or `None`. Stop training after this many
            seconds. Defaults to `None`.
        flip: bool. Random horizontal flips. Defaults to `True`.
        model_kwargs: dict. Builder arguments (`num_classes` is taken from
            the dataset).
        jit_compile: bool. Compile the train step with XLA. Defaults to
            `False`.
        seed: int. Seeds Keras, TF, NumPy and the data order.
        evaluate: bool. Score the validation split. Defaults to `True`.
        verbose: int. `fit` verbosity. Defaults to `0`.

    Returns:
        A dict: `model`, `history` (dict of per-epoch losses),
        `train_seconds`, `steps`, and with `evaluate` the
        `evaluate_instance_model` scores under `metrics`.
    """
    keras.utils.set_random_seed(seed)
    shapes = dataset == "shapes"
    if shapes and max_instances is None:
        max_instances = 3
    options = {"image_size": image_size, "max_instances": max_instances} if shapes else {}
    train_data, info = load_instance_dataset(
        dataset, "train", **({"num_images": num_train, **options} if shapes else {})
    )
    val_data, _ = load_instance_dataset(
        dataset, "val", **({"num_images": num_val, **options} if shapes else {})
    )
    if not shapes:
        val_data = resize_instances(val_data, image_size)
    if isinstance(model, str):
        kwargs = dict(model_kwargs or {})
        if get_model_spec(model).name == "mnc":
            kwargs.setdefault("num_classes", info.num_classes)
        model = create_model(model, **kwargs)
    count = num_train if shapes else int(train_data.cardinality())
    if count < 0:
        count = sum(1 for _ in train_data)
    steps = max(1, count // batch_size)
    schedule = keras.optimizers.schedules.CosineDecay(learning_rate, steps * epochs)
    model.compile(keras.optimizers.Adam(schedule), jit_compile=jit_compile)
    batches = instance_pipeline(
        train_data,
        batch_size,
        image_size=image_size,
        max_instances=max_instances,
        shuffle=min(count, 2048),
        flip=flip,
        seed=seed,
        drop_remainder=True,
    )
    callbacks = [TimeBudget(time_budget)] if time_budget else []
    start = time.perf_counter()
    history = model.fit(
        batches.repeat(),
        steps_per_epoch=steps,
        epochs=epochs,
        callbacks=callbacks,
        verbose=verbose,
    )
    result = {
        "model": model,
        "history": history.history,
        "train_seconds": time.perf_counter() - start,
        "steps": int(model.optimizer.iterations.numpy()),
    }
    if evaluate:
        result["metrics"] = evaluate_instance_model(model, val_data, info.num_classes)
    return result
