import tempfile

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_segattn.data.instances import (
    instance_pipeline,
    load_instance_dataset,
    resize_instances,
)
from keras_segattn.evaluation.instance import predict_instances
from keras_segattn.export import (
    convert_to_tflite,
    export_saved_model,
    run_tflite,
    verify_export,
)
from keras_segattn.models.backbones.vgg import transplant_vgg16
from keras_segattn.models.instance import (
    MultitaskNetworkCascade,
    RegionProposalNetwork,
    crop_and_resize_masks,
    mnc,
    paste_masks,
    rpn,
)
from keras_segattn.models.instance.common import (
    ProposalLayer,
    prepare_ground_truth,
    rpn_losses,
    sample_rois,
)
from keras_segattn.models.registry import create_model, get_model_spec, list_models
from keras_segattn.recipes.instance import train_instance_model
from keras_segattn.testing import run_model_test
from tests.data.test_coco import write_squares_layout
from tests.references import crop_and_resize_masks_reference, paste_masks_reference


def tiny(name, **overrides):
    keras.utils.set_random_seed(0)
    builder = rpn if name == "rpn" else mnc
    return builder(**{**get_model_spec(name).tiny, **overrides})


def images(rng, batch=2, height=40, width=48):
    return rng.integers(0, 256, size=(batch, height, width, 3)).astype("float32")


def square_targets(batch=2, size=40, classes=(1, 2)):
    """One filled square per image (the second image's class is `classes[1]`)
    plus a padding row."""
    boxes = np.full((batch, 2, 4), -1.0, "float32")
    labels = np.full((batch, 2), -1, "int32")
    masks = np.zeros((batch, 2, size, size), "uint8")
    for b in range(batch):
        x1, y1 = 4 + 6 * b, 8
        boxes[b, 0] = (x1, y1, x1 + 16, y1 + 16)
        labels[b, 0] = classes[b % len(classes)]
        masks[b, 0, y1 : y1 + 16, x1 : x1 + 16] = 1
    return {"boxes": boxes, "labels": labels, "masks": masks}


def shape_batch(num_images=2, size=48):
    data, info = load_instance_dataset("shapes", "train", num_images=num_images, image_size=size)
    return next(iter(instance_pipeline(data, num_images, max_instances=3))), info


# === Registry and the shared model checks ===


def test_registered_as_instance_models():
    assert {"rpn", "mnc"} <= set(list_models(task="instance"))
    assert isinstance(create_model("rpn", **get_model_spec("rpn").tiny), RegionProposalNetwork)
    model = create_model("mnc", **get_model_spec("mnc").tiny)
    assert isinstance(model, MultitaskNetworkCascade)
    assert model.output_shape == [(None, 5, 4), (None, 5), (None, 5), (None, 5, 8, 8), (None,)]


def test_rpn_shared_checks(rng):
    # Config round trip, .keras, SavedModel and builtin-only TFLite parity of
    # the inference graph (backbone, head, anchors, decoding, NMS).
    x = images(rng)
    boxes, scores, count = run_model_test(tiny("rpn"), x, fit=False, atol=1e-4)
    assert boxes.shape == (2, 16, 4) and scores.shape == (2, 16)
    assert np.all(boxes[..., 2] <= 48) and np.all(boxes[..., 3] <= 40) and np.all(boxes >= 0)
    assert np.all(np.diff(scores, axis=1) <= 1e-6)  # highest first


def test_vgg16_backbone_is_conv5_3_and_takes_imagenet_names():
    model = rpn(backbone="vgg16", post_nms_top_n=8, pre_nms_top_n=100)
    assert model.stride == 16 and model.backbone.output_shape == (None, None, None, 512)
    assert model.backbone(np.zeros((1, 64, 80, 3), "float32")).shape == (1, 4, 5, 512)
    assert model.get_config()["anchor_scales"] == (64.0, 128.0, 256.0, 512.0)  # MNC's 12
    # weights="imagenet" transplants keras.applications.VGG16 by layer name.
    source = keras.applications.VGG16(weights=None, include_top=False)
    loaded = transplant_vgg16(source, model.backbone, include_fc=False)
    assert len(loaded) == 13
    np.testing.assert_array_equal(
        model.backbone.get_layer("block5_conv3").kernel.numpy(),
        source.get_layer("block5_conv3").kernel.numpy(),
    )


