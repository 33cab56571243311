import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_segattn.data.instances import load_instance_dataset
from keras_segattn.evaluation.instance import evaluate_instances
from keras_segattn.layers import roi_align
from keras_segattn.models.backbones.vgg import transplant_vgg16_fc
from keras_segattn.models.instance.common import check_boxes, paste_box_masks
from keras_segattn.models.instance.hypercolumns import (
    LocationInterpolation,
    SelectClassGroup,
    hypercolumns,
    location_weights,
    resegment_detections,
    segment_boxes,
)
from keras_segattn.models.instance.regions import (
    mask_iou,
    mask_nms,
    masks_to_boxes,
    propose_regions,
    superpixel_refine,
)
from keras_segattn.models.instance.sds import (
    GridAverage,
    area_weights,
    sds,
    sds_detect,
)
from keras_segattn.models.registry import create_model, get_model_spec, list_models
from keras_segattn.recipes.instance import (
    crop_masks_to_boxes,
    fit_arrays,
    hypercolumn_examples,
    label_regions,
    sds_examples,
    train_hypercolumns,
)
from keras_segattn.testing import run_model_test
from tests import references


def tiny(name, **overrides):
    return create_model(name, **{**get_model_spec(name).tiny, **overrides})


def with_random_classifiers(model, seed=0):
    # The classifiers start at zero (all probabilities 0.5); small random
    # weights make every check compare outputs that vary.
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if layer.name.endswith("_classifier"):
            kernel, bias = layer.get_weights()
            layer.set_weights(
                [
                    rng.normal(0, 0.01, kernel.shape).astype("float32"),
                    rng.normal(0, 0.5, bias.shape).astype("float32"),
                ]
            )
    return model


def two_squares_image():
    image = np.full((48, 48, 3), (90, 100, 110), np.uint8)
    image[6:20, 8:22] = (230, 40, 40)
    image[26:42, 24:44] = (40, 60, 230)
    first = np.zeros((48, 48), bool)
    first[6:20, 8:22] = True
    second = np.zeros((48, 48), bool)
    second[26:42, 24:44] = True
    return image, first, second


# ---------------------------------------------------------------------------
# Registry and the shared model checks
# ---------------------------------------------------------------------------


def test_both_registered_as_instance_models():
    assert {"hypercolumns", "sds"} <= set(list_models(task="instance"))
    assert "Hypercolumns" in get_model_spec("hypercolumns").paper
    assert "Simultaneous Detection and Segmentation" in get_model_spec("sds").paper


def test_hypercolumns_passes_model_checks_with_builtin_tflite(rng):
    model = with_random_classifiers(tiny("hypercolumns"))
    images = rng.integers(0, 256, (2, 40, 36, 3)).astype("float32")
    boxes = np.array([[[2, 3, 20, 30], [0, 0, 36, 40], [5.5, 5, 9, 12.5]]] * 2, "float32")
    classes = np.array([[1, 2, 1], [2, 2, 1]], "int32")
    targets = (rng.random((2, 3, 8, 8)) > 0.5).astype("float32")
    out = run_model_test(
        model, [images, boxes, classes], targets=targets, loss="binary_crossentropy"
    )
    out = np.asarray(out)
    assert out.shape == (2, 3, 8, 8)
    assert np.all((out > 0) & (out < 1)) and out.std() > 0.01


def test_sds_passes_model_checks_with_builtin_tflite(rng):
    # Seeded: drawn from whatever state earlier tests left, a tiny network's
    # ReLUs can all be dead on three crops, and its first kernels get no
    # gradient (which the shared checks refuse as a test that proves nothing).
    keras.utils.set_random_seed(0)
    model = tiny("sds")
    crops = rng.integers(0, 256, (3, 32, 32, 3)).astype("float32")
    masks = (rng.random((3, 32, 32)) > 0.5).astype("float32")
    targets = [np.array([0, 1, 2]), rng.random((3, 4, 4)).astype("float32")]
    probabilities, figure_ground = run_model_test(
        model,
        [crops, masks],
        targets=targets,
        loss=["sparse_categorical_crossentropy", "binary_crossentropy"],
    )
    assert probabilities.shape == (3, 3) and figure_ground.shape == (3, 4, 4)
    np.testing.assert_allclose(np.sum(probabilities, axis=1), 1.0, atol=1e-5)


