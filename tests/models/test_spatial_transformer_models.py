import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_segattn.export import convert_to_tflite, export_saved_model, verify_export
from keras_segattn.models import create_model, list_models
from keras_segattn.recipes.stn import format_table, train_cell
from keras_segattn.tasks.classification import classification_serving_fn
from keras_segattn.testing import nonzero_weights, run_model_test
from tests.references import shuffled_order

ROWS = [("cnn", {}), ("fcn", {})] + [
    (name, {"transform": t})
    for name in ("st_cnn", "st_fcn")
    for t in ("affine", "projective", "tps")
]


def test_registry_has_the_four_mnist_models():
    assert {"cnn", "fcn", "st_cnn", "st_fcn"} <= set(list_models(task="classification"))


@pytest.mark.parametrize("name, kwargs", ROWS, ids=[f"{n}-{k}" for n, k in ROWS])
def test_model_passes_shared_checks(name, kwargs, rng):
    model = create_model(name, input_size=42, **kwargs)
    # Off the identity (a zero regression kernel): the localisation net gets
    # gradients and the warp depends on the image.
    model.set_weights(nonzero_weights(model))
    images = rng.integers(0, 256, size=(2, 42, 42, 1)).astype("float32")
    labels = rng.integers(0, 10, size=(2,))
    run_model_test(
        model, images, labels, loss="sparse_categorical_crossentropy", atol=1e-4, tflite_atol=1e-3
    )


@pytest.mark.parametrize("transform", ["affine", "tps"])
def test_serving_signature_returns_probabilities_warp_and_transform(transform, rng, tmp_path):
    model = create_model("st_cnn", transform=transform, input_size=42)
    # Move the transformer off the identity so that the warp is not trivial.
    regressor = model.get_layer("spatial_transformer").regressor
    kernel, bias = regressor.get_weights()
    regressor.set_weights(
        [rng.normal(0, 0.01, kernel.shape), bias + rng.normal(0, 0.05, bias.shape)]
    )
    path = export_saved_model(model, tmp_path, name="st", task="classification")
    images = rng.integers(0, 256, size=(3, 42, 42, 1)).astype("uint8")
    reference = {k: v.numpy() for k, v in classification_serving_fn(model)(images).items()}
    assert reference["probabilities"].shape == (3, 10)
    assert reference["transformed_images"].shape == (3, 28, 28, 1)
    assert reference["transform"].shape == (3, 6 if transform == "affine" else 32)
    flatbuffer = convert_to_tflite(model, task="classification")
    report = verify_export(reference, images, saved_model_dir=path, tflite_model=flatbuffer)
    assert max(report["saved_model"].values()) < 1e-5
    assert max(report["tflite"].values()) < 1e-4
    signature = tf.saved_model.load(path).signatures["serving_default"]
    (spec,) = signature.structured_input_signature[1].values()
    assert spec.dtype == tf.uint8 and spec.shape.as_list() == [None, 42, 42, 1]


def test_bad_arguments():
    with pytest.raises(ValueError, match="input_size"):
        create_model("cnn", input_size=20)
    with pytest.raises(ValueError, match="transform"):
        create_model("st_cnn", transform="similarity")


def test_table_cell_trains_tests_saves_and_resumes(shared_data, tmp_path):
    mnist = f"{shared_data}/mnist"
    kwargs = dict(epochs=1, batch_size=64, output=str(tmp_path), source=mnist, limit=256, verbose=0)
    result = train_cell("st_cnn:affine", "R", **kwargs)
    assert 0 <= result["test_error"] <= 100 and result["paper_error"] == 0.7
    cell = tmp_path / "st_cnn_affine_R"  # one run folder per cell
    assert {"run.json", "metrics.json", "last.keras", "history.csv"} <= set(os.listdir(cell))
    assert train_cell("st_cnn:affine", "R", **kwargs) == result  # resumed, not retrained
    # A cell recorded before sets had versions is of version 1: R's still
    # reads back.
    config = json.loads((cell / "run.json").read_text())
    assert config.pop("distortion_version") == 1
    (cell / "run.json").write_text(json.dumps(config))
    assert train_cell("st_cnn:affine", "R", **kwargs) == result
    table = format_table({("st_cnn:affine", "R"): result}, ["R"])
    assert "paper 0.7" in table
    with pytest.raises(ValueError, match="rows are"):
        train_cell("st_cnn:similarity", "R", **kwargs)