@pytest.mark.parametrize("refine", [False, True])
def test_mnc_shared_checks(rng, refine):
    x = images(rng)
    # With refine, boxes (pixels, up to 48) pass through a second float32
    # decode after the regression: graph and TFLite rounding reach ~1e-3 pixel.
    boxes, scores, classes, masks, count = run_model_test(
        tiny("mnc", refine=refine), x, fit=False, atol=2e-3 if refine else 1e-4
    )
    count = np.asarray(count)
    assert np.all((count >= 1) & (count <= 5))
    valid = np.arange(5)[None] < count[:, None]
    assert np.all(np.asarray(classes)[valid] >= 1) and np.all(np.asarray(classes)[~valid] == 0)
    assert np.all((masks >= 0) & (masks <= 1)) and np.all(masks[~valid] == 0)


@pytest.mark.parametrize("name", ["mnc", "rpn"])
def test_instance_serving_signature_and_tflite(rng, name):
    model = tiny(name, refine=True) if name == "mnc" else tiny(name)
    small = images(rng, 2, 40, 48).astype("uint8")
    other = images(rng, 1, 56, 36).astype("uint8")
    with tempfile.TemporaryDirectory() as directory:
        path = export_saved_model(model, directory, task="instance")
        flatbuffer = convert_to_tflite(model, task="instance")  # builtin ops only, or it raises
        # One SavedModel and one .tflite file serve any image size.
        for x in (small, other):
            reference = {k: v.numpy() for k, v in model.detect(x).items()}
            assert reference["masks"].dtype == np.uint8
            assert reference["masks"].shape[2:] == x.shape[1:3]
            report = verify_export(reference, x, saved_model_dir=path, tflite_model=flatbuffer)
            for artifact in report.values():
                assert artifact["boxes"] < 1e-3 and artifact["scores"] < 1e-4
                assert artifact["classes"] == 0 and artifact["num_detections"] == 0
                assert artifact["masks"] <= 1e-3  # a pixel at exactly 0.5 may flip


# === Training through fit ===


def test_gradients_flow_through_the_cascade():
    (x, y), _ = shape_batch()
    model = tiny("mnc", num_classes=4)
    with tf.GradientTape(persistent=True) as tape:
        terms = model.instance_losses(x, y, training=True)
        total = tf.add_n(list(terms.values()))
    weights = model.trainable_variables
    for weight, grad in zip(weights, tape.gradient(total, weights)):
        assert grad is not None, weight.path
        assert np.all(np.isfinite(grad))
    # Stage 3's loss reaches stage 2 through the predicted masks, and the
    # mask loss reaches the backbone through RoIAlign.
    mask_kernel = model.mask_head.logits.kernel
    assert np.any(tape.gradient(terms["class"], mask_kernel) != 0)
    backbone_kernel = model.backbone.trainable_variables[0]
    assert np.any(tape.gradient(terms["mask"], backbone_kernel) != 0)
    # The RPN box regression gets no gradient from stages 2 and 3: box
    # coordinates of proposals are constants there.
    reg_kernel = model.get_layer("rpn_reg").kernel
    assert tape.gradient(terms["mask"] + terms["class"], reg_kernel) is None


@pytest.mark.parametrize("name", ["rpn", "mnc"])
def test_one_jit_compiled_fit_step(name):
    (x, y), _ = shape_batch()
    model = tiny(name, num_classes=4) if name == "mnc" else tiny(name)
    model.compile(keras.optimizers.SGD(0.01), jit_compile=True)
    history = model.fit(x, y, batch_size=2, epochs=1, verbose=0).history
    expected = {"loss", "rpn_objectness_loss", "rpn_box_loss"}
    if name == "mnc":
        expected |= {"mask_loss", "class_loss", "box_loss"}
    assert set(history) == expected
    assert all(np.isfinite(v[0]) for v in history.values())
    # evaluate() runs the same losses through the inference-mode call.
    scores = model.evaluate(x, y, batch_size=2, verbose=0, return_dict=True)
    assert set(scores) == expected


