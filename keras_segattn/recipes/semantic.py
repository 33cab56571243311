"""The semantic-segmentation life cycle: data -> fit -> scores -> run folder.

`train_segmenter` is what `segattn train` runs for every semantic model
(FCN, DeconvNet with its two-stage schedule, the multiscale ConvNet, the
recurrent CNN) and for the patch classifier `patch_cnn`, which is trained on
patches (`patch_pipeline`) and scored densely (`dense_model`, shift-and-stitch
by shifted pooling) like the others.
"""

import keras
import numpy as np
import tensorflow as tf

from keras_segattn.core.saving import crash_point
from keras_segattn.core.validation import check_int, optional_size
from keras_segattn.data.augment import object_centred_crop, resize_example
from keras_segattn.data.pipeline import (
    load_segmentation_dataset,
    median_frequency_weights,
    patch_pipeline,
    segmentation_pipeline,
)
from keras_segattn.evaluation.semantic import evaluate_segmentation, format_report
from keras_segattn.losses import SegmentationCrossEntropy
from keras_segattn.metrics import segmentation_metrics
from keras_segattn.models.registry import create_model, get_model_spec
from keras_segattn.models.semantic import dense_model
from keras_segattn.recipes.distribute import is_chief, strategy_name, training_context
from keras_segattn.recipes.runs import RunFolder


def compile_segmenter(
    model,
    num_classes,
    ignore_class=None,
    class_weights=None,
    learning_rate=1e-3,
    jit_compile=False,
):
    """Adam, the ignore-aware cross-entropy and the three streaming metrics.

    `jit_compile` stays off by default: on CPU, XLA ran an FCN-8s training
    step at 180x240 17 times slower than TensorFlow's own kernels (8.5 s
    against 0.49 s, batch 8, width 0.25), mostly in its transposed
    convolutions. Every model still passes a `jit_compile=True` step in the
    tests, so it can be turned on where XLA pays (GPUs, TPUs).
    """
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=SegmentationCrossEntropy(ignore_class=ignore_class, class_weights=class_weights),
        metrics=segmentation_metrics(num_classes, ignore_class),
        jit_compile=jit_compile,
    )
    return model


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
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}; got schedule={schedule!r}.")
    if schedule == "constant":
        return None
    span = max(1, epochs - start)

    def rate(epoch, _current=None):
        done = min(max(epoch - start, 0), span)
        return float(learning_rate * 0.5 * (1.0 + np.cos(np.pi * done / span)))

    return keras.callbacks.LearningRateScheduler(rate)


def object_centred_dataset(dataset, crop_size, ignore_class=255, background_class=None, seed=0):
    """Maps a dict dataset to `object_centred_crop`s, reproducibly by seed."""
    return dataset.enumerate().map(
        lambda i, example: object_centred_crop(
            example,
            crop_size,
            tf.stack([tf.cast(seed, tf.int64), i]),
            ignore_class=ignore_class,
            background_class=background_class,
        ),
        num_parallel_calls=tf.data.AUTOTUNE,
    )


def two_stage_fit(model, stage1_data, stage2_data, stage1_epochs, epochs, **fit_kwargs):
    """DeconvNet's two-stage training (Noh et al. 2015, section 4.2).

    Stage 1 trains on easy, object-centred crops (see
    `object_centred_dataset`); stage 2 continues on full images. Both stages
    share the optimizer and the callbacks; epochs are numbered on, so
    TensorBoard, `history.csv` and a run folder's resume state
    (`RunCheckpoints`) see one run: a resumed run goes on in the stage and
    epoch it stopped in.

    Args:
        model: a compiled `keras.Model`.
        stage1_data: batched `(images, masks)` of object-centred crops.
        stage2_data: batched `(images, masks)` of full images.
        stage1_epochs: int. Epochs of stage 1.
        epochs: int. Total epochs, stage 1 included.
        **fit_kwargs: passed to both `fit` calls (callbacks,
            validation_data, verbose, ...).

    Returns:
        The two `History` objects.
    """
    if not 0 <= stage1_epochs <= epochs:
        raise ValueError(f"stage1_epochs must be in [0, epochs={epochs}]; got {stage1_epochs}.")
    fit_kwargs.setdefault("shuffle", False)  # the pipelines shuffle (Keras warns otherwise)
    first = model.fit(stage1_data, epochs=stage1_epochs, **fit_kwargs)
    # A restored state leaves the epoch it resumed from on the model, and
    # fit() prefers it to initial_epoch: stage 2 must count from stage 1's end
    # (or from the restored epoch, which RunCheckpoints sets again).
    model._initial_epoch = None
    second = model.fit(stage2_data, initial_epoch=stage1_epochs, epochs=epochs, **fit_kwargs)
    return first, second


