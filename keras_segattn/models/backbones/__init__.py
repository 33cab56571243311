from keras_segattn.models.backbones.vgg import (
    VGG16_BLOCKS,
    load_weights,
    transplant_vgg16,
    vgg16_encoder,
)

__all__ = ["VGG16_BLOCKS", "load_weights", "transplant_vgg16", "vgg16_encoder"]
