"""The instance-segmentation life cycle: data -> fit -> COCO scores.

`train_instance_model` trains `rpn` and `mnc` with `model.fit` on
`instance_pipeline` batches; `train_hypercolumns` and `train_sds` build
their training arrays on the host (jittered ground-truth boxes; labelled
bottom-up regions) and `fit` them through `array_epoch`. Each scores its
held-out split with `keras_segattn.evaluation.instance` (mask AP, mAP^r at
0.5 and 0.7, box AP) and returns a dict that `segattn instance-train`
(`train_instances`) writes to the run folder.

Given a `RunFolder` (`run=`), a trainer fits with the folder's callbacks
(the resume state, `history.csv`, TensorBoard logs, `best.keras` by the
validation loss on held-out data built like the training data), starts its
data at the folder's resume epoch and scores `best.keras`. The data of
epoch `e` are a function of `(seed, e)` alone (`instance_epoch`,
`array_epoch`), and `rpn` and `mnc` draw their anchor and RoI
minibatches from a Keras `SeedGenerator` of the model, whose state the
resume state carries, so a killed run resumed from its folder ends with the
weights of an uninterrupted one (bit for bit under `--deterministic`).
"""

import dataclasses
import math
import time

import keras
import numpy as np
import tensorflow as tf

from keras_segattn.checkpoints import load_model
from keras_segattn.core.instances import jitter_box, real_instances
from keras_segattn.core.validation import check_int
from keras_segattn.data.catalogue import is_generated
from keras_segattn.data.instances import (
    instance_pipeline,
    load_instance_dataset,
    resize_instances,
)
from keras_segattn.evaluation.instance import (
    evaluate_instance_model,
    evaluate_instances,
    mean_matched_iou,
    oracle_predictions,
    proposal_recall,
)
from keras_segattn.layers import roi_align
from keras_segattn.models.instance.hypercolumns import (
    hypercolumns,
    resegment_detections,
)
from keras_segattn.models.instance.regions import mask_iou, masks_to_boxes, propose_regions
from keras_segattn.models.instance.sds import crop_regions, sds, sds_detect, sds_parts
from keras_segattn.models.registry import GENERATED_PRESET, create_model, get_model_spec
from keras_segattn.recipes.config import RecipeConfig, option
from keras_segattn.recipes.distribute import is_chief, training_context
from keras_segattn.recipes.runs import RunFolder
from keras_segattn.recipes.schedules import SCHEDULES, check_schedule, per_step
from keras_segattn.tasks import fit_epochs, task_of

# What picks `best.keras` for every instance model: the loss on held-out
# data (the models' own losses for rpn and mnc, `fit`'s for the arrays).
MONITOR = "val_loss"


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
    if is_generated(dataset):
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


def _resume_epoch(run):
    """A trainer's resume epoch (`RunFolder.resume_epoch`; 0 without a run)."""
    return 0 if run is None else run.resume_epoch()


def array_epoch(arrays, batch_size, seed=0):
    """The batches of one epoch over training arrays, as a function of the
    epoch (`fit_epochs`' `one_epoch`).

    Each epoch visits every example once, in the order of a stateless
    shuffle seeded `(seed, epoch)`, in batches of `batch_size` (the last one
    smaller, as `fit` batches arrays), so epoch `e` is the same batches
    whether or not the run was interrupted before it.

    Args:
        arrays: a structure of arrays with one leading length, e.g.
            `(inputs, targets, sample_weights)`.
        batch_size: int.
        seed: int. Defaults to `0`.

    Returns:
        A function from the epoch (an int64 scalar tensor) to a
        `tf.data.Dataset` of batches with the structure of `arrays`
        (`array_steps` of them).
    """
    batch_size = check_int(batch_size, "batch_size")
    tensors = tf.nest.map_structure(tf.convert_to_tensor, arrays)
    count = int(tf.nest.flatten(tensors)[0].shape[0])

    def one_epoch(epoch):
        key = tf.stack([tf.constant(seed, tf.int64), epoch])
        order = tf.random.experimental.stateless_shuffle(tf.range(count, dtype=tf.int64), key)
        return (
            tf.data.Dataset.from_tensor_slices(order)
            .batch(batch_size)
            .map(lambda index: tf.nest.map_structure(lambda a: tf.gather(a, index), tensors))
        )

    return one_epoch


def array_steps(arrays, batch_size):
    """Batches of one epoch of `array_epoch`."""
    return math.ceil(len(tf.nest.flatten(arrays)[0]) / batch_size)