def train_segmenter(
    model="fcn8s",
    data="shapes",
    output="runs/train",
    epochs=10,
    batch_size=8,
    image_size=None,
    crop_size=None,
    augment=False,
    width=1.0,
    weights=None,
    model_kwargs=None,
    learning_rate=1e-3,
    schedule="constant",
    class_weights=None,
    num_images=1000,
    val_split="val",
    eval_split="test",
    stage1_epochs=0,
    patience=None,
    patches_per_image=64,
    seed=0,
    verbose=1,
    strategy="auto",
    mixed_precision=None,
    callbacks=None,
    config=None,
    overwrite=False,
):
    """Trains a semantic model (or `patch_cnn`), scores its best checkpoint.

    Writes the run folder (`keras_segattn.recipes.runs`): `run.json`, the
    best checkpoint by validation mean IoU (pixel accuracy on patches for
    `patch_cnn`), `last.keras`, the resume state, TensorBoard logs,
    `history.csv`, and `metrics.json` with the scores of the best checkpoint
    on `eval_split` at the labels' resolution.

    Args:
        model: str. A registered model of task `"semantic"` or `"patch"`.
        data: str. A `load_segmentation_dataset` spec.
        output: str. The run folder.
        epochs, batch_size, learning_rate: the `fit` schedule (Adam).
        schedule: `"constant"` (the learning rate throughout) or
            `"cosine"` (after stage 1, decayed once an epoch towards 0 at
            `epochs`; see `epoch_schedule`; `patience` may stop it first).
            With `"cosine"`, `history.csv` records `learning_rate`.
        image_size, crop_size: `(h, w)`, an int or `None`: every image
            resized to `image_size`; training crops of `crop_size`.
        augment: bool. Random flip, scale and crop.
        width, weights: builder arguments; `model_kwargs` any other.
        class_weights: `None`, `"median"` (median-frequency balancing) or
            an array of per-class weights.
        num_images: int. Training images of `"shapes"`.
        val_split, eval_split: str. Checkpoint selection and final scores.
        stage1_epochs: int. DeconvNet's two-stage schedule: this many
            epochs on object-centred crops first.
        patience: int or `None`. Stop once the validation metric that
            picks the best checkpoint (mean IoU; patch accuracy for
            `patch_cnn`) has not improved for this many epochs, counted
            from the end of stage 1; `epochs` is then the most it trains.
            `None` trains every epoch.
        patches_per_image: int. `patch_cnn`: patches drawn per image and
            epoch.
        seed: int.
        verbose: int. `fit` verbosity.
        strategy: str or `tf.distribute.Strategy`. Where to train
            (`recipes.distribute.make_strategy`: `"auto"`, `"default"`,
            `"mirrored"`, `"multi-worker"`, `"tpu"`). `batch_size` is the
            global batch. Under several workers only the chief writes the
            run folder and scores the model; the others return `None`.
        mixed_precision: `None`, `"float16"` or `"bfloat16"`.
        callbacks: list of more `keras.callbacks.Callback`s for `fit`.
        config: dict or `None`. What to record in `run.json` (the CLI's
            arguments); defaults to this call's arguments.
        overwrite: bool. Empty the run folder and start afresh. Without
            it, a finished run with the same arguments is reported, not
            retrained; an interrupted one resumes; one with other arguments
            is refused (`RunFolder.start`).

    Returns:
        The dict written to `metrics.json`.
    """
    arguments = {k: v for k, v in locals().items() if k not in ("config", "overwrite", "callbacks")}
    arguments["strategy"] = strategy_name(strategy)
    task = get_model_spec(model).task
    if task not in ("semantic", "patch"):
        raise ValueError(
            f"train_segmenter trains semantic models and patch_cnn; {model!r} is a {task} model."
        )
    epochs = check_int(epochs, "epochs", hint=" (0 would score an untrained model)")
    stage1_epochs = check_int(stage1_epochs, "stage1_epochs", minimum=0)
    patience = check_int(patience, "patience", none_ok=True)
    if stage1_epochs and task == "semantic" and crop_size is None and image_size is None:
        raise ValueError(
            "stage1_epochs needs crop_size or image_size: stage 1's object-centred crops "
            f"are cut at that size (got stage1_epochs={stage1_epochs}, neither size)."
        )
    start = stage1_epochs if task == "semantic" else 0  # of the schedule and the patience
    rates = epoch_schedule(schedule, learning_rate, epochs, start)  # checks `schedule`
    # The schedule comes first: its rate joins the epoch's logs before the
    # run folder's history row is written.
    leading = [rates] if rates is not None else []
    # The strategy comes first: a multi-worker one must be made before
    # TensorFlow runs anything else.
    with training_context(strategy, mixed_precision) as distribution:
        keras.utils.set_random_seed(seed)
        image_size = optional_size(image_size, "image_size")
        crop_size = optional_size(crop_size, "crop_size")
        train_kwargs = {"num_images": num_images} if data == "shapes" else {}
        train_data, info = load_segmentation_dataset(data, "train", **train_kwargs)
        val_data, _ = load_segmentation_dataset(data, val_split)
        ignore = info.ignore_class
        run = RunFolder(output, chief=is_chief(distribution))
        record = config if config is not None else arguments
        finished = run.start(
            {**record, "num_classes": info.num_classes, "ignore_class": ignore,
             "class_names": info.class_names, "task": task},
            overwrite=overwrite,
            added={"schedule": "constant"},  # runs from before --schedule
        )  # fmt: skip
        if finished is not None:
            print(f"{output} holds this run, finished (pass --overwrite to train it again):")
            print(f"mean IoU {finished['mean_iou']} on {finished['split']}")
            return finished
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

        kwargs = {"weights": weights} if weights is not None else {}  # patch_cnn has none
        built = create_model(model, num_classes=info.num_classes, width=width,
                             **kwargs, **(model_kwargs or {}))  # fmt: skip

        monitor = "val_accuracy" if task == "patch" else "val_mean_iou"
        checkpoints = run.callbacks(monitor, "max", patience=patience, patience_from=start)
        run_callbacks = leading + checkpoints + list(callbacks or [])
        if task == "patch":
            fit_patch_classifier(
                built, train_data, val_data, info, epochs, batch_size, image_size, augment,
                learning_rate, patches_per_image, seed, verbose, run_callbacks,
            )  # fmt: skip
        else:
            compile_segmenter(built, info.num_classes, ignore, class_weights, learning_rate)
            pipeline = dict(
                num_classes=info.num_classes, ignore_class=ignore, image_size=image_size
            )
            train_batches = segmentation_pipeline(
                train_data, batch_size, crop_size=crop_size, augment=augment, shuffle=1024,
                seed=seed, **pipeline,
            )  # fmt: skip
            val_batches = segmentation_pipeline(val_data, batch_size, **pipeline)
            fit_kwargs = dict(validation_data=val_batches, verbose=verbose)
            if stage1_epochs:
                source = train_data
                if image_size is not None:
                    source = train_data.map(lambda e: resize_example(e, image_size))
                stage1 = object_centred_dataset(
                    source, crop_size or image_size, ignore, info.background_class, seed
                ).shuffle(1024, seed=seed)
                stage1_batches = segmentation_pipeline(
                    stage1, batch_size, num_classes=info.num_classes, ignore_class=ignore
                )
                two_stage_fit(
                    built, stage1_batches, train_batches, stage1_epochs, epochs,
                    callbacks=run_callbacks, **fit_kwargs,
                )  # fmt: skip
            else:
                built.fit(
                    train_batches, epochs=epochs, callbacks=run_callbacks, shuffle=False,
                    **fit_kwargs,
                )  # fmt: skip
    if not run.finish_training(built):
        return None  # another worker than the chief
    train_seconds = run.training_seconds()  # the epochs of every sitting
    state = run.state() or {}

    best = run.best_model(built)
    crash_point("evaluation")  # the kill tests' point in the final evaluation
    scored = dense_model(best) if task == "patch" else best
    report = evaluate_segmentation(
        scored, load_segmentation_dataset(data, eval_split)[0], info.num_classes, ignore,
        image_size=image_size,
    )  # fmt: skip
    print(f"\n{model} on {data} [{eval_split}], best checkpoint:")
    print(format_report(report, info.class_names))
    summary = {
        "model": model,
        "data": data,
        "split": eval_split,
        "epochs": epochs,
        "epochs_trained": state.get("epoch"),  # fewer than epochs if it stopped early
        "best_epoch": state.get("best_epoch"),  # counted from 1
        "image_size": image_size,
        "width": width,
        "train_seconds": round(train_seconds, 1),
        "global_accuracy": report["global_accuracy"],
        "mean_class_accuracy": report["mean_class_accuracy"],
        "mean_iou": report["mean_iou"],
        "per_class_iou": report["per_class_iou"],
    }
    run.write_metrics(summary)
    print(f"\ntrained in {train_seconds:.0f} s; checkpoints, logs and metrics in {output}")
    return summary


def fit_patch_classifier(
    model, train_data, val_data, info, epochs, batch_size, image_size, augment,
    learning_rate, patches_per_image, seed, verbose, callbacks=(),
):  # fmt: skip
    """`patch_cnn`'s training: random labelled patches, cross-entropy on the
    centre pixel's class; `callbacks` (the run folder's) monitor validation
    patch accuracy, `val_accuracy`."""
    patch_size = model.input.shape[1]
    options = dict(patch_size=patch_size, num_classes=info.num_classes,
                   ignore_class=info.ignore_class, image_size=image_size,
                   patches_per_image=patches_per_image)  # fmt: skip
    train = patch_pipeline(
        train_data, batch_size, augment=augment, shuffle=256, seed=seed, **options
    )
    val = patch_pipeline(val_data, batch_size, seed=seed + 1, **options)
    model.compile(
        keras.optimizers.Adam(learning_rate),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
    )
    return model.fit(
        train, validation_data=val, epochs=epochs, callbacks=callbacks, verbose=verbose,
        shuffle=False,  # the pipeline shuffles (Keras warns otherwise)
    )  # fmt: skip