def test_fit_on_batches_with_a_dynamic_instance_count():
    # Without max_instances and image_size, G, height and width are only
    # known per batch: the traced train step must not need them.
    data, info = load_instance_dataset("shapes", "train", num_images=4, image_size=48)
    batches = instance_pipeline(data, 2)
    assert batches.element_spec[1]["masks"].shape.as_list() == [None, None, None, None]
    model = tiny("mnc", num_classes=info.num_classes)
    model.compile("sgd")
    history = model.fit(batches, epochs=1, verbose=0).history
    assert np.isfinite(history["loss"][0])
    with pytest.raises(ValueError, match="compile it without loss"):
        model.compile("sgd", loss="mse")


def test_zero_instances_give_finite_losses(rng):
    x = images(rng, 2, 40, 40)
    empty = {
        "boxes": -np.ones((2, 3, 4), "float32"),
        "labels": -np.ones((2, 3), "int32"),
        "masks": np.zeros((2, 3, 40, 40), "uint8"),
    }
    model = tiny("mnc")
    terms = {k: float(v) for k, v in model.instance_losses(x, empty, training=True).items()}
    assert all(np.isfinite(v) for v in terms.values()), terms
    assert terms["rpn_objectness"] > 0 and terms["class"] > 0
    assert terms["rpn_box"] == 0 and terms["mask"] == 0 and terms["box"] == 0
    # No instance slot at all (G = 0) works too.
    none = {
        "boxes": np.zeros((2, 0, 4), "float32"),
        "labels": np.zeros((2, 0), "int32"),
        "masks": np.zeros((2, 0, 40, 40), "uint8"),
    }
    terms = model.instance_losses(x, none)
    assert all(np.isfinite(float(v)) for v in terms.values())
    rpn_terms = tiny("rpn").instance_losses(x, none)
    assert all(np.isfinite(float(v)) for v in rpn_terms.values())


def gt_box_mask_loss(model, x, y):
    """Stage 2's logistic loss on the ground-truth boxes themselves: a fixed
    yardstick (the training RoIs change as the RPN learns)."""
    features = model._training_call(x)["features"]
    boxes = tf.maximum(y["boxes"], 0.0)
    logits = model.mask_head(model.roi_align([features, boxes]))
    count = boxes.shape[1]
    indices = tf.tile(tf.range(count)[None], [boxes.shape[0], 1])
    size = model.get_config()["mask_size"]
    targets = tf.cast(crop_and_resize_masks(y["masks"], boxes, indices, size) >= 0.5, "float32")
    loss = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(targets, logits), axis=[2, 3])
    valid = tf.cast(y["labels"] > 0, "float32")
    return float(tf.reduce_sum(loss * valid) / tf.reduce_sum(valid))


def test_overfits_two_shape_images():
    (x, y), info = shape_batch(2, 48)
    keras.utils.set_random_seed(1)
    model = mnc(
        num_classes=info.num_classes,
        backbone="light",
        light_filters=(16, 32, 32),
        anchor_scales=(12, 24),
        pre_nms_top_n=300,
        post_nms_top_n=24,
        batch_size_per_image=64,
        roi_size=7,
        roi_sampling_ratio=1,
        mask_size=14,
        mask_units=64,
        fc_units=64,
        rois_per_image=16,
        max_detections=5,
    )
    mask_loss_before = gt_box_mask_loss(model, x, y)
    model.compile(keras.optimizers.Adam(3e-3))
    history = model.fit(x, y, batch_size=2, epochs=50, verbose=0).history
    first = {k: np.mean(v[:3]) for k, v in history.items()}
    last = {k: np.mean(v[-5:]) for k, v in history.items()}
    assert last["loss"] < 0.5 * first["loss"], (first, last)
    assert last["rpn_objectness_loss"] < 0.2 * first["rpn_objectness_loss"], (first, last)
    assert last["class_loss"] < 0.4 * first["class_loss"], (first, last)
    assert gt_box_mask_loss(model, x, y) < 0.5 * mask_loss_before
    # Every training instance comes back as a detected mask.
    detections = model.detect(x)
    ious = []
    for b in range(2):
        count = int(detections["num_detections"][b])
        predicted = detections["masks"][b, :count].numpy().astype(bool)
        for g in np.flatnonzero(y["labels"][b].numpy() > 0):
            truth = y["masks"][b, g].numpy().astype(bool)
            ious.append(max((p & truth).sum() / (p | truth).sum() for p in predicted))
    assert min(ious) > 0.3 and np.mean(ious) > 0.5, ious


