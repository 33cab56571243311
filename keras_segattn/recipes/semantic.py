"""The semantic-segmentation life cycle: data -> fit -> scores -> run folder.

`train_segmenter` is what `segattn train` runs for every semantic model
(FCN, DeconvNet with its two-stage schedule, the multiscale ConvNet, the
recurrent CNN) and for the patch classifier `patch_cnn`, which is trained on
patches (`patch_pipeline`) and scored densely (`dense_model`, shift-and-stitch
by shifted pooling) like the others.
"""

import dataclasses

import numpy as np

from keras_segattn.core.saving import crash_point
from keras_segattn.core.validation import check_int, optional_size
from keras_segattn.data.pipeline import (
    generation_options,
    load_segmentation_dataset,
    median_frequency_weights,
)
from keras_segattn.evaluation.semantic import evaluate_segmentation, format_report
from keras_segattn.models.registry import create_model
from keras_segattn.recipes.config import RecipeConfig, none_or_text, option
from keras_segattn.recipes.distribute import is_chief, training_context
from keras_segattn.recipes.runs import RunFolder
from keras_segattn.recipes.schedules import check_schedule, per_epoch
from keras_segattn.tasks import task_of

# The training pieces live with their task (`keras_segattn.tasks.semantic`).
from keras_segattn.tasks.semantic import (  # noqa: F401
    compile_segmenter,
    object_centred_dataset,
    two_stage_fit,
)

SCHEDULES = ("constant", "cosine")


def epoch_schedule(schedule, learning_rate, epochs, start=0):
    """The learning rate of each epoch, as a Keras `LearningRateScheduler`.

    `"constant"`: `learning_rate` throughout (no callback: returns `None`).
    `"cosine"`: `learning_rate` for the first `start` epochs (DeconvNet's
    stage 1), then decayed by a half cosine, once an epoch, towards 0 at
    epoch `epochs`: epoch k of the `epochs - start` decaying ones (from 0)
    uses `learning_rate * (1 + cos(pi * k / (epochs - start))) / 2`, so the
    last one trains at a small fraction of the rate (0.15% of it over 40
    epochs; half of it over 2). The rate is a function of the epoch number
    alone, so a run resumed from its folder goes on with the rate an
    uninterrupted run would use.
    """
    check_schedule(schedule, SCHEDULES)
    return per_epoch(schedule, learning_rate, epochs, start)


@dataclasses.dataclass
class SegmenterConfig(RecipeConfig):
    """The arguments of `train_segmenter` (`segattn train`)."""

    POSITIONAL = ("model", "data", "output")

    model: str = option("fcn8s", "a semantic model of `segattn models`, or patch_cnn")
    data: str = option("shapes", "shapes | camvid:<root> | voc:<root> | tfds:<name>")
    output: str = option("runs/train", "the run folder")
    num_images: int = option(1000, "training images of a generated dataset (shapes)")
    epochs: int = option(10, "the most epochs it trains (stage 1 included)")
    stage1_epochs: int = option(
        0, "DeconvNet's two-stage training: epochs on object-centred crops first"
    )
    patience: int | None = option(
        None,
        "stop once the validation metric (mean IoU; patch accuracy for patch_cnn) has not "
        "improved for this many epochs (after stage 1)",
    )
    batch_size: int = option(8, "the global batch")
    image_size: tuple | None = option(None, "H [W]: resize every image")
    crop_size: tuple | None = option(None, "H [W]: training crops")
    augment: bool = option(False, "random flip, scale and crop")
    width: float = option(1.0, "the builder's width multiplier")
    batch_norm: bool = option(False, "FCN: batch norm after every convolution (not in the paper)")
    weights: str | None = option(None, "none, imagenet or a weights file", parse=none_or_text)
    model_kwargs: dict = option(
        {},
        "another builder argument, e.g. instances=2 (recurrent_cnn); repeatable",
        flag="--model-arg",
    )
    learning_rate: float = option(1e-3, "Adam's learning rate")
    schedule: str = option(
        "constant",
        "the learning rate: constant, or cosine-decayed once an epoch (after stage 1) towards 0 "
        "at --epochs",
        choices=SCHEDULES,
    )
    class_weights: str | list | None = option(
        "none",
        "median: median-frequency balancing (Python: also an array)",
        choices=("none", "median"),
    )
    patches_per_image: int = option(64, "patch_cnn: labelled patches drawn per image and epoch")
    val_split: str = option("val", "the split that picks best.keras")
    eval_split: str = option("test", "the split scored at the end")


