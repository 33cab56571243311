"""Losses for dense labelling."""

import keras
import numpy as np
import tensorflow as tf


def flatten_labels(y_true):
    """`(B, H, W)` or `(B, H, W, 1)` integer labels as `(B, H, W)` int32."""
    y_true = tf.convert_to_tensor(y_true)
    if y_true.shape.rank == 4 and y_true.shape[-1] == 1:
        y_true = tf.squeeze(y_true, -1)
    return tf.cast(y_true, tf.int32)


@keras.saving.register_keras_serializable(package="keras_segattn")
class SegmentationCrossEntropy(keras.losses.Loss):
    """Per-pixel softmax cross-entropy with an ignore label and class weights.

    Each image's loss is the (weighted) mean over its non-ignored pixels; the
    batch loss is the mean over images. An image with no labelled pixel
    contributes 0.

    Args:
        ignore_class: int or `None`. Label of pixels that carry no loss
            (CamVid's void is 11, VOC's boundary 255). Defaults to `None`.
        class_weights: sequence of floats or `None`. A weight per class, e.g.
            SegNet's median-frequency balancing
            (`keras_segattn.data.median_frequency_weights`). Defaults to
            `None` (all 1).
        from_logits: bool. Whether `y_pred` are logits. Defaults to `True`.

    Examples:

    ```python
    model.compile("adam", SegmentationCrossEntropy(ignore_class=11))
    ```
    """

    def __init__(
        self,
        ignore_class=None,
        class_weights=None,
        from_logits=True,
        name="segmentation_cross_entropy",
        **kwargs,
    ):
        super().__init__(name=name, **kwargs)
        self.ignore_class = ignore_class
        self.class_weights = None if class_weights is None else [float(w) for w in class_weights]
        if self.class_weights is not None and not (
            np.all(np.isfinite(self.class_weights)) and np.all(np.array(self.class_weights) >= 0)
        ):
            raise ValueError(
                f"class_weights must be finite numbers >= 0; got {self.class_weights}."
            )
        self.from_logits = from_logits

    def call(self, y_true, y_pred):
        y_true = flatten_labels(y_true)
        num_classes = y_pred.shape[-1]
        if self.class_weights is not None and len(self.class_weights) != num_classes:
            raise ValueError(
                f"class_weights has {len(self.class_weights)} entries but the model "
                f"predicts {num_classes} classes."
            )
        valid = tf.ones_like(y_true, tf.bool)
        if self.ignore_class is not None:
            valid = tf.not_equal(y_true, self.ignore_class)
        safe_labels = tf.where(valid, y_true, 0)
        pixel_loss = keras.losses.sparse_categorical_crossentropy(
            safe_labels, y_pred, from_logits=self.from_logits
        )
        weights = tf.cast(valid, pixel_loss.dtype)
        if self.class_weights is not None:
            table = tf.constant(self.class_weights, pixel_loss.dtype)
            weights *= tf.gather(table, safe_labels)
        pixel_loss *= weights
        count = tf.reduce_sum(tf.cast(valid, pixel_loss.dtype), axis=[1, 2])
        return tf.reduce_sum(pixel_loss, axis=[1, 2]) / tf.maximum(count, 1.0)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "ignore_class": self.ignore_class,
                "class_weights": self.class_weights,
                "from_logits": self.from_logits,
            }
        )
        return config