# === Target assignment by hand ===


def test_rpn_losses_on_a_hand_example():
    # Three anchors: one equal to the box (positive, zero delta target), one
    # disjoint (negative), one overlapping 1/3 (IoU in [0.3, 0.7): ignored).
    anchors = np.array([[0, 0, 16, 16], [32, 32, 48, 48], [8, 0, 24, 16]], "float32")
    gt = np.array([[[0, 0, 16, 16]]], "float32")
    logits = np.array([[2.0, -1.0, 5.0]], "float32")
    deltas = np.zeros((1, 3, 4), "float32")
    deltas[0, 0] = [0.5, 0.0, 0.0, 0.0]  # smooth L1 (beta 1/9): 0.5 - 1/18
    deltas[0, 2] = [9.0, 9.0, 9.0, 9.0]  # ignored anchor: no loss
    objectness, box = rpn_losses(logits, deltas, anchors, gt, np.array([[True]]))
    bce = np.log1p(np.exp(-2.0)) + np.log1p(np.exp(-1.0))
    np.testing.assert_allclose(float(objectness), bce / 2, rtol=1e-5)
    np.testing.assert_allclose(float(box), (0.5 - 0.5 / 9) / 2, rtol=1e-5)


def test_sample_rois_on_a_hand_example():
    gt = np.array([[[0, 0, 20, 20], [40, 40, 60, 60], [0, 0, 0, 0]]], "float32")
    gt_labels = np.array([[2, 3, -1]], "int32")
    gt_valid = gt_labels >= 1
    proposals = np.array(
        [[[0, 0, 20, 24], [20, 20, 40, 40], [41, 41, 60, 60], [0, 0, 20, 20]]], "float32"
    )
    # The fourth proposal is padding (count 3): never sampled.
    rois = sample_rois(
        proposals,
        np.array([3]),
        gt,
        gt_labels,
        gt_valid,
        rois_per_image=8,
        foreground_fraction=1.0,
    )
    weights = rois["weights"].numpy()[0]
    boxes = rois["boxes"].numpy()[0][weights > 0]
    classes = rois["classes"].numpy()[0][weights > 0]
    got = sorted(zip(map(tuple, boxes.tolist()), classes.tolist()))
    expected = sorted(
        [
            ((0, 0, 20, 24), 2),  # IoU 0.83 with the first box
            ((20, 20, 40, 40), 0),  # IoU 0: background
            ((41, 41, 60, 60), 3),  # IoU 0.9 with the second box
            ((0, 0, 20, 20), 2),  # the ground-truth boxes are candidates too
            ((40, 40, 60, 60), 3),
        ]
    )
    assert got == expected
    assert weights.sum() == 5
    # At most a quarter foreground when the background can fill the rest.
    many = np.tile(np.array([[[100, 100, 120, 120]]], "float32"), (1, 40, 1))
    rois = sample_rois(many, np.array([40]), gt, gt_labels, gt_valid, rois_per_image=16)
    fg = rois["foreground"].numpy()
    assert fg.sum() == 2 and rois["weights"].numpy().sum() == 16  # both gt boxes are fg


def test_prepare_ground_truth_drops_degenerate_and_outside_boxes():
    x = np.zeros((1, 32, 32, 3), "float32")
    boxes = np.array([[[4, 4, 12, 12], [40, 40, 50, 50], [5, 5, 5, 9], [-4, 20, 8, 40]]], "f4")
    labels = np.array([[1, 2, 1, 3]], "int32")
    clipped, new_labels, valid, _ = prepare_ground_truth(x, boxes, labels)
    assert valid.numpy().tolist() == [[True, False, False, True, False]]
    assert new_labels.numpy().tolist() == [[1, -1, -1, 3, -1]]
    np.testing.assert_allclose(clipped.numpy()[0, 3], [0, 20, 8, 32])