def test_sds_pathways_separate_by_default_or_shared(rng):
    separate = tiny("sds")
    shared = tiny("sds", shared=True)
    assert {"box_network", "region_network"} <= {layer.name for layer in separate.layers}
    assert "network" in {layer.name for layer in shared.layers}
    assert len(shared.trainable_weights) < len(separate.trainable_weights)
    # The region pathway sees the mean (0 after preprocessing) outside the
    # region: with an empty mask its input does not depend on the image.
    crops = rng.integers(0, 256, (2, 32, 32, 3)).astype("float32")
    empty = np.zeros((2, 32, 32), "float32")
    probe = keras.Model(separate.inputs, separate.get_layer("region_foreground").output)
    assert np.all(np.asarray(probe([crops, empty])) == 0)


# ---------------------------------------------------------------------------
# Hypercolumns pieces
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("grid_size", [1, 3, 5])
def test_location_classifiers_match_numpy_reference(grid_size, rng):
    mask_h, mask_w, depth = 7, 9, 5
    hypercolumns_in = keras.Input((2, mask_h, mask_w, depth))
    scores = keras.layers.Dense(grid_size**2, name="classifiers")(hypercolumns_in)
    outputs = LocationInterpolation(grid_size)(scores)
    model = keras.Model(hypercolumns_in, outputs)
    kernel = rng.normal(size=(depth, grid_size**2)).astype("float32")
    bias = rng.normal(size=grid_size**2).astype("float32")
    model.get_layer("classifiers").set_weights([kernel, bias])
    features = rng.normal(size=(1, 2, mask_h, mask_w, depth)).astype("float32")
    out = np.asarray(model(features))
    for n in range(2):
        expected = references.location_classifier_reference(features[0, n], kernel, bias, grid_size)
        np.testing.assert_allclose(out[0, n], expected, atol=1e-4)


def test_location_weights_equal_bilinear_upsampling_of_a_classifier_grid(rng):
    # With the same score at every location, blending the K x K classifiers
    # is resizing the K x K map of their scores to the box grid.
    grid = rng.normal(size=(4, 4)).astype("float32")
    weights = location_weights(12, 10, 4)
    blended = weights @ grid.reshape(-1)
    resized = tf.image.resize(grid[None, :, :, None], (12, 10), method="bilinear")
    np.testing.assert_allclose(blended, resized.numpy()[0, :, :, 0], atol=1e-5)
    np.testing.assert_allclose(weights.sum(axis=-1), 1.0, atol=1e-12)


def test_select_class_group_picks_each_boxes_class(rng):
    scores = rng.normal(size=(2, 3, 4, 4, 3 * 5)).astype("float32")
    classes = np.array([[1, 3, 2], [2, 2, 1]], "int32")
    out = np.asarray(SelectClassGroup(3, 5)([scores, classes]))
    for b, n in np.ndindex(2, 3):
        c = classes[b, n] - 1
        np.testing.assert_array_equal(out[b, n], scores[b, n, ..., c * 5 : (c + 1) * 5])


