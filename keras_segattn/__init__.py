"""keras_segattn: segmentation and visual attention models for Keras 3.

The architectures of the lecture "Segmentation and Attention" as trainable,
exportable Keras models. Build one by name with
`keras_segattn.models.create_model("fcn8s", num_classes=21)`.
"""

__version__ = "0.1.0"

from keras_segattn import (  # noqa: E402,F401
    caption_metrics,
    data,
    evaluation,
    export,
    initializers,
    instance_metrics,
    layers,
    losses,
    metrics,
    models,
    postprocess,
    training,
    viz,
)