# === Mask crop-and-resize and pasting against NumPy ===


def test_crop_and_resize_masks_matches_reference(rng):
    masks = (rng.random((2, 3, 20, 24)) > 0.5).astype("float32")
    boxes = rng.uniform(0, 18, size=(2, 4, 4)).astype("float32")
    boxes[..., 2:] = boxes[..., :2] + rng.uniform(1, 10, size=(2, 4, 2))
    boxes[0, 0] = [-3, -2, 30, 25]  # beyond the image
    indices = rng.integers(0, 3, size=(2, 4))
    actual = crop_and_resize_masks(masks, boxes, indices, size=7).numpy()
    expected = crop_and_resize_masks_reference(masks, boxes, indices, 7)
    np.testing.assert_allclose(actual, expected, atol=1e-5)
    # A box on a filled square crops to all ones.
    square = np.zeros((1, 1, 20, 20), "float32")
    square[0, 0, 4:14, 6:16] = 1
    full = crop_and_resize_masks(square, np.array([[[6, 4, 16, 14]]], "f4"), [[0]], 28).numpy()
    # Inside, all ones; the outermost samples blend with the pixels outside
    # the box (as Detectron2's targets do), and only the corners fall below
    # the 0.5 threshold.
    np.testing.assert_allclose(full[0, 0, 2:-2, 2:-2], 1.0)
    assert np.sum(full < 0.5) == 4


def test_paste_masks_matches_reference(rng):
    masks = rng.random((2, 3, 6, 6)).astype("float32")
    boxes = rng.uniform(-4, 12, size=(2, 3, 4)).astype("float32")
    boxes[..., 2:] = boxes[..., :2] + rng.uniform(0.5, 14, size=(2, 3, 2))
    boxes[1, 2] = 0  # padding
    actual = paste_masks(masks, boxes, (13, 17)).numpy()
    np.testing.assert_allclose(actual, paste_masks_reference(masks, boxes, (13, 17)), atol=1e-5)
    assert np.all(actual[1, 2] == 0)
    # Pasting a cropped mask back restores it (up to the border pixels).
    square = np.zeros((1, 1, 32, 32), "float32")
    square[0, 0, 8:24, 4:20] = 1
    box = np.array([[[4, 8, 20, 24]]], "float32")
    crop = crop_and_resize_masks(square, box, [[0]], 28)
    pasted = paste_masks(crop, box, (32, 32)).numpy() >= 0.5
    assert np.array_equal(pasted, square > 0)


def test_paste_masks_in_a_full_integer_tflite_file_keeps_float_coordinates(rng, tmp_path):
    # A detector pads its unused detection slots with zero boxes: in an int8
    # file their extent quantised to 0 and the division failed at run time
    # ("DIV ... data[i] != zero_point"); the coordinates stay in float. Traced
    # at the top level of a signature, as the instance serving function is.
    module = tf.Module()
    module.paste = tf.function(
        lambda masks, boxes: {"pasted": paste_masks(masks, boxes, (24, 32))},
        input_signature=[
            tf.TensorSpec((1, 4, 7, 7), tf.float32, name="masks"),
            tf.TensorSpec((1, 4, 4), tf.float32, name="boxes"),
        ],
    )
    path = str(tmp_path / "paste")
    tf.saved_model.save(module, path, signatures=module.paste)

    def example():
        boxes = np.zeros((1, 4, 4), np.float32)  # the last two slots empty
        corner = rng.uniform(0, 12, size=(2, 2))
        boxes[0, :2] = np.concatenate([corner, corner + rng.uniform(4, 12, size=(2, 2))], 1)
        masks = rng.uniform(size=(1, 4, 7, 7)).astype(np.float32)
        return {"masks": masks, "boxes": boxes}

    calibration = [example() for _ in range(16)]
    flatbuffer = convert_to_tflite(path, quantization="int8", representative_images=calibration)
    inputs = example()
    outputs = run_tflite(flatbuffer, inputs)["pasted"]
    expected = paste_masks_reference(inputs["masks"], inputs["boxes"], (24, 32))
    np.testing.assert_allclose(outputs, expected, atol=0.05)  # int8 masks, float positions


# === Data pipeline ===