@pytest.mark.parametrize("class_specific", [False, True])
def test_classifying_each_tap_then_upsampling_equals_classifying_the_hypercolumn(
    rng, class_specific
):
    taps = ("pool2", "block4_conv3", "block5_conv3")
    model = tiny("hypercolumns", taps=taps, class_specific=class_specific)
    model = with_random_classifiers(model)
    images = rng.integers(0, 256, (1, 48, 40, 3)).astype("float32")
    boxes = np.array([[[3.0, 4.5, 30.0, 41.0], [10.0, 0.0, 40.0, 20.0]]], "float32")
    classes = np.array([[2, 1]], "int32")
    inputs = [images, boxes, classes] if class_specific else [images, boxes]
    probe = keras.Model(
        model.inputs,
        [model.get_layer(n).output for n in ("block2_pool", "block4_conv3", "block5_conv3")]
        + [model.get_layer("hypercolumn_scores").output],
    )
    *feature_maps, summed = probe(inputs)
    # The hypercolumn: every tap's features resampled to the box grid, stacked.
    columns = [
        roi_align(f, boxes, (8, 8), sampling_ratio=1, spatial_scale=1.0 / s)
        for f, s in zip(feature_maps, (4, 8, 16))
    ]
    hypercolumn = np.concatenate([np.asarray(c) for c in columns], axis=-1)
    kernel = np.concatenate(
        [model.get_layer(f"{t}_classifier").get_weights()[0][0, 0] for t in taps], axis=0
    )
    bias = sum(model.get_layer(f"{t}_classifier").get_weights()[1] for t in taps)
    expected = hypercolumn @ kernel + bias
    if class_specific:
        # Each box's class's K^2 classifiers (class c is group c - 1).
        group = model.get_layer("location_interpolation").grid_size ** 2
        expected = np.stack(
            [expected[0, n, ..., (c - 1) * group : c * group] for n, c in enumerate(classes[0])]
        )[None]
    np.testing.assert_allclose(expected, summed, atol=1e-4)


def test_paste_box_masks_interpolates_like_the_reference_inside_boxes(rng):
    # The shared paste (Detectron2's, zero padding) and the clamping
    # reference agree wherever a pixel centre lies between the first and
    # last mask-cell centres; they differ only in the outer half-cells.
    masks = rng.random((3, 5, 6)).astype("float32")
    boxes = np.array([[1.5, 2.0, 9.0, 11.5], [0.0, 0.0, 11.0, 13.0], [2.0, 1.0, 10.0, 12.0]])
    pasted = paste_box_masks(masks, boxes, (13, 11))
    for mask, (x1, y1, x2, y2), out in zip(masks, boxes, pasted):
        expected = references.paste_mask_reference(mask, (x1, y1, x2, y2), (13, 11))
        v = (np.arange(13) + 0.5 - y1) / (y2 - y1) * 5 - 0.5
        u = (np.arange(11) + 0.5 - x1) / (x2 - x1) * 6 - 0.5
        inner = ((v >= 0) & (v <= 4))[:, None] & ((u >= 0) & (u <= 5))[None, :]
        assert inner.sum() > 20
        np.testing.assert_allclose(out[inner], expected[inner], atol=1e-5)
    binary = paste_box_masks(masks, boxes, (13, 11), threshold=0.5)
    assert binary.dtype == np.uint8
    np.testing.assert_array_equal(binary, pasted > 0.5)


def test_crop_then_paste_recovers_a_mask():
    mask = np.zeros((1, 40, 40), np.uint8)
    mask[0, 10:30, 12:26] = 1
    box = np.array([[12.0, 10.0, 26.0, 30.0]])
    crop = crop_masks_to_boxes(mask, box, 16)
    np.testing.assert_array_equal(crop, 1.0)
    pasted = paste_box_masks(crop, box, (40, 40), threshold=0.5)
    np.testing.assert_array_equal(pasted, mask)


def test_hypercolumn_examples_have_jittered_boxes_and_box_targets():
    dataset, _ = load_instance_dataset("shapes", "train", num_images=3, image_size=48)
    inputs, targets, weights = hypercolumn_examples(dataset, 10, copies=2, seed=0)
    assert inputs["images"].shape == (6, 48, 48, 3)
    count = inputs["boxes"].shape[1]
    assert targets.shape == (6, count, 10, 10) and weights.shape == (6, count, 1)
    for example, i in zip(dataset.as_numpy_iterator(), range(0, 6, 2)):
        n = int(example["num_instances"])
        truth = example["bounding_boxes"]["boxes"][:n]
        for j in (i, i + 1):
            assert np.all(weights[j, :n] == 1) and np.all(weights[j, n:] == 0)
            ious = [
                references.box_iou_reference(a[None], b[None])[0, 0]
                for a, b in zip(inputs["boxes"][j, :n], truth)
            ]
            assert min(ious) >= 0.7 - 1e-6
            assert np.all(targets[j, :n].reshape(n, -1).mean(axis=1) > 0.2)


