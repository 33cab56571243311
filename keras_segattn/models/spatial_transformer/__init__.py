from keras_segattn.models.spatial_transformer.mnist_models import (
    build_mnist_classifier,
    cnn,
    fcn,
    st_cnn,
    st_fcn,
)

__all__ = ["build_mnist_classifier", "cnn", "fcn", "st_cnn", "st_fcn"]