def test_instance_pipeline_resizes_and_pads():
    data, _ = load_instance_dataset("shapes", "train", num_images=3, image_size=32)
    x, y = next(iter(instance_pipeline(data, 3, image_size=(64, 48), max_instances=4)))
    assert x.shape == (3, 64, 48, 3) and x.dtype == tf.uint8
    assert y["boxes"].shape == (3, 4, 4) and y["labels"].shape == (3, 4)
    assert y["masks"].shape == (3, 4, 64, 48) and y["masks"].dtype == tf.uint8
    original = next(iter(data.batch(3)))
    counts = original["num_instances"].numpy()
    labels = y["labels"].numpy()
    for b, count in enumerate(counts):
        assert (
            labels[b, :count].tolist()
            == original["bounding_boxes"]["labels"][b, :count].numpy().tolist()
        )
        assert np.all(labels[b, count:] == -1)
        # Boxes follow the resize: (x * 1.5, y * 2).
        np.testing.assert_allclose(
            y["boxes"][b, :count].numpy(),
            original["bounding_boxes"]["boxes"][b, :count].numpy() * [1.5, 2, 1.5, 2],
            rtol=1e-5,
        )


def test_instance_pipeline_flips_reproducibly():
    data, _ = load_instance_dataset("shapes", "train", num_images=8, image_size=32)

    def batches():
        pipeline = instance_pipeline(data, 8, max_instances=3, shuffle=8, flip=True, seed=3)
        return [(x.numpy(), y["boxes"].numpy(), y["masks"].numpy()) for x, y in pipeline]

    first, second = batches(), batches()
    for a, b in zip(first[0], second[0]):
        np.testing.assert_array_equal(a, b)
    _, boxes, masks = first[0]
    for b, g in zip(*np.nonzero(masks.any(axis=(2, 3)))):
        ys, xs = np.nonzero(masks[b, g])
        # The shapes' boxes are their masks' extents, flipped or not.
        np.testing.assert_allclose(boxes[b, g], [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])


def test_instance_pipeline_drops_crowds_and_empty_boxes():
    element = {
        "images": np.zeros((1, 20, 20, 3), "uint8"),
        "image_id": np.array([7]),
        "bounding_boxes": {
            "boxes": np.array([[[2, 2, 8, 8], [1, 1, 9, 9], [30, 30, 40, 40]]], "float32"),
            "labels": np.array([[1, 2, 3]], "int32"),
        },
        "instance_masks": np.ones((1, 3, 20, 20), "uint8"),
        "is_crowd": np.array([[False, True, False]]),
        "num_instances": np.array([3], "int32"),
    }
    data = tf.data.Dataset.from_tensor_slices(element)
    _, y = next(iter(instance_pipeline(data, 1)))
    assert y["labels"].numpy().tolist() == [[1]]


# === Errors ===


def test_target_errors(rng):
    x = images(rng, 2, 40, 40)
    model = tiny("mnc")
    targets = square_targets()
    wrong_size = {**targets, "masks": np.zeros((2, 2, 20, 40), "uint8")}
    with pytest.raises(ValueError, match=r"targets\['masks'\] height 20 does not match"):
        model.instance_losses(x, wrong_size)
    with pytest.raises(ValueError, match=r"targets\['masks'\] is missing"):
        model.instance_losses(x, {"boxes": targets["boxes"], "labels": targets["labels"]})
    too_big = {**targets, "labels": np.array([[3, -1], [1, -1]], "int32")}
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"targets\['labels'\].*num_classes=3"):
        model.instance_losses(x, too_big)
    background = {**targets, "labels": np.array([[0, -1], [1, -1]], "int32")}
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"targets\['labels'\].*background"):
        model.instance_losses(x, background)
    with pytest.raises(ValueError, match="pass \\(images, targets\\)"):
        model.compute_loss(x, None, None)
    # A model fitted on a bad batch fails with the same message.
    model.compile("sgd")
    with pytest.raises(ValueError, match=r"targets\['masks'\]"):
        model.fit(x, wrong_size, batch_size=2, verbose=0)


