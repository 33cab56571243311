"""Semantic segmentation and the patch classifier that is scored densely.

`semantic`: FCN, DeconvNet, the multiscale ConvNet, the recurrent CNN; a
class for every pixel. `patch`: the patch classifier of the scene-labelling
family, trained on patches and used, scored and served as a dense labeller
(`dense_model`, shift-and-stitch by shifted pooling).
"""

import keras
import numpy as np
import tensorflow as tf

from keras_segattn.core.images import as_client_uint8
from keras_segattn.data.augment import object_centred_crop, resize_example
from keras_segattn.data.pipeline import (
    load_segmentation_dataset,
    patch_pipeline,
    segmentation_pipeline,
)
from keras_segattn.evaluation.semantic import evaluate_segmentation, format_report
from keras_segattn.losses import SegmentationCrossEntropy
from keras_segattn.metrics import (
    confusion_matrix_update,
    scores_from_confusion_matrix,
    segmentation_metrics,
)
from keras_segattn.models.common import ends_in_softmax
from keras_segattn.models.semantic import dense_model
from keras_segattn.tasks.base import Task, fit_epochs, get_task, register_task, task_of

# What `segattn evaluate` writes of a semantic report.
REPORT_KEYS = (
    "num_images",
    "seconds_per_image",
    "global_accuracy",
    "mean_class_accuracy",
    "mean_iou",
    "per_class_iou",
)


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
    step many times slower than TensorFlow's own kernels, mostly in its
    transposed convolutions (`docs/design.md`). Every model still passes a
    `jit_compile=True` step in the tests, so it can be turned on where XLA
    pays (GPUs, TPUs).
    """
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=SegmentationCrossEntropy(ignore_class=ignore_class, class_weights=class_weights),
        metrics=segmentation_metrics(num_classes, ignore_class),
        jit_compile=jit_compile,
    )
    return model


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


def two_stage_fit(
    model,
    stage1_epoch,
    stage2_epoch,
    stage1_epochs,
    epochs,
    callbacks=(),
    resume_epoch=0,
    **fit_kwargs,
):
    """DeconvNet's two-stage training (Noh et al. 2015, section 4.2).

    Stage 1 trains on easy, object-centred crops (see
    `object_centred_dataset`); stage 2 continues on full images. Both stages
    share the optimizer and the callbacks; epochs are numbered on, so
    TensorBoard, `history.csv` and a run folder's resume state
    (`RunCheckpoints`) see one run: a resumed run goes on in the stage and
    epoch it stopped in.

    Args:
        model: a compiled `keras.Model`.
        stage1_epoch: function from the epoch to that epoch's batches of
            object-centred crops (`fit_epochs`' `one_epoch`).
        stage2_epoch: the same for the full images.
        stage1_epochs: int. Epochs of stage 1.
        epochs: int. Total epochs, stage 1 included.
        callbacks: list. Both stages' (a run folder's included).
        resume_epoch: int. A resumed run's first untrained epoch.
        **fit_kwargs: more `fit_epochs` arguments for both stages
            (`validation_data`, `verbose`).

    Returns:
        The two `History` objects.
    """
    if not 0 <= stage1_epochs <= epochs:
        raise ValueError(f"stage1_epochs must be in [0, epochs={epochs}]; got {stage1_epochs}.")
    stages = dict(callbacks=callbacks, resume_epoch=resume_epoch, **fit_kwargs)
    first = fit_epochs(model, stage1_epoch, stage1_epochs, **stages)
    # A restored state leaves the epoch it resumed from on the model, and
    # fit() prefers it to initial_epoch: stage 2 must count from stage 1's end
    # (or from the restored epoch, which RunCheckpoints sets again).
    model._initial_epoch = None
    second = fit_epochs(model, stage2_epoch, epochs, first=stage1_epochs, **stages)
    return first, second


def semantic_serving_fn(model):
    """uint8 images of any size in; `class_map` and `probabilities` out."""
    is_softmax = ends_in_softmax(model)

    def serve(images):
        scores = model(images, training=False)
        probabilities = scores if is_softmax else tf.nn.softmax(scores, axis=-1)
        return {
            "class_map": tf.argmax(probabilities, axis=-1, output_type=tf.int32),
            "probabilities": probabilities,
        }

    return serve


@register_task
class SemanticTask(Task):
    """A class for every pixel: trained by `segattn train`, scored by mean
    IoU, served as `class_map` and `probabilities` at the image's size."""

    name = "semantic"
    train_command = "train"
    evaluate_command = "evaluate"
    monitor = "val_mean_iou"
    per_pixel_outputs = {"class_map": (0, -1), "probabilities": (0, 0)}
    # Whether a first stage on object-centred crops applies (DeconvNet's):
    # it shifts the schedule and the patience.
    has_stages = True

    # -- training -------------------------------------------------------

    def fit_run(
        self,
        model,
        train_data,
        val_data,
        info,
        callbacks,
        *,
        epochs,
        batch_size,
        image_size,
        crop_size,
        augment,
        learning_rate,
        class_weights,
        stage1_epochs,
        patches_per_image,
        seed,
        verbose,
        resume_epoch=0,
    ):
        """Compiles and fits `model` on a run's data (`train_segmenter`'s
        arguments), DeconvNet's two-stage schedule included; `callbacks`
        are the run folder's (they monitor `self.monitor`). Epoch `e`'s
        batches are drawn with `seed + e` (`data.epochs.epochs_of`); a
        resumed run's data start at `resume_epoch`."""
        del patches_per_image  # patches are the patch task's
        compile_segmenter(model, info.num_classes, info.ignore_class, class_weights, learning_rate)
        pipeline = dict(
            num_classes=info.num_classes, ignore_class=info.ignore_class, image_size=image_size
        )

        def image_epoch(epoch):
            return segmentation_pipeline(
                train_data,
                batch_size,
                crop_size=crop_size,
                augment=augment,
                shuffle=1024,
                seed=seed + epoch,
                **pipeline,
            )

        fit_kwargs = dict(
            validation_data=segmentation_pipeline(val_data, batch_size, **pipeline),
            verbose=verbose,
            resume_epoch=resume_epoch,
        )
        if not stage1_epochs:
            fit_epochs(model, image_epoch, epochs, callbacks, **fit_kwargs)
            return
        source = train_data
        if image_size is not None:
            source = train_data.map(lambda e: resize_example(e, image_size))

        def crop_epoch(epoch):
            crops = object_centred_dataset(
                source,
                crop_size or image_size,
                info.ignore_class,
                info.background_class,
                seed + epoch,
            ).shuffle(1024, seed=seed + epoch)
            return segmentation_pipeline(
                crops, batch_size, num_classes=info.num_classes, ignore_class=info.ignore_class
            )

        two_stage_fit(
            model, crop_epoch, image_epoch, stage1_epochs, epochs, callbacks, **fit_kwargs
        )

    def check_stages(self, stage1_epochs, crop_size, image_size):
        """Refuses a first stage without a size to cut its crops at."""
        if stage1_epochs and crop_size is None and image_size is None:
            raise ValueError(
                "stage1_epochs needs crop_size or image_size: stage 1's object-centred crops "
                f"are cut at that size (got stage1_epochs={stage1_epochs}, neither size)."
            )

    # -- serving --------------------------------------------------------

    def serving_functions(self, model):
        return {"serving_default": semantic_serving_fn(model)}

    def sample_inputs(self, model, data_spec, image_size, count=32):
        data, info = load_segmentation_dataset(data_spec or "shapes", "val")
        batches = segmentation_pipeline(
            data.take(count), 1, info.num_classes, info.ignore_class, image_size=image_size
        )
        return [{"images": x.numpy()} for x, _ in batches]

    def dataset_class_names(self, data_spec):
        return list(load_segmentation_dataset(data_spec or "shapes", "val")[1].class_names)

    # -- scoring --------------------------------------------------------

    def draw(self, model):
        return model

    def evaluate(self, model, options):
        data, info = load_segmentation_dataset(options.data, options.split)
        scored = self.draw(model)
        if scored.output.shape[-1] != info.num_classes:
            raise ValueError(
                f"the model predicts {scored.output.shape[-1]} classes but --data "
                f"{options.data} has {info.num_classes}; score a model on the data it was "
                "trained for."
            )
        report = evaluate_segmentation(
            scored,
            data,
            info.num_classes,
            info.ignore_class,
            image_size=options.image_size,
            batch_size=options.batch_size,
            postprocess=options.postprocess,
            predictor=self.predictor(scored, options, info.num_classes),
        )
        lines = [
            format_report(report, info.class_names),
            f"seconds per image:   {report['seconds_per_image']:.3f}",
        ]
        scores = {
            "postprocess": options.postprocess,
            "proposals": options.proposals,
            "merge": options.merge if options.proposals is not None else None,
            "ensemble": list(options.ensemble),
            **{k: report[k] for k in REPORT_KEYS},
        }
        return scores, lines

    def predictor(self, model, options, num_classes):
        """What `segattn evaluate` scores besides the model on whole images:
        `None` for that, else DeconvNet's proposal-wise inference
        (`--proposals`, `--merge`) and an ensemble with other models
        (`--ensemble`, each on whole images at its run's image size)."""
        from keras_segattn.checkpoints import load_model, read_run_config
        from keras_segattn.core.validation import optional_size
        from keras_segattn.evaluation.predictors import EnsembleSegmenter, ProposalWise, WholeImage

        if options.proposals is None and not options.ensemble:
            return None
        if options.proposals is None:
            members = [WholeImage(model, options.image_size)]
        else:
            fixed = None not in tuple(model.input.shape[1:3])
            size = None if fixed else options.image_size
            members = [ProposalWise(model, options.proposals, options.merge, input_size=size)]
        for path in options.ensemble:
            other = load_model(path)
            task = task_of(other)
            if not isinstance(task, SemanticTask):
                raise ValueError(
                    f"--ensemble {path} holds a {task.name} model, not a semantic one."
                )
            drawn = task.draw(other)
            if drawn.output.shape[-1] != num_classes:
                raise ValueError(
                    f"--ensemble {path} predicts {drawn.output.shape[-1]} classes; the data have "
                    f"{num_classes}."
                )
            size = optional_size(read_run_config(path).get("image_size"), "image_size")
            members.append(WholeImage(drawn, size or options.image_size))
        return members[0] if len(members) == 1 else EnsembleSegmenter(members)

    def score_signature(self, signature, data, split, count, image_size=None, **_):
        """Mean IoU and global accuracy at the labels' resolution, the
        images resized to `image_size` for the network as `segattn
        evaluate` does, but as uint8, which is what the signature takes."""
        dataset, info = load_segmentation_dataset(data, split)
        if count is not None:
            dataset = dataset.take(count)
        confusion = np.zeros((info.num_classes, info.num_classes), np.int64)
        for example in dataset:
            image, mask = example["images"], tf.cast(example["segmentation_masks"], tf.int32)
            probabilities = signature(images=as_client_uint8(image, image_size)[None])[
                "probabilities"
            ]
            probabilities = tf.image.resize(probabilities, tf.shape(image)[:2])
            update = confusion_matrix_update(
                mask[None], probabilities, info.num_classes, info.ignore_class
            )
            confusion += update.numpy()
        scores = scores_from_confusion_matrix(confusion)
        return {"mean_iou": scores["mean_iou"], "global_accuracy": scores["global_accuracy"]}