def test_transplant_fc_copies_dense_kernels():
    model = tiny("hypercolumns")
    fan_in = model.get_layer("fc6").kernel.shape[0]
    units = model.get_layer("fc6").kernel.shape[1]
    source_in = keras.Input((fan_in,))
    hidden = keras.layers.Dense(units, name="fc1")(source_in)
    source = keras.Model(source_in, keras.layers.Dense(units, name="fc2")(hidden))
    assert transplant_vgg16_fc(source, model) == ["fc6", "fc7"]
    for src, dst in (("fc1", "fc6"), ("fc2", "fc7")):
        for a, b in zip(source.get_layer(src).get_weights(), model.get_layer(dst).get_weights()):
            np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------------------
# Regions, refinement and SDS pieces
# ---------------------------------------------------------------------------


def test_proposals_find_both_squares():
    image, first, second = two_squares_image()
    masks, boxes = propose_regions(image, scales=(50, 100))
    assert masks.dtype == bool and masks.shape[1:] == (48, 48) and len(masks) == len(boxes)
    ious = mask_iou(np.stack([first, second]), masks)
    assert np.all(ious.max(axis=1) > 0.9)
    # Boxes are the masks' tight boxes, no mask repeats.
    np.testing.assert_array_equal(boxes, masks_to_boxes(masks))
    assert len({m.tobytes() for m in masks}) == len(masks)
    capped, _ = propose_regions(image, scales=(50, 100), max_regions=3)
    assert len(capped) == 3


def test_superpixel_refinement_snaps_a_jagged_region_to_the_object(rng):
    image, first, _ = two_squares_image()
    jagged = first.copy()
    boundary = np.zeros_like(first)
    boundary[4:22, 6:24] = True
    boundary[8:18, 10:20] = False
    flips = boundary & (rng.random(first.shape) < 0.5)
    jagged[flips] = ~jagged[flips]
    before = mask_iou(first[None], jagged[None])[0, 0]
    refined = superpixel_refine(image, jagged.astype(np.float32), scale=50)
    after = mask_iou(first[None], refined[None])[0, 0]
    assert before < 0.85 and after > 0.97


def test_mask_nms_suppresses_overlapping_regions():
    _, first, second = two_squares_image()
    shifted = np.roll(first, 1, axis=1)
    masks = np.stack([first, shifted, second])
    keep = mask_nms(masks, [0.5, 0.9, 0.7], iou_threshold=0.3)
    np.testing.assert_array_equal(keep, [1, 2])


def test_grid_average_matches_area_averaging(rng):
    maps = rng.random((2, 12, 12)).astype("float32")
    out = np.asarray(GridAverage(5)(maps))
    rows = area_weights(12, 5)
    np.testing.assert_allclose(out, rows @ maps @ rows.T, atol=1e-5)
    np.testing.assert_allclose(area_weights(12, 4) @ np.ones(12), 1.0)
    np.testing.assert_allclose(
        np.asarray(GridAverage(4)(maps))[:, 0, 0], maps[:, :3, :3].mean((1, 2)), atol=1e-5
    )


def test_label_regions_thresholds():
    _, first, second = two_squares_image()
    half = first.copy()
    half[:, 15:] = False  # IoU 0.5 with first
    quarter = first.copy()
    quarter[13:, :] = False
    quarter[:, 15:] = False  # IoU 0.25
    middle = first.copy()
    middle[:, 18:] = False  # 10 of 14 columns: IoU 0.71
    labels, matches = label_regions(
        np.stack([first, half, quarter, second, middle]), np.stack([first, second]), [2, 3]
    )
    np.testing.assert_array_equal(labels, [2, 2, 0, 3, 2])
    np.testing.assert_array_equal(matches[[0, 1, 3]], [0, 0, 1])
    third = first.copy()
    third[:, 12:] = False  # 4 of 14 columns: 0.29 -> background; 6 of 14: 0.43 -> unused
    fourth = first.copy()
    fourth[:, 14:] = False
    labels, _ = label_regions(np.stack([third, fourth]), first[None], [1])
    np.testing.assert_array_equal(labels, [0, -1])