def fit_arrays(
    model,
    loss,
    inputs,
    targets,
    weights,
    batch_size,
    epochs,
    learning_rate,
    verbose,
    schedule="constant",
    seed=0,
    validation=None,
    run=None,
    callbacks=None,
):
    """Compiles `model` with Adam and `loss`, fits the arrays, shuffled.

    Args:
        model, loss: the model and its `compile` loss.
        inputs, targets, weights: the training arrays (`sample_weight`).
        batch_size, epochs, learning_rate, verbose: of `fit` (Adam).
        schedule: `"constant"` (the default), `"cosine"` or `"step"`: the
            learning rate over the steps of the run
            (`recipes.schedules.per_step`).
        seed: int. The data order of each epoch (`array_epoch`).
        validation: `(inputs, targets, weights)` held-out arrays, or
            `None`. Their loss is `val_loss` in the history.
        run: a `RunFolder` or `None`. Its callbacks (`best.keras` by
            `val_loss`, which needs `validation`), and its resume epoch.
        callbacks: list of more `keras.callbacks.Callback`s.

    Returns:
        `(history dict, seconds)`: the history of this `fit` call; the
        training time, of every sitting with a `run`.
    """
    arrays = (inputs, targets, weights)
    steps = array_steps(arrays, batch_size)
    model.compile(
        keras.optimizers.Adam(per_step(schedule, learning_rate, steps * epochs)), loss=loss
    )
    fit_kwargs = {}
    if validation is not None:
        held_out = tf.data.Dataset.from_tensor_slices(tuple(validation))
        fit_kwargs["validation_data"] = held_out.batch(batch_size)
    if run is not None:
        monitor = MONITOR if validation is not None else "loss"
        callbacks = run.callbacks(monitor, "min") + list(callbacks or [])
    start = time.perf_counter()
    history = fit_epochs(
        model,
        array_epoch(arrays, batch_size, seed),
        epochs,
        callbacks,
        resume_epoch=_resume_epoch(run),
        steps_per_epoch=steps,
        verbose=verbose,
        **fit_kwargs,
    )
    seconds = time.perf_counter() - start if run is None else run.training_seconds()
    return history.history, seconds