@register_task
class PatchTask(SemanticTask):
    """The patch classifier: trained on labelled patches (validation patch
    accuracy picks `best.keras`), and used everywhere else as what it is
    for, a dense labeller (`dense_model`)."""

    name = "patch"
    monitor = "val_accuracy"
    has_stages = False

    def fit_run(
        self,
        model,
        train_data,
        val_data,
        info,
        callbacks,
        *,
        epochs,
        batch_size,
        image_size,
        augment,
        learning_rate,
        patches_per_image,
        seed,
        verbose,
        resume_epoch=0,
        **unused,
    ):
        """`patch_cnn`'s training: random labelled patches (epoch `e`'s
        drawn with `seed + e`), cross-entropy on the centre pixel's class,
        validation patch accuracy monitored."""
        del unused  # crops, stages and class weights are the semantic task's
        patch_size = model.input.shape[1]
        options = dict(
            patch_size=patch_size,
            num_classes=info.num_classes,
            ignore_class=info.ignore_class,
            image_size=image_size,
            patches_per_image=patches_per_image,
        )

        def one_epoch(epoch):
            return patch_pipeline(
                train_data, batch_size, augment=augment, shuffle=256, seed=seed + epoch, **options
            )

        val = patch_pipeline(val_data, batch_size, seed=seed + 1, **options)
        model.compile(
            keras.optimizers.Adam(learning_rate),
            keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        )
        return fit_epochs(
            model,
            one_epoch,
            epochs,
            callbacks,
            resume_epoch=resume_epoch,
            validation_data=val,
            verbose=verbose,
        )

    def check_stages(self, stage1_epochs, crop_size, image_size):
        """A patch classifier has one stage: `stage1_epochs` does not apply."""

    def serving_model(self, model):
        return dense_model(model), get_task("semantic")

    def draw(self, model):
        return dense_model(model)
