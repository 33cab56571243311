"""What a TF Serving client or a mobile app sends and gets back.

Requests go through the `tensorflow-serving-api` protos and the REST JSON
documented in `saved_models/README.md`, converted to tensors as the server
does (`tf.make_ndarray`, base64 for `{"b64": ...}`), and run on the loaded
SavedModel.
"""

import base64
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from keras_segattn.export import (
    BYTES_SIGNATURE_KEY,
    convert_to_tflite,
    export_saved_model,
    read_labels,
    run_tflite,
    tflite_labels,
    verify_export,
)
from keras_segattn.export.flow import resize_uint8
from keras_segattn.export.saved_model import serving_task
from keras_segattn.models import create_model, get_model_spec
from keras_segattn.tasks import get_task

predict_pb2 = pytest.importorskip("tensorflow_serving.apis.predict_pb2")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
IMAGE_TASKS = {
    "fcn8s": "semantic",
    "st_cnn": "classification",
    "show_attend_tell": "captioning",
    "mnc": "instance",
}
LABELS = ["background", "cat", "dog"]


def tiny(name):
    tf.keras.utils.set_random_seed(0)
    return create_model(name, **get_model_spec(name).tiny)


@pytest.fixture(scope="module", params=sorted(IMAGE_TASKS))
def exported(request, tmp_path_factory):
    model = tiny(request.param)
    base = tmp_path_factory.mktemp("serving")
    return model, export_saved_model(model, base, labels=LABELS)


@pytest.fixture(scope="module")
def semantic(exported_models):
    """The semantic export alone, for the checks the tasks share."""
    return exported_models["fcn8s"]


@pytest.fixture(scope="module")
def exported_models(tmp_path_factory):
    model = tiny("fcn8s")
    return {
        "fcn8s": (model, export_saved_model(model, tmp_path_factory.mktemp("fcn8s"), labels=LABELS))
    }


def serve(loaded, request):
    """What TF Serving does with a `PredictRequest`: the tensors out of the
    protos, the signature run, the outputs into a `PredictResponse` (both
    through their wire format)."""
    request = predict_pb2.PredictRequest.FromString(request.SerializeToString())
    signature = loaded.signatures[request.model_spec.signature_name or "serving_default"]
    inputs = {k: tf.constant(tf.make_ndarray(v)) for k, v in request.inputs.items()}
    response = predict_pb2.PredictResponse()
    response.model_spec.CopyFrom(request.model_spec)
    for name, value in signature(**inputs).items():
        response.outputs[name].CopyFrom(tf.make_tensor_proto(value.numpy()))
    response = predict_pb2.PredictResponse.FromString(response.SerializeToString())
    return {k: tf.make_ndarray(v) for k, v in response.outputs.items()}


def predict_request(signature_name, **inputs):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "model"
    request.model_spec.signature_name = signature_name
    for name, value in inputs.items():
        request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
    return request


def client_images(task, rng):
    """Two images of different sizes (one size for classifiers)."""
    if task == "classification":
        return [rng.integers(0, 256, (28, 28, 1)).astype("uint8") for _ in range(2)]
    return [rng.integers(0, 256, size).astype("uint8") for size in ((40, 48, 3), (34, 52, 3))]


def assert_same(actual, expected, name):
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, name
    if expected.dtype.kind in "OSU":
        assert actual.tolist() == expected.tolist(), name
    elif np.issubdtype(expected.dtype, np.integer):
        np.testing.assert_array_equal(actual, expected, err_msg=name)
    else:
        np.testing.assert_allclose(actual, expected, atol=1e-4, err_msg=name)


def test_both_signatures_through_the_serving_api_protos(exported, rng):
    model, path = exported
    task = serving_task(model).name
    loaded = tf.saved_model.load(path)
    assert {"serving_default", BYTES_SIGNATURE_KEY} <= set(loaded.signatures)
    images = client_images(task, rng)
    keras_serve = get_task(task).serving_function(model)

    # serving_default: decoded pixels.
    outputs = serve(loaded, predict_request("serving_default", images=images[0][None]))
    for name, expected in keras_serve(images[0][None]).items():
        assert_same(outputs[name], expected.numpy(), name)

    # serving_bytes: a PNG and a JPEG of different sizes in one batch.
    encoded = [tf.io.encode_png(images[0]).numpy(), tf.io.encode_jpeg(images[1]).numpy()]
    decoded = [images[0], tf.io.decode_jpeg(encoded[1], channels=images[1].shape[-1]).numpy()]
    outputs = serve(loaded, predict_request(BYTES_SIGNATURE_KEY, image_bytes=encoded))
    size = get_task(task).bytes_input_size(model)
    if size is None:  # each image at its own size, padded to the largest
        np.testing.assert_array_equal(outputs.pop("image_sizes"), [[40, 48], [34, 52]])
        for i, image in enumerate(decoded):
            for name, expected in keras_serve(image[None]).items():
                expected = expected.numpy()[0]
                actual = outputs[name][i]
                if name in ("class_map", "probabilities"):
                    if name == "class_map":
                        assert (actual[image.shape[0] :] == -1).all()  # padding
                    actual = actual[: image.shape[0], : image.shape[1]]
                elif name == "masks":
                    actual = actual[:, : image.shape[0], : image.shape[1]]
                assert_same(actual, expected, name)
    else:  # resized to the model's size, one batch
        batch = np.stack([resize_uint8(image, size) for image in decoded])
        for name, expected in keras_serve(batch).items():
            assert_same(outputs[name], expected.numpy(), name)
    assert read_labels(path) == LABELS