def instance_epoch(
    dataset,
    batch_size,
    image_size=None,
    max_instances=None,
    shuffle=None,
    flip=False,
    seed=0,
    drop_remainder=True,
):
    """The `instance_pipeline` batches of one epoch, as a function of the
    epoch (`fit_epochs`' `one_epoch`).

    Epoch `e` is one pass over `dataset`, shuffled and flipped with seed
    `seed + e`, so it is the same batches whether or not the run was
    interrupted before it. With `drop_remainder` (the default) every batch
    is full; a dataset smaller than one batch needs `drop_remainder=False`
    (its one batch would be dropped: an epoch of nothing).

    Returns:
        A function from the epoch (an int64 scalar tensor) to a
        `tf.data.Dataset` of `(images, targets)` batches.
    """

    def one_epoch(epoch):
        return instance_pipeline(
            dataset,
            batch_size,
            image_size=image_size,
            max_instances=max_instances,
            shuffle=shuffle,
            flip=flip,
            seed=seed + epoch,
            drop_remainder=drop_remainder,
        )

    return one_epoch


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
    schedule="cosine",
    run=None,
    callbacks=None,
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
        num_train: int. Shapes training images (ignored for other
            datasets). Defaults to `1000`.
        num_val: int. Shapes validation images (ignored for other
            datasets). Defaults to `200`.
        max_instances: int or `None`. Instances kept per training image
            (the rest are dropped, so they would be taught as background).
            Defaults to `None`: 3 for the shapes (as many as they are
            generated with), every instance otherwise.
        batch_size: int. Defaults to `8`.
        epochs: int. Passes over the training images. Defaults to `10`.
        learning_rate: float. Peak Adam learning rate. Defaults to `1e-3`.
        time_budget: float or `None`. Stop training after this many
            seconds. Defaults to `None`.
        flip: bool. Random horizontal flips. Defaults to `True`.
        model_kwargs: dict. Builder arguments (`num_classes` is taken from
            the dataset).
        jit_compile: bool. Compile the train step with XLA. Defaults to
            `False`.
        seed: int. Seeds Keras, TF, NumPy and the data order (epoch `e`
            is shuffled and flipped with `seed + e`: `instance_epoch`).
        evaluate: bool. Score the validation split. Defaults to `True`.
        verbose: int. `fit` verbosity. Defaults to `0`.
        schedule: `"cosine"` (decayed to zero over the steps of the run,
            the default), `"constant"` or `"step"` (`recipes.schedules`).
        run: a `RunFolder` or `None`. With one, `fit` validates on the
            `"val"` split every epoch, writes the folder's resume state,
            `history.csv`, TensorBoard logs and `best.keras` (lowest
            `val_loss`), goes on from a saved state, and the scores are of
            `best.keras`. Defaults to `None`.
        callbacks: list of more `keras.callbacks.Callback`s for `fit`.

    Returns:
        A dict: `model` (as trained last), `history` (dict of per-epoch
        losses of this call's `fit`), `train_seconds` (of every sitting
        with a `run`), `steps` (optimizer steps), and with `evaluate` the
        `evaluate_instance_model` scores under `metrics`.
    """
    check_schedule(schedule)
    epochs = check_int(epochs, "epochs")
    keras.utils.set_random_seed(seed)
    shapes = is_generated(dataset)
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
        kwargs.setdefault("num_classes", info.num_classes)  # rpn ignores it
        model = create_model(model, **kwargs)
    count = num_train if shapes else int(train_data.cardinality())
    if count < 0:
        count = sum(1 for _ in train_data)
    steps = max(1, count // batch_size)
    rate = per_step(schedule, learning_rate, steps * epochs)
    model.compile(keras.optimizers.Adam(rate), jit_compile=jit_compile)
    one_epoch = instance_epoch(
        train_data,
        batch_size,
        image_size=image_size,
        max_instances=max_instances,
        shuffle=min(count, 2048),
        flip=flip,
        seed=seed,
        drop_remainder=count >= batch_size,  # else one smaller batch: `steps` is 1
    )
    callbacks = ([TimeBudget(time_budget)] if time_budget else []) + list(callbacks or [])
    fit_kwargs = {}
    if run is not None:
        callbacks = run.callbacks(MONITOR, "min") + callbacks  # the state is restored first
        fit_kwargs["validation_data"] = instance_pipeline(
            val_data, batch_size, image_size=image_size, max_instances=max_instances
        )
    start = time.perf_counter()
    history = fit_epochs(
        model,
        one_epoch,
        epochs,
        callbacks,
        resume_epoch=_resume_epoch(run),
        steps_per_epoch=steps,
        verbose=verbose,
        **fit_kwargs,
    )
    seconds = time.perf_counter() - start if run is None else run.training_seconds()
    result = {
        "model": model,
        "history": history.history,
        "train_seconds": seconds,
        "steps": int(model.optimizer.iterations.numpy()),
    }
    if evaluate:
        scored = model if run is None else run.best_model(model)
        result["metrics"] = evaluate_instance_model(scored, val_data, info.num_classes)
    return result


# ---------------------------------------------------------------------------
# Hypercolumns: training boxes jittered around the ground truth
# ---------------------------------------------------------------------------


def crop_masks_to_boxes(masks, boxes, mask_size):
    """Each instance mask resampled to the grid of its box, thresholded at 0.5.

    Uses the same RoIAlign sampling as the network's taps (2 x 2 samples
    per grid cell, half-pixel centres), so targets line up with outputs.

    Args:
        masks: `(N, H, W)` binary masks.
        boxes: `(N, 4)` `"xyxy"` pixels, box `n` for mask `n`.
        mask_size: int or `(M_h, M_w)`.

    Returns:
        float32 `(N, M_h, M_w)` in `{0, 1}`.
    """
    masks = np.asarray(masks, np.float32)
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    size = (mask_size, mask_size) if isinstance(mask_size, (int, np.integer)) else mask_size
    if len(masks) == 0:
        return np.zeros((0, *size), np.float32)
    # One feature map per mask; box n reads channel n only.
    features = masks.transpose(1, 2, 0)[None]
    crops = roi_align(features, boxes[None], size, sampling_ratio=2, spatial_scale=1.0)
    crops = crops.numpy()[0]  # (N, M_h, M_w, N)
    index = np.arange(len(masks))
    return (crops[index, :, :, index] >= 0.5).astype(np.float32)


def hypercolumn_examples(
    dataset, mask_size, copies=2, min_iou=0.7, max_boxes=None, num_images=None, seed=0
):
    """Training arrays for `model.fit` from an instance dataset.

    Every non-crowd instance gives `copies` boxes jittered to IoU >=
    `min_iou` with its ground-truth box (`jitter_box`); the target is the
    instance's mask on the box grid (`crop_masks_to_boxes`). Each copy is
    a separate example image with its own jittered boxes; boxes are padded
    to `max_boxes` with weight 0.

    Args:
        dataset: `tf.data.Dataset` of unbatched instance dicts (see
            `keras_segattn.data.instances`), with equal-size images.
        mask_size: int or `(M_h, M_w)`, the model's.
        copies: int. Jittered copies of each image. Defaults to `2`.
        min_iou: float. Defaults to `0.7`.
        max_boxes: int or `None`. Boxes per example (the most instances of
            an image when `None`).
        num_images: int or `None`. Images read. Defaults to all.
        seed: int. Defaults to `0`.

    Returns:
        `(inputs, targets, sample_weights)`: `inputs` a dict with `images`
        uint8 `(E, H, W, 3)`, `boxes` `(E, N, 4)`, `classes` int32 `(E,
        N)`; `targets` `(E, N, M_h, M_w)`; `sample_weights` `(E, N, 1)`, 0
        on padding (what `fit` needs for `(E, N, M, M)` outputs under
        binary cross-entropy).
    """
    rng = np.random.default_rng(seed)
    size = (mask_size, mask_size) if isinstance(mask_size, (int, np.integer)) else mask_size
    records = []
    for index, example in enumerate(dataset.as_numpy_iterator()):
        if num_images is not None and index >= num_images:
            break
        image = example["images"]
        boxes, labels, masks = real_instances(example)
        for _ in range(copies):
            jittered = np.array(
                [jitter_box(b, image.shape, rng, min_iou) for b in boxes], np.float32
            ).reshape(-1, 4)
            records.append((image, jittered, labels, crop_masks_to_boxes(masks, jittered, size)))
    if not records:
        raise ValueError("dataset yielded no images")
    count = max_boxes or max(1, max(len(r[1]) for r in records))
    num = len(records)
    height, width = records[0][0].shape[:2]
    images = np.stack([r[0] for r in records]).astype(np.uint8)
    boxes = np.tile(np.array([0.0, 0.0, 1.0, 1.0], np.float32), (num, count, 1))
    classes = np.ones((num, count), np.int32)
    targets = np.zeros((num, count, *size), np.float32)
    weights = np.zeros((num, count, 1), np.float32)
    for i, (_, b, lab, t) in enumerate(records):
        n = min(len(b), count)
        boxes[i, :n], classes[i, :n], targets[i, :n], weights[i, :n] = b[:n], lab[:n], t[:n], 1.0
    inputs = {"images": images, "boxes": boxes, "classes": classes}
    return inputs, targets, weights


def train_hypercolumns(
    dataset="shapes",
    num_train_images=None,
    num_eval_images=None,
    eval_split=None,
    image_size=64,
    epochs=6,
    batch_size=8,
    width=0.25,
    mask_size=28,
    grid_size=5,
    fc_units=64,
    learning_rate=1e-3,
    copies=2,
    detector=None,
    seed=0,
    verbose=0,
    schedule="constant",
    run=None,
    callbacks=None,
):
    """Trains a small hypercolumns model and evaluates it (CPU).

    Data from `train_and_held_out`: by default the shapes (300 train
    images, 40 held-out ones from `"test"`); any other instance spec (e.g.
    `"coco:<root>"`) is resized to `image_size` and held out from `"val"`.
    Boxes are ground truth jittered to IoU >= 0.7 (`hypercolumn_examples`,
    `oracle_predictions`). Adam on binary cross-entropy. The defaults take
    about 1.5 to 3 minutes on 2 CPU cores.

    Args:
        dataset: str. `load_instance_dataset` spec. Defaults to `"shapes"`.
        num_train_images: int or `None`. Training images (each used
            `copies` times). Defaults to `300` shapes, or all.
        num_eval_images: int or `None`. Held-out images. Defaults to `40`
            shapes, or all.
        eval_split: str or `None`. Split of the held-out images. Defaults
            to `"test"` for the shapes, `"val"` otherwise.
        image_size: int or `(height, width)`. Size of the shapes images, or
            the size other images are resized to. Defaults to `64`.
        epochs: int. Of `fit`. Defaults to `6`.
        batch_size: int. Of `fit`. Defaults to `8`.
        learning_rate: float. Adam's. Defaults to `1e-3`.
        width: float. Of `hypercolumns`. Defaults to `0.25`.
        mask_size: int. Of `hypercolumns`. Defaults to `28`.
        grid_size: int. Of `hypercolumns`. Defaults to `5`.
        fc_units: int. Of `hypercolumns`. Defaults to `64`.
        copies: int. Jittered copies of each training image. Defaults to
            `2`.
        detector: a trained `sds` model, a `.keras` path to one, or `None`.
            With one, the full detector is scored as well: the paper's
            pipeline, the detector's boxes, labels and scores with the
            hypercolumn masks (`sds_detect`, `resegment_detections`), under
            `detector_metrics`, and the detector's own under
            `detector_only_metrics`. Its classes must be the dataset's.
            Defaults to `None`.
        seed: int. Defaults to `0`.
        verbose: int. `fit`'s verbosity. Defaults to `0`.
        schedule: `"constant"` (the default), `"cosine"` or `"step"`: the
            learning rate over the steps of the run (`recipes.schedules`).
        run: a `RunFolder` or `None`. With one, `fit` validates on arrays
            built like the training arrays from the held-out images
            (`copies` jittered boxes each, seeded `seed + 1`), writes the
            folder's resume state, `history.csv`, TensorBoard logs and
            `best.keras` (lowest `val_loss`), goes on from a saved state,
            and the scores are of `best.keras`. Defaults to `None`.
        callbacks: list of more `keras.callbacks.Callback`s for `fit`.

    Returns:
        A dict: `model` (as trained last), `history` (Keras history dict),
        `steps` (optimizer steps), `num_examples`, `metrics` and
        `box_metrics` (`evaluate_instances` "segm" results of the network's
        masks and of whole-box masks on the same boxes), `mean_iou` and
        `box_mean_iou` (mean mask IoU with the matched ground truth),
        `data_seconds`, `train_seconds`, `eval_seconds`; with a `detector`
        also `detector_metrics` and `detector_only_metrics`.

    Raises:
        ValueError: a `detector` that is not an `sds` model of the
            dataset's classes.
    """
    start = time.perf_counter()
    keras.utils.set_random_seed(seed)
    train, held_out, info = train_and_held_out(
        dataset, image_size, num_train_images, num_eval_images, eval_split, shapes=(300, 40)
    )
    check_schedule(schedule)
    detector = _sds_detector(detector, info.num_classes)
    inputs, targets, weights = hypercolumn_examples(train, mask_size, copies=copies, seed=seed)
    validation = None
    if run is not None:
        validation = hypercolumn_examples(held_out, mask_size, copies=copies, seed=seed + 1)
    data_seconds = time.perf_counter() - start

    model = hypercolumns(
        num_classes=info.num_classes,
        width=width,
        mask_size=mask_size,
        grid_size=grid_size,
        fc_units=fc_units,
    )
    history, train_seconds = fit_arrays(
        model,
        "binary_crossentropy",
        inputs,
        targets,
        weights,
        batch_size,
        epochs,
        learning_rate,
        verbose,
        schedule=schedule,
        seed=seed,
        validation=validation,
        run=run,
        callbacks=callbacks,
    )
    steps = int(model.optimizer.iterations.numpy())

    start = time.perf_counter()
    scored = model if run is None else run.best_model(model)
    predictions, box_predictions = oracle_predictions(scored, held_out, seed=seed + 1)
    metrics = evaluate_instances(predictions, held_out, num_classes=info.num_classes)
    box_metrics = evaluate_instances(box_predictions, held_out, num_classes=info.num_classes)
    eval_seconds = time.perf_counter() - start
    full = {}
    if detector is not None:
        examples = list(held_out.as_numpy_iterator())
        found = [sds_detect(detector, e["images"], int(e["image_id"])) for e in examples]
        masks = [resegment_detections(scored, e["images"], d) for e, d in zip(examples, found)]
        full = {
            "detector_metrics": evaluate_instances(masks, held_out, num_classes=info.num_classes),
            "detector_only_metrics": evaluate_instances(
                found, held_out, num_classes=info.num_classes
            ),
        }
    return {
        **full,
        "model": model,
        "history": history,
        "steps": steps,
        "num_examples": int(len(targets)),
        "metrics": metrics,
        "box_metrics": box_metrics,
        "mean_iou": mean_matched_iou(predictions, held_out),
        "box_mean_iou": mean_matched_iou(box_predictions, held_out),
        "data_seconds": data_seconds,
        "train_seconds": train_seconds,
        "eval_seconds": eval_seconds,
    }


def _sds_detector(detector, num_classes):
    """`detector` (`None`, an `sds` model or a `.keras` path) checked against
    the dataset's classes."""
    if detector is None:
        return None
    if isinstance(detector, str):
        if not detector.endswith(".keras"):
            raise ValueError(f"detector must be an sds model or a .keras path; got {detector!r}.")
        detector = load_model(detector, "detector")
    classes = sds_parts(detector, "detector").num_classes
    if classes != num_classes:
        raise ValueError(
            f"detector scores {classes} classes but the dataset has {num_classes}; train both "
            "on the same data."
        )
    return detector


