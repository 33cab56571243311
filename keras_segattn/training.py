"""Compiling and training the semantic segmentation models."""

import os

import keras
import tensorflow as tf

from keras_segattn.data.augment import object_centred_crop
from keras_segattn.losses import SegmentationCrossEntropy
from keras_segattn.metrics import segmentation_metrics


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
    model, stage1_data, stage2_data, stage1_epochs, epochs, backup_dir=None, **fit_kwargs
):
    """DeconvNet's two-stage training (Noh et al. 2015, section 4.2).

    Stage 1 trains on easy, object-centred crops (see
    `object_centred_dataset`); stage 2 continues on full images. Both stages
    share the optimizer and the callbacks; epochs are numbered on, so
    TensorBoard shows one run.

    Args:
        model: a compiled `keras.Model`.
        stage1_data: batched `(images, masks)` of object-centred crops.
        stage2_data: batched `(images, masks)` of full images.
        stage1_epochs: int. Epochs of stage 1.
        epochs: int. Total epochs, stage 1 included.
        backup_dir: str or `None`. With a folder, each stage keeps a
            `BackupAndRestore` state there and a finished stage 1 is
            recorded, so an interrupted run resumes in the stage it stopped.
        **fit_kwargs: passed to both `fit` calls (callbacks,
            validation_data, verbose, ...).

    Returns:
        The two `History` objects (the first is `None` when a resumed run
        had already finished stage 1).
    """
    if not 0 <= stage1_epochs <= epochs:
        raise ValueError(f"stage1_epochs must be in [0, epochs={epochs}]; got {stage1_epochs}.")
    callbacks = list(fit_kwargs.pop("callbacks", None) or [])

    def stage_callbacks(stage):
        if backup_dir is None:
            return callbacks
        path = os.path.join(backup_dir, stage)
        return callbacks + [keras.callbacks.BackupAndRestore(path)]

    stage1_weights = backup_dir and os.path.join(backup_dir, "stage1.weights.h5")
    first = None
    if stage1_weights and os.path.exists(stage1_weights):
        model.load_weights(stage1_weights)
    else:
        first = model.fit(
            stage1_data, epochs=stage1_epochs, callbacks=stage_callbacks("stage1"), **fit_kwargs
        )
        if stage1_weights:
            model.save_weights(stage1_weights)
    # A restored backup leaves the epoch it resumed from on the model, and
    # fit() prefers it to initial_epoch: stage 2 must count from stage 1's end.
    model._initial_epoch = None
    second = model.fit(
        stage2_data,
        initial_epoch=stage1_epochs,
        epochs=epochs,
        callbacks=stage_callbacks("stage2"),
        **fit_kwargs,
    )
    return first, second
