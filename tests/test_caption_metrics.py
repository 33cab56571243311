import math
import os
import shutil

import numpy as np
import pytest

from keras_segattn.data import captions as cap
from keras_segattn.evaluation.captioning import (
    attention_localization,
    grid_coverage,
    score_captions,
)

_REFS = {
    1: ["A red circle above a blue square.", "a red circle over a blue square"],
    2: ["two dogs play in the snow", "Dogs playing in snow."],
    3: ["a man rides a horse on the beach", "a person riding a horse by the sea"],
}
_PERFECT = {
    1: "a red circle above a blue square",
    2: "two dogs play in the snow",
    3: "A man rides a horse on the beach.",
}
_WRONG = {1: "a cat sleeps on a sofa", 2: "a dog", 3: "a man rides a horse"}

needs_java = pytest.mark.skipif(shutil.which("java") is None, reason="Java is not installed")


# --- score_captions ---------------------------------------------------------


@needs_java
def test_perfect_candidates_score_top_and_wrong_ones_lower():
    metrics = ("BLEU", "ROUGE_L", "CIDEr")
    perfect = score_captions(_REFS, _PERFECT, metrics)
    wrong = score_captions(_REFS, _WRONG, metrics)
    assert set(perfect) == {"BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "ROUGE-L", "CIDEr"}
    for n in range(1, 5):
        assert perfect[f"BLEU-{n}"] == pytest.approx(1.0, abs=1e-6)
        assert wrong[f"BLEU-{n}"] < perfect[f"BLEU-{n}"]
    assert perfect["ROUGE-L"] == pytest.approx(1.0)
    assert perfect["CIDEr"] > 0
    assert wrong["CIDEr"] < perfect["CIDEr"]


@needs_java
def test_only_candidate_ids_are_scored_and_empty_candidates_count_as_zero():
    refs = dict(_REFS, extra=["never scored"])
    assert score_captions(refs, _PERFECT, ("BLEU",)) == score_captions(_REFS, _PERFECT, ("BLEU",))
    with_empty = {**_PERFECT, 3: ""}
    scores = score_captions(_REFS, with_empty, ("BLEU", "CIDEr"))
    assert 0 < scores["BLEU-1"] < 1
    assert scores["CIDEr"] < score_captions(_REFS, _PERFECT, ("CIDEr",))["CIDEr"]


@needs_java
@pytest.mark.slow
def test_meteor():
    perfect = score_captions(_REFS, _PERFECT, ("METEOR",))
    wrong = score_captions(_REFS, _WRONG, ("meteor",))
    assert perfect == {"METEOR": pytest.approx(1.0)}
    assert 0 <= wrong["METEOR"] < 0.9


@needs_java
def test_meteor_java_failure_is_a_clear_error(tmp_path, monkeypatch):
    # A `java` that runs the PTB tokenizer but dies for METEOR.
    fake = tmp_path / "java"
    fake.write_text(
        "#!/bin/sh\n"
        'case "$*" in *meteor*) echo "Could not reserve enough space" >&2; exit 1;; esac\n'
        f'exec {shutil.which("java")} "$@"\n'
    )
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    with pytest.raises(
        RuntimeError, match="METEOR's Java subprocess failed.*Could not reserve.*Java"
    ):
        score_captions(_REFS, _PERFECT)


def test_missing_java_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(RuntimeError, match="No `java` command found on PATH"):
        score_captions(_REFS, _PERFECT, ("BLEU",))


def test_score_captions_input_errors():
    with pytest.raises(ValueError, match="candidates is empty"):
        score_captions(_REFS, {})
    with pytest.raises(ValueError, match=r"candidates has 1 id\(s\) that references lacks: \[7\]"):
        score_captions(_REFS, {1: "a", 7: "b"})
    with pytest.raises(ValueError, match="metrics must be among"):
        score_captions(_REFS, _PERFECT, ("SPICE",))
    with pytest.raises(ValueError, match="metrics is empty"):
        score_captions(_REFS, _PERFECT, ())
    with pytest.raises(ValueError, match=r"candidates\[1\] must be a str"):
        score_captions(_REFS, {1: ["a red circle"]})
    with pytest.raises(ValueError, match=r"references\[1\] must be a list of str"):
        score_captions({1: "a red circle"}, {1: "a red circle"})
    with pytest.raises(ValueError, match=r"references\[1\] must be a non-empty list"):
        score_captions({1: []}, {1: "a red circle"})
    with pytest.raises(ValueError, match=r"references\[1\] holds only empty captions"):
        score_captions({1: [" "]}, {1: "a red circle"})


# --- grid_coverage ----------------------------------------------------------


def test_grid_coverage_by_area():
    mask = np.zeros((4, 4), bool)
    mask[:2, :3] = True
    np.testing.assert_allclose(grid_coverage(mask, (2, 2)), [[1.0, 0.5], [0.0, 0.0]])
    # 3x3 pixels on a 2x2 grid: each cell is 1.5 x 1.5 pixels.
    corner = np.zeros((3, 3), bool)
    corner[0, 0] = True
    np.testing.assert_allclose(grid_coverage(corner, (2, 2)), [[1 / 2.25, 0], [0, 0]])
    centre = np.zeros((3, 3), bool)
    centre[1, 1] = True
    np.testing.assert_allclose(grid_coverage(centre, (2, 2)), np.full((2, 2), 0.25 / 2.25))
    np.testing.assert_allclose(grid_coverage(np.ones((7, 5)), (3, 2)), np.ones((3, 2)))


def test_grid_coverage_errors():
    with pytest.raises(ValueError, match="mask must be a non-empty 2-D"):
        grid_coverage(np.ones((2, 2, 2)), (1, 1))
    with pytest.raises(ValueError, match="grid_shape must be a"):
        grid_coverage(np.ones((2, 2)), 3)
    with pytest.raises(ValueError, match="grid_shape must be positive"):
        grid_coverage(np.ones((2, 2)), (0, 2))


# --- attention_localization -------------------------------------------------


def _two_circles():
    """8x8 image, 2x2 grid: a red circle fills the top-left cell, a blue one
    the top half of the bottom-right cell."""
    masks = np.zeros((2, 8, 8), bool)
    masks[0, :4, :4] = True
    masks[1, 4:6, 4:] = True
    return masks, ["circle", "circle"], ["red", "blue"]


def test_attention_localization_hand_computed():
    masks, names, colors = _two_circles()
    words = ["a", "blue", "circle", "<end>"]
    alpha = np.full((4, 2, 2), 0.25)
    alpha[2] = [[0.1, 0.1], [0.2, 0.6]]
    out = attention_localization(alpha, words, masks, names, colors)
    # Blue circle only: coverage [[0, 0], [0, 0.5]] -> 0.6 * 0.5.
    assert out["score"] == pytest.approx(0.3)
    assert out["uniform_score"] == pytest.approx(0.125)
    assert (out["count"], out["unmatched"]) == (1, 0)
    # Without colours, both circles: coverage [[1, 0], [0, 0.5]] -> 0.1 + 0.3.
    out = attention_localization(alpha, words, masks, names)
    assert out["score"] == pytest.approx(0.4)
    # Weights that do not sum to 1 are normalised per step.
    out = attention_localization(alpha * 3, words, masks, names, colors)
    assert out["score"] == pytest.approx(0.3)


def test_attention_localization_at_the_colour_step():
    masks, names, colors = _two_circles()
    words = ["a", "blue", "circle", "and", "a", "circle", "<end>"]
    alpha = np.full((7, 2, 2), 0.25)
    alpha[1] = [[0.0, 0.0], [0.0, 1.0]]  # "blue": on the blue circle's cell
    alpha[2] = [[1.0, 0.0], [0.0, 0.0]]  # "circle": on the red one
    at_colour = attention_localization(alpha, words, masks, names, colors, step="colour")
    # Only the noun after a colour word counts; its colour step is scored.
    assert at_colour["count"] == 1 and at_colour["score"] == pytest.approx(0.5)
    at_noun = attention_localization(alpha, words, masks, names, colors)
    assert at_noun["count"] == 2 and at_noun["scores"][0] == pytest.approx(0.0)
    assert at_colour["uniform_score"] == pytest.approx(0.125)  # half of one cell of four
    with pytest.raises(ValueError, match="needs object_colors"):
        attention_localization(alpha, words, masks, names, step="colour")
    with pytest.raises(ValueError, match="step must be one of"):
        attention_localization(alpha, words, masks, names, colors, step="verb")


def test_attended_cells_counts_the_argmax_cells():
    from keras_segattn.evaluation import attended_cells

    collapsed = np.zeros((3, 2, 2))
    collapsed[:, 0, 0] = 1.0
    moving = np.eye(4).reshape(4, 2, 2)
    ended = np.zeros((2, 2, 2))  # steps after <end>: all zeros, not counted
    ended[0, 1, 1] = 1.0
    assert attended_cells([collapsed, collapsed]) == 1
    assert attended_cells([collapsed, moving, ended]) == 4
    assert attended_cells([ended]) == 1


def test_attention_localization_batched_and_unmatched_nouns():
    masks, names, colors = _two_circles()
    alpha = np.zeros((3, 4))  # flat grid, inferred 2x2
    alpha[:, 0] = 1.0  # all attention on the top-left cell
    out = attention_localization(
        [alpha, alpha],
        [["red", "circle", "triangle"], ["blue", "circle"]],
        [masks, masks],
        [names, names],
        [colors, colors],
        nouns=("circle", "square", "triangle"),
    )
    np.testing.assert_allclose(out["scores"], [1.0, 0.0])
    assert (out["count"], out["unmatched"]) == (2, 1)
    assert out["score"] == pytest.approx(0.5)
    assert out["uniform_score"] == pytest.approx((0.25 + 0.125) / 2)
    # Padding objects (empty names) are ignored; no noun gives NaN.
    out = attention_localization(alpha, ["a", "b"], masks, ["", None])
    assert math.isnan(out["score"]) and out["count"] == 0


def test_attention_localization_on_shapes_uniform_attention_is_chance():
    ex = next(cap.shapes_captions(1, image_size=36, seed=2).as_numpy_iterator())
    objects = cap.shapes_caption_objects(ex)
    words = ex["captions"][0].decode().split() + ["<end>"]
    alpha = np.ones((len(words), 6, 6))
    out = attention_localization(
        alpha, words, objects["masks"], objects["names"], objects["colors"]
    )
    assert out["count"] == len(objects["names"]) and out["unmatched"] == 0
    assert out["score"] == pytest.approx(out["uniform_score"])
    # Attention equal to the first object's coverage beats chance.
    first = words.index(objects["names"][0])
    alpha[first] = grid_coverage(objects["masks"][0], (6, 6))
    better = attention_localization(
        alpha, words, objects["masks"], objects["names"], objects["colors"]
    )
    assert better["scores"][0] > out["scores"][0]


def test_attention_localization_errors():
    masks, names, colors = _two_circles()
    alpha = np.full((2, 2, 2), 0.25)
    with pytest.raises(ValueError, match="not one string"):
        attention_localization(alpha, "a circle", masks, names)
    with pytest.raises(ValueError, match="words has 3 words but attention only 2 steps"):
        attention_localization(alpha, ["a", "b", "circle"], masks, names)
    with pytest.raises(ValueError, match="object_names has 1 names for 2 masks"):
        attention_localization(alpha, ["circle"], masks, ["circle"])
    with pytest.raises(ValueError, match="object_colors has 1 colours for 2 masks"):
        attention_localization(alpha, ["circle"], masks, names, ["red"])
    with pytest.raises(ValueError, match="finite, non-negative"):
        attention_localization(-alpha, ["circle"], masks, names)
    with pytest.raises(ValueError, match="step 0 .* summing to 0"):
        attention_localization(np.zeros((2, 2, 2)), ["circle"], masks, names)
    with pytest.raises(ValueError, match="not a square grid: pass grid_shape"):
        attention_localization(np.ones((2, 6)), ["circle"], masks, names)
    out = attention_localization(np.ones((2, 6)), ["circle"], masks, names, grid_shape=(2, 3))
    assert out["count"] == 1
    with pytest.raises(ValueError, match="object_masks must be"):
        attention_localization(alpha, ["circle"], masks[0], names)
    with pytest.raises(ValueError, match="words has 2 captions but the batch sizes"):
        attention_localization([alpha], [["circle"], ["circle"]], [masks], [names])
