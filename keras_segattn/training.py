"""Compiling and training the semantic segmentation models."""

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


def two_stage_fit(model, stage1_data, stage2_data, stage1_epochs, epochs, **fit_kwargs):
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
        **fit_kwargs: passed to both `fit` calls (callbacks,
            validation_data, verbose, ...).

    Returns:
        The two `History` objects.
    """
    if not 0 <= stage1_epochs <= epochs:
        raise ValueError(f"stage1_epochs must be in [0, epochs={epochs}]; got {stage1_epochs}.")
    first = model.fit(stage1_data, epochs=stage1_epochs, **fit_kwargs)
    second = model.fit(stage2_data, initial_epoch=stage1_epochs, epochs=epochs, **fit_kwargs)
    return first, second