def test_sds_examples_and_detect_end_to_end():
    dataset, info = load_instance_dataset("shapes", "val", num_images=2, image_size=48)
    inputs, (labels, figure_ground), (weights, positive) = sds_examples(
        dataset, crop_size=32, grid_size=4, proposal_kwargs={"scales": (50,)}
    )
    count = len(labels)
    assert inputs["box_crops"].shape == (count, 32, 32, 3)
    assert inputs["region_masks"].shape == (count, 32, 32)
    assert figure_ground.shape == (count, 4, 4) and positive.shape == (count, 1)
    assert set(np.unique(labels)) <= {0, 1, 2, 3} and np.any(labels > 0) and np.any(labels == 0)
    np.testing.assert_array_equal(positive[:, 0], labels > 0)
    # A positive's target is mostly object, and ground truth is included.
    assert figure_ground[labels > 0].mean() > 0.4
    # Proposals computed beforehand (train_sds shares the held-out ones with
    # the scoring) give the same arrays.
    found = [propose_regions(e["images"], scales=(50,)) for e in dataset.as_numpy_iterator()]
    again = sds_examples(dataset, crop_size=32, grid_size=4, proposals=found)
    tf.nest.map_structure(
        np.testing.assert_array_equal, again, (inputs, (labels, figure_ground), (weights, positive))
    )

    model = sds(num_classes=info.num_classes, crop_size=32, width=0.0625, fc_units=8, grid_size=4)
    examples = list(dataset.as_numpy_iterator())
    predictions = [
        sds_detect(
            model,
            e["images"],
            int(e["image_id"]),
            score_threshold=0.0,
            proposal_kwargs={"scales": (50,)},
            max_detections=20,
        )
        for e in examples
    ]
    for p, e in zip(predictions, examples):
        assert p["masks"].shape[1:] == e["images"].shape[:2] and p["masks"].dtype == np.uint8
        assert len(p["scores"]) == len(p["labels"]) == len(p["boxes"]) <= 20
        assert np.all(np.diff(p["scores"]) <= 0)
    metrics = evaluate_instances(predictions, dataset, num_classes=info.num_classes)
    assert {"mAPr@0.5", "mAPr@0.7", "AP"} <= set(metrics)
    segmenter = tiny("hypercolumns", num_classes=info.num_classes)
    resegmented = [
        resegment_detections(segmenter, e["images"], p) for p, e in zip(predictions, examples)
    ]
    for p, q in zip(predictions, resegmented):
        np.testing.assert_array_equal(q["labels"], p["labels"])
        np.testing.assert_array_equal(q["scores"], p["scores"])
        assert q["masks"].shape == p["masks"].shape
    evaluate_instances(resegmented, dataset, num_classes=info.num_classes)
    nothing = sds_detect(
        model, examples[0]["images"], score_threshold=1.0, proposal_kwargs={"scales": (50,)}
    )
    assert nothing["masks"].shape == (0, 48, 48)


def test_segment_boxes_returns_image_size_masks(rng):
    model = tiny("hypercolumns")
    image = rng.integers(0, 256, (40, 36, 3)).astype(np.uint8)
    result = segment_boxes(model, image, [[2, 3, 20, 30], [0, 0, 36, 40]], classes=[1, 2])
    assert result["masks"].shape == (2, 40, 36) and result["scores"].shape == (2,)
    assert not result["masks"][0, 31:].any() and not result["masks"][0, :, 21:].any()


# ---------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "boxes, match",
    [
        ([[0, 0, 50, 10]], "outside the image"),
        ([[-5, 0, 10, 10]], "outside the image"),
        ([[5, 5, 5, 10]], "degenerate"),
        ([[8, 5, 4, 10]], "degenerate"),
        ([[0, 0, np.nan, 4]], "non-finite"),
        ([0, 0, 4, 4], r"\(num_boxes, 4\)"),
    ],
)
def test_bad_boxes_are_rejected(boxes, match):
    with pytest.raises(ValueError, match=match):
        check_boxes(boxes, (40, 36, 3))


