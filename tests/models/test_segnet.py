"""SegNet: what is its own. The checks every semantic model passes (the
shared checker, any input size, clear errors, export, mixed precision,
strategies) reach it through the registry."""

import keras

from keras_segattn.layers import MaxUnpooling2D
from keras_segattn.layers.deconvolution import StrideOneConv2DTranspose
from keras_segattn.models import create_model, get_model_spec


def test_full_width_has_the_papers_parameter_count():
    model = create_model("segnet", num_classes=11)
    assert abs(model.count_params() - 29.5e6) < 0.005 * 29.5e6  # the paper's Table 6


def test_decoder_unpools_with_every_switch_and_convolves_without_fc_layers():
    model = create_model("segnet", **get_model_spec("segnet").tiny)
    names = [layer.name for layer in model.layers]
    assert sum(isinstance(layer, MaxUnpooling2D) for layer in model.layers) == 5
    assert not any(isinstance(layer, StrideOneConv2DTranspose) for layer in model.layers)
    assert not any(name.startswith("fc") for name in names)  # DeconvNet's middle is gone
    # 13 encoder and 12 decoder convolutions with batch norm; the score has none.
    assert sum(isinstance(layer, keras.layers.BatchNormalization) for layer in model.layers) == 25
    unpool = model.get_layer("unpool3")
    assert unpool.input[1].name == model.get_layer("block3_pool").output[1].name