# ---------------------------------------------------------------------------
# SDS: bottom-up regions labelled by overlap
# ---------------------------------------------------------------------------


def label_regions(region_masks, gt_masks, gt_labels, positive_iou=0.5, negative_iou=0.3):
    """Class and matched instance of each region by mask IoU.

    Returns:
        `(labels, matches)`: int32 `(R,)`, the class of the best-overlapping
        instance where its IoU is `>= positive_iou`, 0 (background) where
        the best IoU is `< negative_iou`, -1 (unused) in between; int64
        `(R,)`, that instance's index (-1 without instances).
    """
    if not 0.0 <= negative_iou <= positive_iou <= 1.0:
        raise ValueError(
            "Expected 0 <= negative_iou <= positive_iou <= 1; got "
            f"negative_iou={negative_iou!r}, positive_iou={positive_iou!r}."
        )
    count = len(region_masks)
    if len(gt_masks) == 0:
        return np.zeros(count, np.int32), -np.ones(count, np.int64)
    ious = mask_iou(region_masks, gt_masks)
    matches = ious.argmax(axis=1)
    best = ious[np.arange(count), matches]
    labels = np.full(count, -1, np.int32)
    labels[best >= positive_iou] = np.asarray(gt_labels)[matches[best >= positive_iou]]
    labels[best < negative_iou] = 0
    return labels, matches.astype(np.int64)