def test_bad_classes_and_images_are_rejected(rng):
    model = tiny("hypercolumns")  # num_classes=3: object classes 1 and 2
    image = rng.integers(0, 256, (40, 36, 3)).astype(np.uint8)
    with pytest.raises(
        ValueError, match=r"\[3\] are out of range: expected object class ids 1\.\.2"
    ):
        segment_boxes(model, image, [[0, 0, 10, 10]], classes=[3])
    with pytest.raises(ValueError, match=r"\[0\] are out of range"):
        segment_boxes(model, image, [[0, 0, 10, 10]], classes=[0])
    with pytest.raises(ValueError, match="class-specific: pass classes"):
        segment_boxes(model, image, [[0, 0, 10, 10]])
    with pytest.raises(ValueError, match="outside the image"):
        segment_boxes(model, image, [[0, 0, 37, 10]], classes=[1])


def test_mismatched_masks_are_rejected():
    image, first, _ = two_squares_image()
    model = tiny("sds")
    with pytest.raises(ValueError, match=r"proposal masks must be \(num_masks, 48, 48\)"):
        sds_detect(model, image, proposals=(np.zeros((1, 40, 48), bool), [[0, 0, 4, 4]]))
    with pytest.raises(ValueError, match="one box per mask"):
        sds_detect(model, image, proposals=(first[None], np.zeros((0, 4))))
    with pytest.raises(ValueError, match="proposal boxes.*degenerate"):
        sds_detect(model, image, proposals=(first[None], [[4, 4, 4, 9]]))
    with pytest.raises(ValueError, match="uint8"):
        sds_detect(model, image.astype(np.float32))
    with pytest.raises(ValueError, match=r"probability must be \(H, W\) = \(48, 48\)"):
        superpixel_refine(image, np.zeros((40, 40)))
    with pytest.raises(ValueError, match="same height and width"):
        mask_iou(first[None], np.zeros((1, 40, 40), bool))


def test_bad_builder_arguments_are_rejected():
    with pytest.raises(ValueError, match="crop_size must be a multiple of 32"):
        sds(num_classes=3, crop_size=48, width=0.0625)
    with pytest.raises(ValueError, match="weights='imagenet' needs"):
        sds(num_classes=3, crop_size=32, width=0.0625, weights="imagenet")
    with pytest.raises(ValueError, match="weights='imagenet' needs the full VGG16"):
        hypercolumns(num_classes=3, width=0.0625, mask_size=8, weights="imagenet")
    with pytest.raises(ValueError, match="Unknown taps"):
        hypercolumns(num_classes=3, width=0.0625, taps=("conv9",))
    with pytest.raises(ValueError, match="num_classes must be an int >= 2"):
        hypercolumns(num_classes=1)


def test_train_and_held_out_shapes_defaults_and_coco_resizing(tmp_path):
    from keras_segattn.recipes.instance import train_and_held_out
    from tests.data.test_coco import write_squares_layout

    train, held_out, info = train_and_held_out("shapes", 32, num_eval=3, shapes=(5, 40))
    assert info.num_classes == 4
    assert len(list(train)) == 5 and len(list(held_out)) == 3
    assert next(iter(held_out))["images"].shape == (32, 32, 3)
    root = write_squares_layout(str(tmp_path))
    train, held_out, _ = train_and_held_out(f"coco:{root}", 48, num_train=2)
    assert len(list(train)) == 2 and len(list(held_out)) == 3
    assert next(iter(train))["instance_masks"].shape[1:] == (48, 48)
    with pytest.raises(ValueError, match="detector .* is not a file"):
        train_hypercolumns(detector=str(tmp_path / "missing.keras"))


def test_fit_arrays_trains_every_example_once_an_epoch_with_its_schedule():
    dataset, info = load_instance_dataset("shapes", "train", num_images=3, image_size=32)
    inputs, targets, weights = hypercolumn_examples(dataset, 8, copies=1, seed=0)
    model = tiny("hypercolumns", num_classes=info.num_classes)
    history, seconds = fit_arrays(
        model, "binary_crossentropy", inputs, targets, weights, 2, 2, 1e-3, 0, schedule="cosine"
    )
    assert len(history["loss"]) == 2 and seconds > 0
    assert int(model.optimizer.iterations) == 2 * 2  # 3 examples in batches of 2, twice
    assert float(model.optimizer.learning_rate) == 0.0  # decayed to 0 at the last step