def test_builder_errors():
    with pytest.raises(ValueError, match="multiple of roi_size"):
        tiny("mnc", roi_size=3)
    with pytest.raises(ValueError, match="num_classes"):
        tiny("mnc", num_classes=1)
    with pytest.raises(ValueError, match="backbone must be one of"):
        tiny("rpn", backbone="resnet50")
    with pytest.raises(ValueError, match="needs backbone='vgg16'"):
        tiny("mnc", weights="imagenet")
    with pytest.raises(ValueError, match="negative_iou"):
        tiny("rpn", positive_iou=0.3, negative_iou=0.5)
    with pytest.raises(ValueError, match="loss_weights has unknown keys"):
        tiny("mnc", loss_weights={"masks": 2.0})
    with pytest.raises(ValueError, match="smaller than the minimum"):
        tiny("mnc")(np.zeros((1, 16, 64, 3), "float32"))


def test_train_instance_model_smoke():
    result = train_instance_model(
        "mnc",
        image_size=48,
        num_train=4,
        num_val=2,
        batch_size=2,
        epochs=1,
        model_kwargs={k: v for k, v in get_model_spec("mnc").tiny.items() if k != "num_classes"},
    )
    assert result["steps"] == 2
    metrics = result["metrics"]
    assert {"mask_AP", "mAPr@0.5", "mAPr@0.7", "box_AP"} <= set(metrics)
    assert all(0.0 <= metrics[k] <= 1.0 for k in ("mAPr@0.5", "mAPr@0.7"))


def test_predict_instances_batches_images_with_different_instance_counts(tmp_path):
    # Resized COCO images share one static size, so they are batched; their
    # instance counts (2, 1, 1) differ, which must not reach the batching.
    root = write_squares_layout(str(tmp_path))
    data, _ = load_instance_dataset(f"coco:{root}", "val")
    data = resize_instances(data, 48)
    predictions = predict_instances(tiny("mnc"), data, batch_size=2)
    assert [p["image_id"] for p in predictions] == [1, 2, 3]
    for p in predictions:
        assert p["masks"].shape[1:] == (48, 48) and len(p["boxes"]) == len(p["scores"])


def test_proposals_in_a_full_integer_tflite_file_match_float(rng):
    # The objectness comes from an int8 convolution. Unusable boxes once
    # scored -inf: the int8 file took it into the logits' range (their scale
    # tied through top_k) and every logit read 0; the decoding and NMS stay
    # in float, the unusable boxes score a finite floor.
    features = keras.Input((6, 6, 8), name="features")
    scorer, regressor = keras.layers.Conv2D(1, 1), keras.layers.Conv2D(4, 1)
    objectness = keras.layers.Reshape((36,))(scorer(features))
    deltas = keras.layers.Reshape((36, 4))(regressor(features))
    centres = (np.stack(np.meshgrid(np.arange(6), np.arange(6)), -1).reshape(36, 2) + 0.5) * 8
    half = np.where(np.arange(36) % 2, 6.0, 0.5)[:, None]  # every other one too small to use
    anchors = np.concatenate([centres - half, centres + half], -1).astype(np.float32)
    images = keras.ops.zeros((1, 48, 48, 3))
    boxes, scores, _ = ProposalLayer(20, 5, 0.5, min_size=2.0)(
        [objectness, deltas, keras.ops.convert_to_tensor(anchors), images]
    )
    model = keras.Model(features, {"boxes": boxes, "scores": scores})
    scorer.set_weights([rng.normal(size=(1, 1, 8, 1)), np.zeros(1)])
    regressor.set_weights([rng.normal(0, 0.1, size=(1, 1, 8, 4)), np.zeros(4)])
    sample = [rng.uniform(0, 1, (1, 6, 6, 8)).astype(np.float32) for _ in range(17)]
    flatbuffer = convert_to_tflite(model, quantization="int8", representative_images=sample[:16])
    outputs = run_tflite(flatbuffer, {"features": sample[16]})
    expected = model(sample[16])
    # The best proposal is the same box (int8 logits order the rest a little differently).
    np.testing.assert_allclose(outputs["boxes"][0, 0], expected["boxes"][0, 0], atol=1.0)
    np.testing.assert_allclose(outputs["scores"][0, 0], expected["scores"][0, 0], atol=0.05)