def test_table_cell_of_an_earlier_distortion_version_is_refused(tmp_path):
    # A P cell recorded before sets had versions (version 1) is not read
    # back as one of P's version 2: it is refused, naming the difference,
    # before any data is read.
    old = tmp_path / "st_cnn_affine_P"
    old.mkdir()
    (old / "run.json").write_text(json.dumps({"row": "st_cnn:affine", "distortion": "P"}))
    with pytest.raises(ValueError, match="distortion_version: not recorded -> 2"):
        train_cell("st_cnn:affine", "P", epochs=1, output=str(tmp_path), verbose=0)


def test_transformer_figure(shared_data, tmp_path):
    from PIL import Image

    from keras_segattn.recipes.stn import transformer_figure

    model_path = str(tmp_path / "st.keras")
    create_model("st_cnn", input_size=42).save(model_path)
    path = transformer_figure(
        model_path, "RTS", str(tmp_path / "fig.png"), count=3, source=f"{shared_data}/mnist"
    )
    width, height = Image.open(path).size
    assert height == 3 * (42 + 2 + 42) and width == 3 * (3 * 42 + 2 * 2)


def test_table_schedules_and_optimizers():
    from keras_segattn.recipes.stn import learning_rate_schedule, make_optimizer

    step = learning_rate_schedule("step", 0.05, 300)  # the paper's: /10 at 1/3 and 2/3
    values = [float(step(s)) for s in (0, 99, 101, 199, 201, 299)]
    np.testing.assert_allclose(values, [0.05, 0.05, 0.005, 0.005, 0.0005, 0.0005], rtol=1e-6)
    cosine = learning_rate_schedule("cosine", 0.05, 300)
    assert float(cosine(0)) == pytest.approx(0.05) and float(cosine(300)) == pytest.approx(0.0)
    sgd = make_optimizer("sgd", step, 0.9)
    assert isinstance(sgd, keras.optimizers.SGD) and sgd.momentum == 0.9
    with pytest.raises(ValueError, match="schedule must be one of"):
        learning_rate_schedule("linear", 0.05, 300)
    with pytest.raises(ValueError, match="optimizer must be one of"):
        train_cell("cnn", "R", optimizer="rmsprop")


def test_training_data_holds_the_digits_once_whatever_the_epochs():
    from keras_segattn.data.distortions import distorted_mnist
    from keras_segattn.data.epochs import epochs_of
    from keras_segattn.recipes.stn import training_epoch

    rng = np.random.default_rng(0)
    digits = (rng.integers(0, 256, (96, 28, 28)).astype(np.uint8), np.arange(96) % 10)

    def training_data(distortion, epochs, batch_size, seed, mnist, start_epoch=0):
        one_pass = training_epoch(distortion, batch_size, seed, mnist)
        return epochs_of(one_pass, epochs, start_epoch)  # as fit_epochs reads them

    # One pipeline for every epoch: its graph does not grow with them (one
    # pass per epoch held a copy of the 60,000 digits each: 10 GB at 90).
    sizes = [
        len(training_data("R", e, 32, 0, digits)._as_serialized_graph().numpy()) for e in (2, 40)
    ]
    assert sizes[0] == sizes[1]
    # Epoch e is all the digits, distorted with seed `seed + e`, in a fresh
    # order; a run resumed at epoch 1 reads the batches it would have read.
    batches = list(training_data("R", 3, 32, 5, digits).take(9).as_numpy_iterator())
    resumed = list(training_data("R", 3, 32, 5, digits, start_epoch=1).take(6).as_numpy_iterator())
    for (x, y), (u, v) in zip(batches[3:], resumed):
        np.testing.assert_array_equal(x, u)
        np.testing.assert_array_equal(y, v)
    for epoch in range(3):
        images = np.concatenate([x for x, _ in batches[3 * epoch : 3 * epoch + 3]]) / 255.0
        reference = np.stack([x for x, _ in distorted_mnist("train", "R", 5 + epoch, digits)])
        order = shuffled_order(images, reference)
        np.testing.assert_allclose(images, reference[order], atol=1e-5)
        assert sorted(order) == list(range(96)) and order != list(range(96))