def sds_examples(
    dataset,
    crop_size,
    grid_size,
    num_images=None,
    proposal_kwargs=None,
    positive_iou=0.5,
    negative_iou=0.3,
    negatives_per_positive=3,
    include_ground_truth=True,
    seed=0,
    proposals=None,
):
    """Training arrays for an `sds` model from an instance dataset.

    Per image: the proposals (`propose_regions(**proposal_kwargs)`) plus,
    with `include_ground_truth`, the ground-truth masks themselves; labels
    by `label_regions`; at most `negatives_per_positive` background
    regions per positive (at least that many per image), drawn at random.
    A positive's figure-ground target is its instance's mask averaged over
    the `grid_size x grid_size` cells of the region's box; background
    regions have weight 0 on that output.

    Args:
        dataset: `tf.data.Dataset` of unbatched instance dicts.
        crop_size: int. The model's crop size.
        grid_size: int. The model's refinement grid.
        num_images: int or `None`. Defaults to all.
        proposal_kwargs: dict or `None`. Defaults to `None`.
        positive_iou: float. Defaults to `0.5`.
        negative_iou: float. Defaults to `0.3`.
        negatives_per_positive: int. Defaults to `3`.
        include_ground_truth: bool. Defaults to `True`.
        seed: int. Defaults to `0`.
        proposals: list or `None`. Each image's `propose_regions` result,
            in dataset order, if already computed. Defaults to `None`
            (computed here, with `proposal_kwargs`).

    Returns:
        `(inputs, targets, sample_weights)` for `fit`: `inputs` a dict with
        `box_crops` uint8 `(E, S, S, 3)` and `region_masks` `(E, S, S)`;
        `targets` a tuple `(labels (E,), figure_ground (E, G, G))`;
        `sample_weights` a tuple `(ones (E,), positive (E, 1))` (the
        figure-ground loss is `(E, G)` before weighting).
    """
    rng = np.random.default_rng(seed)
    crops, crop_masks, labels, targets, weights = [], [], [], [], []
    for index, example in enumerate(dataset.as_numpy_iterator()):
        if num_images is not None and index >= num_images:
            break
        image = example["images"]
        _, gt_labels, gt_masks = real_instances(example)
        gt_masks = gt_masks.astype(bool)
        if proposals is None:
            masks, _ = propose_regions(image, **(proposal_kwargs or {}))
        else:
            masks, _ = proposals[index]
        if include_ground_truth and len(gt_masks):
            masks = np.concatenate([gt_masks, masks]) if len(masks) else gt_masks
        if len(masks) == 0:
            continue
        region_labels, matches = label_regions(
            masks, gt_masks, gt_labels, positive_iou, negative_iou
        )
        positives = np.flatnonzero(region_labels > 0)
        negatives = np.flatnonzero(region_labels == 0)
        limit = negatives_per_positive * max(len(positives), 1)
        if len(negatives) > limit:
            negatives = rng.choice(negatives, limit, replace=False)
        chosen = np.concatenate([positives, negatives]).astype(np.int64)
        if chosen.size == 0:
            continue
        boxes = masks_to_boxes(masks[chosen])
        box_crops, region_crops = crop_regions(image, masks[chosen], boxes, crop_size)
        grid = np.zeros((len(chosen), grid_size, grid_size), np.float32)
        is_positive = region_labels[chosen] > 0
        if is_positive.any() and len(gt_masks):
            matched = gt_masks[matches[chosen[is_positive]]].astype(np.float32)[..., None]
            sampled = roi_align(
                matched,
                boxes[is_positive][:, None],
                grid_size,
                sampling_ratio=max(2, -(-crop_size // grid_size)),
                spatial_scale=1.0,
            )
            grid[is_positive] = sampled.numpy()[:, 0, :, :, 0]
        crops.append(box_crops)
        crop_masks.append(region_crops)
        labels.append(region_labels[chosen])
        targets.append(grid)
        weights.append(is_positive.astype(np.float32))
    if not crops:
        raise ValueError("dataset gave no training regions")
    labels = np.concatenate(labels).astype(np.int32)
    inputs = {"box_crops": np.concatenate(crops), "region_masks": np.concatenate(crop_masks)}
    return (
        inputs,
        (labels, np.concatenate(targets)),
        (np.ones(len(labels), np.float32), np.concatenate(weights)[:, None]),
    )


def train_sds(
    dataset="shapes",
    num_train_images=None,
    num_eval_images=None,
    eval_split=None,
    image_size=64,
    crop_size=32,
    width=0.125,
    fc_units=64,
    grid_size=10,
    shared=False,
    dropout=0.0,
    epochs=8,
    batch_size=32,
    learning_rate=1e-3,
    proposal_kwargs=None,
    seed=0,
    verbose=0,
    schedule="constant",
    run=None,
    callbacks=None,
):
    """Trains a small SDS and evaluates it on held-out images (CPU).

    Data from `train_and_held_out`: by default the shapes (150 train
    images, 40 held-out ones from `"test"`: the refinement's superpixel
    setting was chosen on `"val"`); any other instance spec (e.g.
    `"coco:<root>"`) is resized to `image_size` and held out from `"val"`.
    Adam on the sum of the class cross-entropy and the figure-ground
    binary cross-entropy (positives only). Evaluation runs `sds_detect`
    with and without refinement on the same proposals. The defaults take
    about 2 to 2.5 minutes on 2 CPU cores.

    Args:
        dataset: str. `load_instance_dataset` spec. Defaults to `"shapes"`.
        num_train_images: int or `None`. Defaults to `150` shapes, or all.
        num_eval_images: int or `None`. Held-out images. Defaults to `40`
            shapes, or all.
        eval_split: str or `None`. Split of the held-out images. Defaults
            to `"test"` for the shapes, `"val"` otherwise.
        image_size: int or `(height, width)`. Size of the shapes images, or
            the size other images are resized to. Defaults to `64`.
        crop_size: int. Of `sds`. Defaults to `32`.
        width: float. Of `sds`. Defaults to `0.125`.
        fc_units: int. Of `sds`. Defaults to `64`.
        grid_size: int. Of `sds`. Defaults to `10`.
        shared: bool. Of `sds`. Defaults to `False`.
        dropout: float. Of `sds`. Defaults to `0.0`.
        epochs: int. Of `fit`. Defaults to `8`.
        batch_size: int. Of `fit`. Defaults to `32`.
        learning_rate: float. Adam's. Defaults to `1e-3`.
        proposal_kwargs: dict of `propose_regions` options. Defaults to
            `None`.
        seed: int. Defaults to `0`.
        verbose: int. `fit`'s verbosity. Defaults to `0`.
        schedule: `"constant"` (the default), `"cosine"` or `"step"`: the
            learning rate over the steps of the run (`recipes.schedules`).
        run: a `RunFolder` or `None`. With one, `fit` validates on the
            regions of the held-out images labelled as the training ones
            (`sds_examples`, seeded `seed + 1`), writes the folder's resume
            state, `history.csv`, TensorBoard logs and `best.keras` (lowest
            `val_loss`), goes on from a saved state, and the scores are of
            `best.keras`. Defaults to `None`.
        callbacks: list of more `keras.callbacks.Callback`s for `fit`.

    Returns:
        A dict: `model` (as trained last), `history`, `steps` (optimizer
        steps), `metrics` and `metrics_unrefined` (`evaluate_instances`
        "segm" results), `proposal_recall`, `num_examples`, `data_seconds`
        (the held-out proposals included), `train_seconds`, `eval_seconds`.
    """
    check_schedule(schedule)
    start = time.perf_counter()
    keras.utils.set_random_seed(seed)
    train, held_out, info = train_and_held_out(
        dataset, image_size, num_train_images, num_eval_images, eval_split, shapes=(150, 40)
    )
    inputs, targets, weights = sds_examples(
        train, crop_size, grid_size, proposal_kwargs=proposal_kwargs, seed=seed
    )
    # The held-out proposals, computed once: validation regions and scores.
    examples = list(held_out.as_numpy_iterator())
    proposals = [propose_regions(e["images"], **(proposal_kwargs or {})) for e in examples]
    validation = None
    if run is not None:
        validation = sds_examples(
            held_out, crop_size, grid_size, seed=seed + 1, proposals=proposals
        )
    data_seconds = time.perf_counter() - start

    model = sds(
        num_classes=info.num_classes,
        crop_size=crop_size,
        width=width,
        fc_units=fc_units,
        shared=shared,
        grid_size=grid_size,
        dropout=dropout,
    )
    history, train_seconds = fit_arrays(
        model,
        ["sparse_categorical_crossentropy", "binary_crossentropy"],
        inputs,
        targets,
        weights,
        batch_size,
        epochs,
        learning_rate,
        verbose,
        schedule=schedule,
        seed=seed,
        validation=validation,
        run=run,
        callbacks=callbacks,
    )
    steps = int(model.optimizer.iterations.numpy())

    start = time.perf_counter()
    scored = model if run is None else run.best_model(model)
    results = {}
    for refine in (True, False):
        predictions = [
            sds_detect(scored, e["images"], int(e["image_id"]), proposals=p, refine=refine)
            for e, p in zip(examples, proposals)
        ]
        results[refine] = evaluate_instances(predictions, held_out, num_classes=info.num_classes)
    eval_seconds = time.perf_counter() - start
    return {
        "model": model,
        "history": history,
        "steps": steps,
        "metrics": results[True],
        "metrics_unrefined": results[False],
        "proposal_recall": proposal_recall(held_out, proposals),
        "num_examples": int(len(targets[0])),
        "data_seconds": data_seconds,
        "train_seconds": train_seconds,
        "eval_seconds": eval_seconds,
    }


# ---------------------------------------------------------------------------
# `segattn instance-train`: any instance model, one run folder
# ---------------------------------------------------------------------------

# How `train_instances` trains each model: filled by `@trains`, next to the
# trainer, so a new instance model registers its way of training where it
# is written.
TRAINERS = {}


def trains(*models):
    """Registers the decorated function as how `train_instances` trains
    `models`: it is called `function(config, run, callbacks)` with an
    `InstanceConfig` and returns the trainer's result dict."""

    def register(function):
        TRAINERS.update(dict.fromkeys(models, function))
        return function

    return register


def _given(**options):
    """The options that are not `None` (`None`: the trainer's default)."""
    return {key: value for key, value in options.items() if value is not None}


@trains("rpn", "mnc")
def _train_detector(config, run, callbacks):
    """`train_instance_model`, the builder's preset for generated data first
    (`GENERATED_PRESET`, e.g. `mnc`'s light shapes model)."""
    presets = get_model_spec(config.model).presets
    kwargs = dict(presets.get(GENERATED_PRESET, {})) if is_generated(config.data) else {}
    kwargs.update(config.model_kwargs or {})
    return train_instance_model(
        config.model,
        config.data,
        image_size=config.image_size,
        max_instances=config.max_instances,
        model_kwargs=kwargs,
        learning_rate=config.learning_rate,
        seed=config.seed,
        verbose=config.verbose,
        run=run,
        callbacks=callbacks,
        **_given(
            num_train=config.num_train,
            num_val=config.num_val,
            epochs=config.epochs,
            batch_size=config.batch_size,
            schedule=config.schedule,
        ),
    )


def _array_trainer(trainer):
    """`train_instances`' call of an array trainer: `model_kwargs` are the
    trainer's own arguments (e.g. `crop_size=64`, `detector=<sds .keras>`)."""

    def train(config, run, callbacks):
        return trainer(
            dataset=config.data,
            image_size=config.image_size,
            learning_rate=config.learning_rate,
            seed=config.seed,
            verbose=config.verbose,
            run=run,
            callbacks=callbacks,
            **_given(
                num_train_images=config.num_train,
                num_eval_images=config.num_val,
                epochs=config.epochs,
                batch_size=config.batch_size,
                schedule=config.schedule,
            ),
            **(config.model_kwargs or {}),
        )

    train.__doc__ = f"`{trainer.__name__}` with an `InstanceConfig`."
    return train


trains("sds")(_array_trainer(train_sds))
trains("hypercolumns")(_array_trainer(train_hypercolumns))

# What an array trainer reports besides its scores, kept in metrics.json.
REPORTED = (
    "data_seconds",
    "eval_seconds",
    "num_examples",
    "metrics_unrefined",
    "box_metrics",
    "detector_metrics",
    "detector_only_metrics",
)


@dataclasses.dataclass
class InstanceConfig(RecipeConfig):
    """The arguments of `train_instances` (`segattn instance-train`)."""

    POSITIONAL = ("model", "data", "output")

    model: str = option("mnc", "the instance model", choices=tuple(sorted(TRAINERS)))
    data: str = option("shapes", "shapes | coco:<root>")
    output: str = option("runs/instance", "the run folder")
    image_size: int = option(64, "the side images are generated at or resized to")
    num_train: int | None = option(
        None, "training images (default: the trainer's; shapes: how many to generate)"
    )
    num_val: int | None = option(
        None, "held-out images (default: the trainer's; shapes: how many to generate)"
    )
    max_instances: int | None = option(
        None, "rpn, mnc: instances kept per training image (default: 3 for shapes, all otherwise)"
    )
    epochs: int | None = option(None, "passes over the training data (default: the trainer's)")
    batch_size: int | None = option(None, "the global batch (default: the trainer's)")
    learning_rate: float = option(1e-3, "the peak Adam learning rate")
    schedule: str | None = option(
        None,
        "the learning rate over the run's steps (default: cosine for rpn and mnc, constant for "
        "sds and hypercolumns)",
        choices=SCHEDULES,
    )
    model_kwargs: dict = option(
        {},
        "a builder argument (rpn, mnc) or trainer argument (sds, hypercolumns, e.g. "
        "crop_size=64); repeatable",
        flag="--model-arg",
    )
    verbose: int = option(2, "1 a progress bar, 2 one line an epoch, 0 silent")


def train_instances(*config, callbacks=None, overwrite=False, **arguments):
    """What `segattn instance-train` runs: any instance model, one run folder.

    `rpn` and `mnc` go through `train_instance_model` (on generated data
    with their `"shapes"` preset, when they have one); `sds` and
    `hypercolumns` through their array trainers, where `model_kwargs` are
    trainer arguments (e.g. `crop_size=64`, `detector=<sds .keras>`).
    `None` for `num_train`, `num_val`, `epochs`, `batch_size` or
    `schedule` means the trainer's default. A model registers how it is
    trained with `@trains`.

    The run folder is `train_segmenter`'s (`keras_segattn.recipes.runs`):
    `run.json`, the resume state, `history.csv`, TensorBoard `logs/`,
    `best.keras` by the lowest validation loss (`val_loss`, on held-out
    data: the `"val"` split for `rpn` and `mnc`, arrays built from the
    held-out images for `sds` and `hypercolumns`), `last.keras`, and
    `metrics.json` with the scores of `best.keras`. A killed run resumes
    from its last complete epoch, on the data an uninterrupted run would
    see; a finished one is reported, not trained again; a folder of other
    arguments is refused unless `overwrite`. `strategy` and
    `mixed_precision` are `train_segmenter`'s (the other workers of a
    multi-worker run return `None`).

    Args:
        *config: an `InstanceConfig` (which `arguments` may change), or up
            to three of its fields by position (`model`, `data`, `output`).
        callbacks: list of more `keras.callbacks.Callback`s for `fit`.
        overwrite: bool. Empty the run folder and start afresh.
        **arguments: `InstanceConfig` fields.

    Returns:
        The dict written to `<output>/metrics.json`.

    Examples:

    ```python
    summary = train_instances("mnc", "shapes", "runs/mnc", epochs=3)
    ```
    """
    config = InstanceConfig.make(*config, **arguments)
    check_int(config.epochs, "epochs", none_ok=True, hint=" (0 would score an untrained model)")
    if config.schedule is not None:
        check_schedule(config.schedule)
    if config.model not in TRAINERS:
        task = task_of(config.model)  # names an unknown model
        why = (
            "has no trainer (register one with @trains in keras_segattn.recipes.instance)"
            if task.train_command == "instance-train"
            else f"is a {task.name} model"
        )
        trained = ", ".join(sorted(TRAINERS))
        raise ValueError(f"train_instances trains {trained}; {config.model!r} {why}.")
    with training_context(
        config.strategy, config.mixed_precision, config.seed, config.deterministic
    ) as distribution:
        run = RunFolder(config.output, chief=is_chief(distribution))
        finished = run.start(config.record(), overwrite=overwrite, config_class=InstanceConfig)
        if finished is not None:
            print(f"{config.output} holds this run, finished (pass --overwrite to train it again).")
            return finished
        result = TRAINERS[config.model](config, run, callbacks)
    extra = {key: result[key] for key in REPORTED if key in result}
    if not run.finish_training(result["model"]):
        return None  # another worker than the chief
    state = run.state() or {}
    summary = {
        "model": config.model,
        "data": config.data,
        "image_size": config.image_size,
        "epochs": state.get("epoch"),  # the trainer's default if not given
        "best_epoch": state.get("best_epoch"),  # of best.keras, counted from 1
        "steps": result["steps"],
        "train_seconds": round(result["train_seconds"], 1),  # of every sitting
        **result.get("metrics", {}),
        **extra,
    }
    run.write_metrics(summary)
    return summary
