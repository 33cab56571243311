"""DeconvNet's proposal-wise inference against a brute-force reference,
selective search, and the ensemble of predictors."""

import json

import keras
import numpy as np
import pytest

from keras_segattn.evaluation.predictors import (
    EnsembleSegmenter,
    ProposalWise,
    WholeImage,
    proposal_probabilities,
)
from keras_segattn.postprocess.proposals import selective_search


def tiny_segmenter(input_size, classes=4, seed=0):
    """A fixed-size semantic model with random (seeded) weights."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((*input_size, 3))
    x = keras.layers.Rescaling(1 / 255.0)(inputs)
    x = keras.layers.Conv2D(6, 3, padding="same", activation="relu")(x)
    outputs = keras.layers.Conv2D(classes, 3, padding="same", bias_initializer="random_normal")(x)
    return keras.Model(inputs, outputs)


def bilinear(array, y, x):
    """`array` (H, W, ...) at `(y, x)`, clamped to its extent."""
    height, width = array.shape[:2]
    y, x = min(max(y, 0.0), height - 1.0), min(max(x, 0.0), width - 1.0)
    top, left = int(np.floor(y)), int(np.floor(x))
    bottom, right = min(top + 1, height - 1), min(left + 1, width - 1)
    dy, dx = y - top, x - left
    return (
        (1 - dy) * (1 - dx) * array[top, left]
        + (1 - dy) * dx * array[top, right]
        + dy * (1 - dx) * array[bottom, left]
        + dy * dx * array[bottom, right]
    )


def reference(model, image, boxes, merge):
    """Proposal by proposal, pixel by pixel: crop (corners on corners),
    the network, softmax, pasted back bilinearly, merged."""
    size = model.input.shape[1:3]
    height, width = image.shape[:2]
    image = image.astype(np.float64)
    pasted, covered = [], np.zeros((height, width, 1))
    for x1, y1, x2, y2 in boxes:
        ys = [y1 + i * (y2 - y1) / (size[0] - 1) for i in range(size[0])]
        xs = [x1 + j * (x2 - x1) / (size[1] - 1) for j in range(size[1])]
        crop = np.array([[bilinear(image, y, x) for x in xs] for y in ys])
        logits = np.asarray(model(crop[None].astype("float32")))[0].astype(np.float64)
        probabilities = np.exp(logits - logits.max(-1, keepdims=True))
        probabilities /= probabilities.sum(-1, keepdims=True)
        out = np.zeros((height, width, probabilities.shape[-1]))
        for r in range(y1, y2 + 1):
            for c in range(x1, x2 + 1):
                u = (r - y1) * (size[0] - 1) / (y2 - y1)
                v = (c - x1) * (size[1] - 1) / (x2 - x1)
                out[r, c] = bilinear(probabilities, u, v)
        pasted.append(out)
        covered[y1 : y2 + 1, x1 : x2 + 1] += 1
    pasted = np.stack(pasted)
    if merge == "sum":
        return pasted.sum(0) / np.maximum(covered, 1e-12)
    merged = pasted.max(0)
    return merged / np.maximum(merged.sum(-1, keepdims=True), 1e-12)


BOXES = np.array(
    [
        [0, 0, 16, 12],  # the whole 13x17 image
        [3, 2, 9, 7],
        [0, 5, 6, 12],  # touching the left and bottom borders
        [10, 0, 16, 4],  # the top-right corner
        [5, 4, 6, 5],  # 2 pixels a side, the smallest allowed
        [2, 1, 15, 11],
    ]
)


@pytest.mark.parametrize("merge", ["sum", "max"])
def test_proposals_match_the_brute_force_reference(rng, merge):
    model = tiny_segmenter((6, 5))
    image = rng.integers(0, 256, (13, 17, 3)).astype("uint8")
    ours = proposal_probabilities(model, image, BOXES, merge)
    expected = reference(model, image, BOXES, merge)
    np.testing.assert_allclose(ours, expected, atol=2e-5)
    np.testing.assert_allclose(ours.sum(-1), 1.0, atol=1e-5)  # the whole image covers all
    # Merged in chunks as in one: the same numbers.
    chunked = ProposalWise(model, 0, merge).probabilities(image, BOXES, batch_size=4)
    np.testing.assert_allclose(chunked, ours, atol=1e-6)
    # Both merges from one pass of the network: each the reference's.
    both = ProposalWise(model, 0, "sum").probabilities_by_merge(image, BOXES, batch_size=4)
    np.testing.assert_allclose(both[merge], expected, atol=2e-5)


def test_the_whole_image_as_its_only_proposal_is_whole_image_inference(rng):
    model = tiny_segmenter((13, 17))
    image = rng.integers(0, 256, (2, 13, 17, 3)).astype("uint8")
    whole = WholeImage(model)(image)
    for merge in ("sum", "max"):
        proposals = ProposalWise(model, 0, merge)(image)
        np.testing.assert_allclose(proposals, whole, atol=1e-5)


def test_proposal_wise_adds_the_whole_image_once(rng):
    model = tiny_segmenter((6, 5))
    image = rng.integers(0, 256, (13, 17, 3)).astype("uint8")
    predictor = ProposalWise(model, 3, proposer=lambda image, n: BOXES[:n])
    np.testing.assert_array_equal(predictor.boxes(image), BOXES[:3])
    np.testing.assert_allclose(
        predictor(image[None])[0], reference(model, image, BOXES[:3], "sum"), atol=2e-5
    )
    uncovered = proposal_probabilities(model, image, BOXES[1:2])
    assert (uncovered[0, 0] == 0).all() and np.allclose(uncovered[4, 5].sum(), 1.0)


def test_bad_requests_are_named():
    model = tiny_segmenter((6, 5))
    image = np.zeros((13, 17, 3), "uint8")
    with pytest.raises(ValueError, match="at least 2 pixels a side; box 1"):
        proposal_probabilities(model, image, [[0, 0, 16, 12], [3, 3, 3, 9]])
    with pytest.raises(ValueError, match="merge must be one of"):
        ProposalWise(model, merge="mean")
    inputs = keras.Input((None, None, 3))
    any_size = keras.Model(inputs, keras.layers.Conv2D(2, 1)(inputs))
    with pytest.raises(ValueError, match="pass input_size"):
        ProposalWise(any_size)
    assert ProposalWise(any_size, input_size=(6, 5)).input_size == (6, 5)
    with pytest.raises(ValueError, match="image must be uint8"):
        selective_search(np.zeros((13, 17), "uint8"))


def test_selective_search_finds_the_objects():
    image = np.full((60, 80, 3), (40, 120, 40), np.uint8)
    image[10:30, 5:25] = (220, 30, 30)  # a red square
    image[35:55, 40:75] = (30, 30, 220)  # a blue rectangle
    boxes = selective_search(image, max_proposals=20, min_side=4)
    assert 0 < len(boxes) <= 20
    assert boxes[:, :2].min() >= 0 and (boxes[:, 2] <= 79).all() and (boxes[:, 3] <= 59).all()
    assert (boxes[:, 2] - boxes[:, 0] + 1 >= 4).all() and (boxes[:, 3] - boxes[:, 1] + 1 >= 4).all()
    assert boxes[0].tolist() == [0, 0, 79, 59]  # the last merge: the whole image
    found = {tuple(b) for b in boxes.tolist()}
    assert (5, 10, 24, 29) in found and (40, 35, 74, 54) in found
    assert len(found) == len(boxes)  # no duplicates


def test_the_ensemble_averages_its_members(rng):
    image = rng.integers(0, 256, (2, 13, 17, 3)).astype("uint8")
    a, b = tiny_segmenter((13, 17), seed=1), tiny_segmenter((13, 17), seed=2)
    ensemble = EnsembleSegmenter([a, WholeImage(b)])
    expected = (WholeImage(a)(image) + WholeImage(b)(image)) / 2
    np.testing.assert_allclose(ensemble(image), expected, atol=1e-6)
    assert not np.allclose(WholeImage(a)(image), WholeImage(b)(image))
    with pytest.raises(ValueError, match="different classes"):
        EnsembleSegmenter([a, tiny_segmenter((13, 17), classes=3)])(image)
    with pytest.raises(ValueError, match="at least one member"):
        EnsembleSegmenter([])


@pytest.mark.slow
def test_segattn_evaluate_composes_proposals_ensemble_and_crf(tmp_path):
    """`--proposals`, `--merge`, `--ensemble` and `--postprocess` score what
    the predictors built by hand score, and each changes the result."""
    from keras_segattn.checkpoints import load_model
    from keras_segattn.cli import main
    from keras_segattn.data.pipeline import load_segmentation_dataset
    from keras_segattn.evaluation.semantic import evaluate_segmentation
    from tests.test_every_model import segmenter_run

    paths = {}
    for name in ("deconvnet", "fcn8s"):
        main(segmenter_run()(name, tmp_path / name, 1, None))
        paths[name] = tmp_path / name / "best.keras"

    def evaluate(*flags):
        scores = tmp_path / "scores.json"
        main(
            [
                "evaluate",
                "--model-path",
                str(paths["deconvnet"]),
                "--data",
                "shapes",
                "--split",
                "val",
                "--output",
                str(scores),
                *flags,
            ]
        )
        return json.loads(scores.read_text())

    flags = [
        "--proposals",
        "3",
        "--merge",
        "max",
        "--ensemble",
        str(paths["fcn8s"]),
        "--postprocess",
        "crf",
    ]
    composed = evaluate(*flags)
    assert (composed["proposals"], composed["merge"]) == (3, "max")
    assert composed["ensemble"] == [str(paths["fcn8s"])] and composed["postprocess"] == "crf"

    deconvnet, fcn8s = load_model(str(paths["deconvnet"])), load_model(str(paths["fcn8s"]))
    data, info = load_segmentation_dataset("shapes", "val")
    by_hand = evaluate_segmentation(
        deconvnet,
        data,
        info.num_classes,
        info.ignore_class,
        postprocess="crf",
        predictor=EnsembleSegmenter(
            [ProposalWise(deconvnet, 3, "max", input_size=(32, 32)), WholeImage(fcn8s, (32, 32))]
        ),
    )
    assert composed["mean_iou"] == pytest.approx(by_hand["mean_iou"], abs=1e-9)
    assert composed["per_class_iou"] == pytest.approx(list(by_hand["per_class_iou"]), abs=1e-9)
    # Each flag counts: leaving one out scores otherwise.
    for left_out in (flags[:4], flags[4:6] + flags[6:], flags[:2] + flags[4:]):
        other = evaluate(*left_out)
        assert other["per_class_iou"] != composed["per_class_iou"], left_out


def test_instance_models_refuse_dense_predictor_flags():
    from keras_segattn.tasks import EvaluateOptions, get_task

    for options in (
        EvaluateOptions(data="shapes", proposals=3),
        EvaluateOptions(data="shapes", ensemble=["x"]),
    ):
        with pytest.raises(ValueError, match="score semantic models, not instance models"):
            get_task("instance").evaluate(None, options)