# Builder arguments with an argument of their own (`num_classes`: the data's).
OWN_ARGUMENTS = ("width", "weights", "batch_norm", "num_classes")


def _check_model_kwargs(model_kwargs):
    for key in OWN_ARGUMENTS:
        if key in (model_kwargs or {}):
            where = (
                "it is the dataset's"
                if key == "num_classes"
                else f"use {key}= (--{key.replace('_', '-')}) instead"
            )
            raise ValueError(f"model_kwargs (--model-arg) sets {key!r}: {where}.")


def train_segmenter(*config, callbacks=None, overwrite=False, **arguments):
    """Trains a semantic model (or `patch_cnn`), scores its best checkpoint.

    Writes the run folder (`keras_segattn.recipes.runs`): `run.json`, the
    best checkpoint by validation mean IoU (pixel accuracy on patches for
    `patch_cnn`), `last.keras`, the resume state, TensorBoard logs,
    `history.csv`, and `metrics.json` with the scores of the best checkpoint
    on `eval_split` at the labels' resolution.

    Args:
        *config: a `SegmenterConfig` (which `arguments` may change), or
            up to three of its fields by position (`model`, `data`,
            `output`); the fields, by name: `model`, `data`, `output`, `epochs`,
            `batch_size`, `image_size`, `crop_size`, `augment`, `width`,
            `weights`, `model_kwargs`, `learning_rate`, `schedule`
            (`"constant"`, or `"cosine"`: after stage 1, decayed once an
            epoch towards 0 at `epochs`, see `epoch_schedule`),
            `class_weights` (`None`, `"median"` or an array), `num_images`,
            `val_split`, `eval_split`, `stage1_epochs`, `patience`,
            `patches_per_image`, `seed`, `verbose`, `strategy` (a name or a
            `tf.distribute.Strategy`; under several workers only the chief
            writes the run folder and scores the model, the others return
            `None`) and `mixed_precision`).
        callbacks: list of more `keras.callbacks.Callback`s for `fit`.
        overwrite: bool. Empty the run folder and start afresh. Without
            it, a finished run with the same arguments is reported, not
            retrained; an interrupted one resumes; one with other arguments
            is refused (`RunFolder.start`).
        **arguments: `SegmenterConfig` fields.

    Returns:
        The dict written to `metrics.json`.

    Examples:

    ```python
    summary = train_segmenter("fcn8s", "shapes", "runs/fcn", epochs=3)
    summary = train_segmenter(SegmenterConfig(model="fcn8s", epochs=3))
    ```
    """
    config = SegmenterConfig.make(*config, **arguments)
    _check_model_kwargs(config.model_kwargs)
    model, data, output = config.model, config.data, config.output
    epochs, stage1_epochs, patience = config.epochs, config.stage1_epochs, config.patience
    image_size, crop_size = config.image_size, config.crop_size
    task = task_of(model)
    if task.train_command != "train":
        hint = f"segattn {task.train_command}" if task.train_command else "its own recipe"
        raise ValueError(
            f"train_segmenter trains semantic models and patch_cnn; {model!r} is a "
            f"{task.name} model (train it with {hint})."
        )
    epochs = check_int(epochs, "epochs", hint=" (0 would score an untrained model)")
    stage1_epochs = check_int(stage1_epochs, "stage1_epochs", minimum=0)
    patience = check_int(patience, "patience", none_ok=True)
    task.check_stages(stage1_epochs, crop_size, image_size)
    start = stage1_epochs if task.has_stages else 0  # of the schedule and the patience
    rates = epoch_schedule(config.schedule, config.learning_rate, epochs, start)
    # The schedule comes first: its rate joins the epoch's logs before the
    # run folder's history row is written.
    leading = [rates] if rates is not None else []
    # The strategy comes first: a multi-worker one must be made before
    # TensorFlow runs anything else.
    with training_context(
        config.strategy, config.mixed_precision, config.seed, config.deterministic
    ) as distribution:
        image_size = optional_size(image_size, "image_size")
        crop_size = optional_size(crop_size, "crop_size")
        train_kwargs = generation_options(data, num_images=config.num_images)
        train_data, info = load_segmentation_dataset(data, "train", **train_kwargs)
        val_data, _ = load_segmentation_dataset(data, config.val_split)
        ignore = info.ignore_class
        run = RunFolder(output, chief=is_chief(distribution))
        finished = run.start(
            {
                **config.record(),
                "num_classes": info.num_classes,
                "ignore_class": ignore,
                "class_names": info.class_names,
                "task": task.name,
            },
            overwrite=overwrite,
            config_class=SegmenterConfig,
        )
        if finished is not None:
            print(f"{output} holds this run, finished (pass --overwrite to train it again):")
            print(f"mean IoU {finished['mean_iou']} on {finished['split']}")
            return finished
        class_weights = config.class_weights
        if isinstance(class_weights, str):
            if class_weights not in ("median", "none"):
                raise ValueError(
                    f"class_weights must be 'median', 'none' or an array; got {class_weights!r}."
                )
            class_weights = (
                median_frequency_weights(train_data, info.num_classes, ignore)
                if class_weights == "median"
                else None
            )
            if class_weights is not None:
                print("median-frequency class weights:", np.round(class_weights, 3).tolist())

        kwargs = {"weights": config.weights} if config.weights is not None else {}
        if config.batch_norm:
            kwargs["batch_norm"] = True
        kwargs.update(config.model_kwargs or {})
        built = create_model(model, num_classes=info.num_classes, width=config.width, **kwargs)

        checkpoints = run.callbacks(task.monitor, task.mode, patience=patience, patience_from=start)
        task.fit_run(
            built,
            train_data,
            val_data,
            info,
            leading + checkpoints + list(callbacks or []),
            epochs=epochs,
            batch_size=config.batch_size,
            image_size=image_size,
            crop_size=crop_size,
            augment=config.augment,
            learning_rate=config.learning_rate,
            class_weights=class_weights,
            stage1_epochs=stage1_epochs,
            patches_per_image=config.patches_per_image,
            seed=config.seed,
            verbose=config.verbose,
            resume_epoch=run.resume_epoch(),
        )
    if not run.finish_training(built):
        return None  # another worker than the chief
    train_seconds = run.training_seconds()  # the epochs of every sitting
    state = run.state() or {}

    best = run.best_model(built)
    crash_point("evaluation")  # the kill tests' point in the final evaluation
    scored = task.draw(best)  # per-pixel scores (a patch classifier densely)
    report = evaluate_segmentation(
        scored,
        load_segmentation_dataset(data, config.eval_split)[0],
        info.num_classes,
        ignore,
        image_size=image_size,
    )
    print(f"\n{model} on {data} [{config.eval_split}], best checkpoint:")
    print(format_report(report, info.class_names))
    summary = {
        "model": model,
        "data": data,
        "split": config.eval_split,
        "epochs": epochs,
        "epochs_trained": state.get("epoch"),  # fewer than epochs if it stopped early
        "best_epoch": state.get("best_epoch"),  # counted from 1
        "image_size": image_size,
        "width": config.width,
        "train_seconds": round(train_seconds, 1),
        "global_accuracy": report["global_accuracy"],
        "mean_class_accuracy": report["mean_class_accuracy"],
        "mean_iou": report["mean_iou"],
        "per_class_iou": report["per_class_iou"],
    }
    run.write_metrics(summary)
    print(f"\ntrained in {train_seconds:.0f} s; checkpoints, logs and metrics in {output}")
    return summary