@pytest.mark.parametrize(
    "corrupt, message",
    [
        (b"not an image at all", r"image_bytes\[1\] is not a whole JPEG or PNG file"),
        ("truncated", r"image_bytes\[1\] is not a whole JPEG or PNG file"),
        ("damaged png", r"image_bytes\[1\] has a valid header but damaged image data"),
        ("damaged jpeg", r"image_bytes\[1\] has a damaged JPEG header"),
        (None, "image_bytes must be a non-empty batch"),
    ],
)
def test_a_bad_string_is_named_by_its_index(semantic, rng, corrupt, message):
    model, path = semantic
    signature = tf.saved_model.load(path).signatures[BYTES_SIGNATURE_KEY]
    pixels = rng.integers(0, 256, (40, 40, 3)).astype("uint8")
    good = tf.io.encode_jpeg(pixels).numpy()
    if corrupt is None:
        batch = tf.zeros([0], tf.string)
    elif corrupt == "truncated":
        batch = tf.constant([good, good[: len(good) // 2]])
    elif corrupt in ("damaged png", "damaged jpeg"):  # start and end markers intact
        encoded = (tf.io.encode_png if corrupt.endswith("png") else tf.io.encode_jpeg)(pixels)
        encoded = bytearray(encoded.numpy())
        if corrupt.endswith("jpeg"):  # a Huffman table the decoder refuses
            at = encoded.find(b"\xff\xc4") + 4
            encoded[at : at + 8] = b"\xff" * 8
        else:  # zeros inside the image data: its chunk's checksum fails
            at = len(encoded) // 2
            encoded[at : at + 64] = bytes(64)
        batch = tf.constant([good, bytes(encoded)])
    else:
        batch = tf.constant([good, corrupt])
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        signature(image_bytes=batch)


def test_bytes_after_a_jpeg_end_marker_are_allowed(semantic, rng):
    model, path = semantic
    signature = tf.saved_model.load(path).signatures[BYTES_SIGNATURE_KEY]
    good = tf.io.encode_jpeg(rng.integers(0, 256, (40, 40, 3)).astype("uint8")).numpy()
    plain = signature(image_bytes=tf.constant([good]))["class_map"].numpy()
    trailed = signature(image_bytes=tf.constant([good + b"camera trailer"]))["class_map"].numpy()
    np.testing.assert_array_equal(plain, trailed)  # as some cameras write them


def documented_requests():
    """The ```json bodies of `saved_models/README.md` that use `b64`."""
    with open(os.path.join(ROOT, "saved_models", "README.md"), encoding="utf-8") as f:
        text = f.read()
    bodies = [json.loads(b) for b in re.findall(r"```json\n(.*?)```", text, re.S)]
    return [b for b in bodies if "b64" in json.dumps(b)]


def rest_tensor(values):
    """TF Serving's JSON to a tensor: `{"b64": ...}` objects are bytes."""
    if isinstance(values, dict) and set(values) == {"b64"}:
        return base64.b64decode(values["b64"])
    if isinstance(values, list):
        return [rest_tensor(v) for v in values]
    return values


def rest_predict(loaded, body):
    """TF Serving's REST predict: the row (`instances`) or columnar
    (`inputs`) format, for a signature of one input."""
    signature = loaded.signatures[body.get("signature_name", "serving_default")]
    (name,) = signature.structured_input_signature[1]
    if "instances" in body:
        rows = [r[name] if isinstance(r, dict) and name in r else r for r in body["instances"]]
        outputs = signature(**{name: tf.constant(rest_tensor(rows))})
        count = len(rows)
        return {
            "predictions": [
                {k: v.numpy()[i].tolist() for k, v in outputs.items()} for i in range(count)
            ]
        }
    columns = body["inputs"]
    value = columns[name] if isinstance(columns, dict) and name in columns else columns
    outputs = signature(**{name: tf.constant(rest_tensor(value))})
    return {"outputs": {k: v.numpy().tolist() for k, v in outputs.items()}}


def test_the_documented_rest_bodies_run(semantic):
    model, path = semantic
    loaded = tf.saved_model.load(path)
    bodies = documented_requests()
    assert [("instances" in b, "inputs" in b) for b in bodies] == [(True, False), (False, True)]
    rows = rest_predict(loaded, bodies[0])["predictions"]
    assert len(rows) == 1 and np.array(rows[0]["class_map"]).shape == (32, 32)
    columns = rest_predict(loaded, bodies[1])["outputs"]
    assert columns["image_sizes"] == [[32, 32], [40, 48]]
    assert np.array(columns["probabilities"]).shape == (2, 40, 48, 3)
    # Each image as serving_default gives it alone.
    image = tf.io.decode_png(base64.b64decode(bodies[1]["inputs"]["image_bytes"][1]["b64"]))
    alone = loaded.signatures["serving_default"](images=image[None])
    np.testing.assert_array_equal(columns["class_map"][1], alone["class_map"].numpy()[0])
    json.dumps(columns)  # what the server sends back is plain JSON


def test_saved_model_cli_shows_and_runs_both_signatures(semantic, tmp_path):
    model, path = semantic
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    shown = subprocess.run(
        [cli, "show", "--dir", path, "--all"], capture_output=True, text=True, env=env, check=True
    ).stdout
    assert "signature_def['serving_bytes']" in shown and "image_bytes" in shown
    assert "signature_def['serving_default']" in shown and "class_map" in shown
    images = np.random.default_rng(0).integers(0, 256, (1, 36, 44, 3)).astype("uint8")
    np.save(tmp_path / "images.npy", images)
    subprocess.run(
        [
            cli,
            "run",
            "--dir",
            path,
            "--tag_set",
            "serve",
            "--signature_def",
            "serving_default",
            "--inputs",
            f"images={tmp_path / 'images.npy'}",
            "--outdir",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    class_map = np.load(tmp_path / "out" / "class_map.npy")
    expected = get_task("semantic").serving_function(model)(images)["class_map"].numpy()
    np.testing.assert_array_equal(class_map, expected)


def test_tflite_carries_its_names_and_labels(exported, rng, tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    model, _ = exported
    task = serving_task(model).name
    signature = "tokens" if task == "captioning" else "serving_default"
    path = str(tmp_path / "model.tflite")
    convert_to_tflite(model, path, task=task, signature_key=signature, labels=LABELS)
    assert tflite_labels(path) == LABELS
    images = client_images(task, rng)[0][None]
    reference = {k: v.numpy() for k, v in get_task(task).serving_function(model)(images).items()}
    reference = {k: v for k, v in reference.items() if v.dtype.kind not in "OSU"}
    interpreter = Interpreter(model_path=path)
    names = {d["name"] for d in interpreter.get_output_details()}
    assert names == set(reference)  # not StatefulPartitionedCall:0
    assert [d["name"] for d in interpreter.get_input_details()] == ["images"]
    outputs = run_tflite(path, {"images": images}, signature_key=signature)
    assert set(outputs) == set(reference)
    report = verify_export(reference, images, tflite_model=path)["tflite"]
    assert max(report.values()) < 1e-3, report
    assert tflite_labels(convert_to_tflite(model, task=task, signature_key=signature)) is None


def test_labels_are_refused_unless_single_lines(semantic, tmp_path):
    model, _ = semantic
    for labels in ([], ["sky", "two\nlines"]):
        with pytest.raises(ValueError, match="labels must be a non-empty sequence"):
            export_saved_model(model, tmp_path, version=7, labels=labels)
    assert not os.path.exists(tmp_path / model.name / "7")  # nothing published


@pytest.mark.parametrize("name", ["sds", "hypercolumns"])
def test_host_side_networks_export_their_network(name, tmp_path):
    model = tiny(name)
    task = serving_task(model)
    assert task.name == {"sds": "region_scoring", "hypercolumns": "box_segmentation"}[name]
    example = task.sample_inputs(model, "shapes", None, count=1)[0]
    reference = {k: v.numpy() for k, v in get_task(task).serving_function(model)(**example).items()}
    path = export_saved_model(model, tmp_path)
    loaded = tf.saved_model.load(path)
    assert set(loaded.signatures) == {"serving_default", "portable"}  # no bytes: not images
    report = verify_export(
        reference, example, saved_model_dir=path, tflite_model=convert_to_tflite(model, task=task)
    )
    for artifact in report.values():
        assert max(artifact.values()) < 1e-3, report
    # A wrong input is named, not failed deep inside.
    wrong = {**example}
    key = "box_crops" if task.name == "region_scoring" else "boxes"
    wrong[key] = wrong[key][..., :3] if key == "boxes" else wrong[key][:, 1:]
    with pytest.raises(tf.errors.InvalidArgumentError, match=f"{key} must be a"):
        loaded.signatures["serving_default"](**tf.nest.map_structure(tf.constant, wrong))
