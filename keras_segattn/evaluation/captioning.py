"""Caption quality (BLEU, METEOR, ROUGE-L, CIDEr) and attention localisation.

`score_captions` runs the COCO caption evaluation code (pycocoevalcap) the
published captioning results use, so numbers are comparable with papers:
the Stanford PTB tokenizer, BLEU-1..4, METEOR 1.5, ROUGE-L and CIDEr-D.
The tokenizer and METEOR are Java programs: Java must be on `PATH`.

`attention_localization` asks whether a "Show, Attend and Tell" decoder
looks at an object when it names it, using images whose objects are known
(the built-in shapes: `keras_segattn.data.captions.shapes_caption_objects`).
"""

import collections.abc
import math
import shutil

import numpy as np

_METRICS = {"BLEU": "BLEU", "METEOR": "METEOR", "ROUGE_L": "ROUGE_L", "ROUGE-L": "ROUGE_L"}
_METRICS["CIDER"] = "CIDEr"
# Line breaks of any kind would make the line-based PTB tokenizer shift every
# later caption onto the wrong image.
_LINE_BREAKS = str.maketrans({c: " " for c in "\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"})

_JAVA_HELP = (
    "pycocoevalcap's PTB tokenizer and METEOR are Java programs, so Java (a `java` "
    "command on PATH, Java 8 or later, e.g. OpenJDK 17) is needed"
)


def _check_java():
    if shutil.which("java") is None:
        raise RuntimeError(f"No `java` command found on PATH: {_JAVA_HELP}.")


def _tokenize(captions, what):
    """PTB-tokenizes `{id: [str, ...]}`, keeping empty captions empty."""
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    cleaned = {k: [c.translate(_LINE_BREAKS).strip() for c in v] for k, v in captions.items()}
    to_run = {k: [{"caption": c} for c in v if c] for k, v in cleaned.items()}
    to_run = {k: v for k, v in to_run.items() if v}
    tokenized = {}
    if to_run:
        try:
            tokenized = PTBTokenizer().tokenize(to_run)
        except OSError as e:
            raise RuntimeError(f"The PTB tokenizer failed on the {what}: {e}. {_JAVA_HELP}.") from e
    out = {}
    for k, v in cleaned.items():
        done = iter(tokenized.get(k, []))
        out[k] = [next(done, None) if c else "" for c in v]
        if None in out[k] or len(tokenized.get(k, [])) != len(to_run.get(k, [])):
            raise RuntimeError(
                f"The PTB tokenizer returned no or misaligned output for the {what} (id {k!r}); "
                f"its Java process probably failed. {_JAVA_HELP}."
            )
    return out


def _meteor(gts, res):
    from pycocoevalcap.meteor.meteor import Meteor

    try:
        meteor = Meteor()
    except OSError as e:
        raise RuntimeError(f"Could not start METEOR: {e}. {_JAVA_HELP}.") from e
    try:
        score, _ = meteor.compute_score(gts, res)
        return float(score)
    except (OSError, ValueError) as e:
        # A dead JVM shows up as a broken pipe or an empty line that is not
        # a float.
        meteor.meteor_p.kill()
        stderr = meteor.meteor_p.stderr.read().decode("utf-8", "replace").strip()
        raise RuntimeError(
            f"METEOR's Java subprocess failed ({type(e).__name__}: {e}"
            + (f"; its stderr: {stderr[-500:]}" if stderr else "")
            + f"). {_JAVA_HELP}, with 2 GB of heap for METEOR."
        ) from e
    finally:
        # Meteor.__del__ would wait forever on a lock held by a failed call.
        if meteor.lock.locked():
            meteor.lock.release()
        process = meteor.meteor_p
        process.kill()
        process.wait()
        for stream in (process.stdin, process.stdout, process.stderr):
            try:
                stream.close()
            except OSError:  # unflushed input to a dead JVM: a broken pipe
                pass


def score_captions(references, candidates, metrics=("BLEU", "METEOR", "CIDEr")):
    """Scores generated captions against references with the COCO code.

    Captions are PTB-tokenized and lowercased first, as in the COCO caption
    evaluation. Scores are corpus-level over the ids of `candidates`
    (references may hold more ids). CIDEr's document frequencies come from
    the references of the scored ids, so CIDEr is 0 when a single image is
    scored and is only comparable across equally large test sets. An empty
    candidate (a decoder that stopped at once) is scored, as 0.

    Args:
        references: dict. `{image_id: [str, ...]}`, at least one non-empty
            reference per scored id.
        candidates: dict. `{image_id: str}`, one generated caption per image.
        metrics: iterable of str. Any of `"BLEU"`, `"METEOR"`, `"ROUGE_L"`,
            `"CIDEr"` (case-insensitive). Defaults to
            `("BLEU", "METEOR", "CIDEr")`.

    Returns:
        A dict of floats with keys among `"BLEU-1"` .. `"BLEU-4"`,
        `"METEOR"`, `"ROUGE-L"`, `"CIDEr"` (BLEU in 0..1, CIDEr in 0..10).

    Raises:
        ValueError: if `candidates` is empty, an id of `candidates` is not
            in `references`, a caption is not a str, a reference list is
            empty, or a metric is unknown.
        RuntimeError: if Java is missing or the tokenizer or METEOR's Java
            subprocess fails.

    Examples:
        >>> refs = {1: ["a red circle", "a red disc"], 2: ["two blue squares"]}
        >>> scores = score_captions(refs, {1: "a red circle", 2: "two blue squares"},
        ...                         metrics=("BLEU",))  # doctest: +SKIP
        >>> scores["BLEU-1"]  # doctest: +SKIP
        1.0
    """
    if isinstance(metrics, str):
        metrics = (metrics,)
    wanted = []
    for m in metrics:
        key = _METRICS.get(str(m).upper())
        if key is None:
            raise ValueError(
                f"metrics must be among 'BLEU', 'METEOR', 'ROUGE_L', 'CIDEr'; got {m!r}"
            )
        if key not in wanted:
            wanted.append(key)
    if not wanted:
        raise ValueError("metrics is empty; expected some of 'BLEU', 'METEOR', 'ROUGE_L', 'CIDEr'")
    if not isinstance(references, collections.abc.Mapping):
        raise ValueError(f"references must be a dict {{id: [str, ...]}}; got {type(references)}")
    if not isinstance(candidates, collections.abc.Mapping):
        raise ValueError(f"candidates must be a dict {{id: str}}; got {type(candidates)}")
    if not candidates:
        raise ValueError("candidates is empty; expected at least one {id: caption} entry")
    missing = [k for k in candidates if k not in references]
    if missing:
        raise ValueError(
            f"candidates has {len(missing)} id(s) that references lacks: {missing[:5]}"
            + (" ..." if len(missing) > 5 else "")
        )
    gts, res = {}, {}
    for k, caption in candidates.items():
        if not isinstance(caption, str):
            raise ValueError(f"candidates[{k!r}] must be a str; got {type(caption).__name__}")
        refs = references[k]
        if isinstance(refs, str) or not isinstance(refs, collections.abc.Iterable):
            raise ValueError(f"references[{k!r}] must be a list of str; got {type(refs).__name__}")
        refs = list(refs)
        if not refs or not all(isinstance(r, str) for r in refs):
            raise ValueError(f"references[{k!r}] must be a non-empty list of str; got {refs!r}")
        if not any(r.strip() for r in refs):
            raise ValueError(f"references[{k!r}] holds only empty captions")
        gts[k], res[k] = refs, [caption]

    _check_java()
    gts = _tokenize(gts, "references")
    gts = {k: [r for r in v if r] or v for k, v in gts.items()}
    res = _tokenize(res, "candidates")

    scores = {}
    if "BLEU" in wanted:
        from pycocoevalcap.bleu.bleu import Bleu

        bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
        scores.update({f"BLEU-{n + 1}": float(b) for n, b in enumerate(bleu)})
    if "METEOR" in wanted:
        scores["METEOR"] = _meteor(gts, res)
    if "ROUGE_L" in wanted:
        from pycocoevalcap.rouge.rouge import Rouge

        scores["ROUGE-L"] = float(Rouge().compute_score(gts, res)[0])
    if "CIDEr" in wanted:
        from pycocoevalcap.cider.cider import Cider

        scores["CIDEr"] = float(Cider().compute_score(gts, res)[0])
    return scores


# ---------------------------------------------------------------------------
# Attention localisation
# ---------------------------------------------------------------------------


def _cell_overlap(size, cells):
    """`(cells, size)`: fraction of each grid cell covered by each pixel."""
    edges = np.arange(cells + 1) * (size / cells)
    pixels = np.arange(size)
    lo = np.maximum(edges[:-1, None], pixels[None, :])
    hi = np.minimum(edges[1:, None], pixels[None, :] + 1)
    return np.clip(hi - lo, 0.0, None) / (size / cells)


def grid_coverage(mask, grid_shape):
    """Fraction of each attention-grid cell that a mask covers, by area.

    The grid splits the image into `Hg x Wg` equal cells (not necessarily
    whole pixels), as an encoder's feature map does up to receptive-field
    effects; a cell's value is the area of the mask inside it over the
    cell's area.

    Args:
        mask: bool or 0/1 array `(H, W)` at image resolution.
        grid_shape: tuple `(Hg, Wg)`. Attention grid.

    Returns:
        A float64 array `(Hg, Wg)` in 0..1.

    Raises:
        ValueError: if `mask` is not 2-D or `grid_shape` not two positive
            ints.

    Examples:
        >>> grid_coverage(np.eye(2, dtype=bool), (1, 1)).tolist()
        [[0.5]]
    """
    mask = np.asarray(mask)
    if mask.ndim != 2 or mask.size == 0:
        raise ValueError(f"mask must be a non-empty 2-D (H, W) array; got shape {mask.shape}")
    hg, wg = _grid_shape(grid_shape)
    mask = mask.astype(np.float64)
    return _cell_overlap(mask.shape[0], hg) @ mask @ _cell_overlap(mask.shape[1], wg).T


def _grid_shape(grid_shape):
    try:
        hg, wg = (int(v) for v in grid_shape)
    except (TypeError, ValueError):
        raise ValueError(
            f"grid_shape must be a (rows, cols) pair of ints; got {grid_shape!r}"
        ) from None
    if hg < 1 or wg < 1:
        raise ValueError(f"grid_shape must be positive; got {grid_shape!r}")
    return hg, wg


def _text(value):
    if value is None:
        return ""
    if isinstance(value, bytes):
        value = value.decode("utf-8")
    return str(value).strip().lower()


def _attention_grid(attention, grid_shape, index):
    att = np.asarray(attention, np.float64)
    where = f"attention[{index}]" if index is not None else "attention"
    if att.ndim == 2:
        steps, cells = att.shape
        if grid_shape is None:
            side = math.isqrt(cells)
            if side * side != cells:
                raise ValueError(
                    f"{where} is flat with {cells} cells, not a square grid: pass grid_shape"
                )
            grid_shape = (side, side)
        hg, wg = _grid_shape(grid_shape)
        if hg * wg != cells:
            raise ValueError(f"{where} has {cells} cells per step but grid_shape={grid_shape!r}")
        att = att.reshape(steps, hg, wg)
    elif att.ndim == 3:
        if grid_shape is not None and tuple(_grid_shape(grid_shape)) != att.shape[1:]:
            raise ValueError(f"{where} has grid {att.shape[1:]} but grid_shape={grid_shape!r}")
    else:
        raise ValueError(
            f"{where} must be (steps, Hg, Wg) or (steps, Hg * Wg) per caption; got {att.shape}"
        )
    if not np.all(np.isfinite(att)) or np.any(att < 0):
        raise ValueError(f"{where} must hold finite, non-negative weights")
    return att


LOCALIZATION_STEPS = ("noun", "colour")


def attention_localization(
    attention,
    words,
    object_masks,
    object_names,
    object_colors=None,
    nouns=None,
    grid_shape=None,
    step="noun",
):
    """Share of attention on the named object when its noun is emitted
    (or, with `step="colour"`, when the colour word before it is).

    For every emitted word that is a noun (`nouns`), the objects of that
    name are looked up; if the word before the noun is the colour of some
    of them (`"a red circle"`), only those are kept. The target is the
    union of their masks, reduced to the attention grid by area
    (`grid_coverage`), and the pair's score is
    `sum_cells alpha_t(cell) * coverage(cell)` with `alpha_t` the step's
    weights normalised to sum 1: the expected fraction of object inside the
    attended cell, 1 when all attention lies on cells fully inside the
    object. Uniform attention scores the object's area fraction, returned
    as `uniform_score` for comparison. A noun with no object of that name
    in its image (a hallucination) is skipped and counted in `unmatched`.

    `attention[t]` must be the weights that produced `words[t]`, i.e. the
    context the decoder used when it emitted that word (in Show, Attend and
    Tell, `alpha_t` feeds the step that outputs `y_t`). The grid is taken
    to cover the whole image the masks describe (`caption_pipeline` resizes
    without cropping, so original-resolution masks are right).

    `step="colour"` scores the weights of the step before the noun instead,
    for the pairs where that word is the colour of the named objects (`"a
    red circle"`: the step that emitted `"red"`); it needs `object_colors`.
    The two show whether the decoder looks at an object while it describes
    it, or only before.

    Args:
        attention: One caption's weights `(steps, Hg, Wg)` or
            `(steps, Hg * Wg)`, or a batch: an array with one more leading
            axis or a list of such arrays (steps may differ).
        words: One caption's emitted words, a list of str aligned with the
            steps (at most `steps` long; `<end>` and anything not in
            `nouns` is ignored), or a list of such lists.
        object_masks: `(K, H, W)` bool/0-1 masks at image resolution, or
            a list (or `(N, K, H, W)` array) of them.
        object_names: K nouns, one per mask (`""` or `None` marks padding),
            or a list of such lists. For the shapes: `"circle"`,
            `"square"`, `"triangle"`.
        object_colors: K colour words, or a list of such lists, or `None`
            to match on the noun alone. Defaults to `None`.
        nouns: iterable of str. Words counted as object nouns; pass every
            class name so hallucinated nouns are counted. Defaults to the
            names found in `object_names` over the whole call.
        grid_shape: tuple `(Hg, Wg)` for flat attention; `None` takes a
            square grid. Defaults to `None`.
        step: `"noun"` or `"colour"`: whose weights are scored (see
            above). Defaults to `"noun"`.

    Returns:
        A dict: `score` (mean over matched (caption, noun) pairs, NaN if
        none), `count` (number of such pairs), `unmatched` (nouns with no
        object of that name), `uniform_score` (mean score uniform attention
        would get on the same pairs) and `scores` (float64 array, one per
        pair, in order).

    Raises:
        ValueError: for inconsistent lengths or shapes (naming the
            argument and caption), negative or non-finite weights, a scored
            step whose weights sum to 0, or `words` given as one string.

    Examples:
        >>> masks = np.zeros((1, 4, 4), bool)
        >>> masks[0, :2, :3] = True  # top-left cell, half of top-right cell
        >>> alpha = np.array([[[0.5, 0.2], [0.2, 0.1]]])
        >>> out = attention_localization(alpha, ["circle"], masks, ["circle"])
        >>> round(out["score"], 6), out["count"], out["uniform_score"]
        (0.6, 1, 0.375)
    """
    if isinstance(words, (str, bytes)):
        raise ValueError(
            "words must be the list of emitted words (one per step), not one string; "
            f"got {words!r:.60}"
        )
    if step not in LOCALIZATION_STEPS:
        raise ValueError(f"step must be one of {LOCALIZATION_STEPS}; got step={step!r}.")
    if step == "colour" and object_colors is None:
        raise ValueError("step='colour' needs object_colors (the colour word of each object).")
    words = list(words)
    single = not words or all(isinstance(w, (str, bytes)) for w in words)
    if single:
        attention, words = [attention], [words]
        object_masks, object_names = [object_masks], [object_names]
        object_colors = None if object_colors is None else [object_colors]
    n = len(words)
    lengths = {
        "attention": len(attention),
        "object_masks": len(object_masks),
        "object_names": len(object_names),
    }
    if object_colors is not None:
        lengths["object_colors"] = len(object_colors)
    if any(v != n for v in lengths.values()):
        raise ValueError(f"words has {n} captions but the batch sizes are {lengths}")

    names = [[_text(x) for x in per_image] for per_image in object_names]
    if nouns is None:
        noun_set = {x for per_image in names for x in per_image if x}
    else:
        noun_set = {_text(x) for x in ([nouns] if isinstance(nouns, str) else nouns)}

    scores, uniform, unmatched = [], [], 0
    for i in range(n):
        where = f"[{i}]" if not single else ""
        att = _attention_grid(attention[i], grid_shape, None if single else i)
        caption = [_text(w) for w in words[i]]
        if len(caption) > att.shape[0]:
            raise ValueError(
                f"words{where} has {len(caption)} words but attention{where} only "
                f"{att.shape[0]} steps"
            )
        masks = np.asarray(object_masks[i])
        if masks.ndim != 3:
            raise ValueError(f"object_masks{where} must be (K, H, W); got shape {masks.shape}")
        if len(names[i]) != masks.shape[0]:
            raise ValueError(
                f"object_names{where} has {len(names[i])} names for {masks.shape[0]} masks"
            )
        colors = None
        if object_colors is not None:
            colors = [_text(c) for c in object_colors[i]]
            if len(colors) != masks.shape[0]:
                raise ValueError(
                    f"object_colors{where} has {len(colors)} colours for {masks.shape[0]} masks"
                )
        for t, word in enumerate(caption):
            if word not in noun_set:
                continue
            found = [k for k, name in enumerate(names[i]) if name == word]
            if not found:
                unmatched += 1
                continue
            if colors is not None and t > 0:
                same_colour = [k for k in found if colors[k] == caption[t - 1]]
                found = same_colour or found
                if step == "colour":
                    if not same_colour:
                        continue  # no colour word before this noun
                    t, word = t - 1, caption[t - 1]
            elif step == "colour":
                continue
            total = att[t].sum()
            if total <= 0:
                raise ValueError(
                    f"attention{where} step {t} (word {word!r}) has weights summing to 0"
                )
            coverage = grid_coverage(masks[found].astype(bool).any(axis=0), att.shape[1:])
            scores.append(float((att[t] * coverage).sum() / total))
            uniform.append(float(coverage.mean()))
    return {
        "score": float(np.mean(scores)) if scores else float("nan"),
        "count": len(scores),
        "unmatched": unmatched,
        "uniform_score": float(np.mean(uniform)) if uniform else float("nan"),
        "scores": np.asarray(scores, np.float64),
    }


__all__ = ["attended_cells", "attention_localization", "grid_coverage", "score_captions"]


def evaluate_captioner(
    model, dataset, beam_width=3, objects=None, nouns=None, batch_size=32, examples=5
):
    """Captions every image of `dataset` and scores the captions.

    Args:
        model: a `ShowAttendTell`.
        dataset: unbatched caption dataset (`images`, `captions`,
            `image_id`; plus what `objects` reads).
        beam_width: int. 1 decodes greedily, more runs beam search.
        objects: callable or `None`. With a function from an example to
            its named objects (`{"masks", "names", "colors"}`, e.g.
            `keras_segattn.data.shapes_caption_objects` for the built-in
            shapes), attention localisation is scored too.
        nouns: list of str. The object nouns of `objects` (for the shapes,
            `keras_segattn.data.shapes.CLASS_NAMES[1:]`).
        batch_size: int. Images per `generate` call.
        examples: int. How many (reference, generated) pairs to keep.

    Returns:
        A dict: `BLEU-1`..`BLEU-4`, `METEOR`, `CIDEr`, `num_images`,
        `exact_match` (share of captions equal to a reference), with
        `objects` the localisation at the noun step (`localization`,
        `localization_uniform`, `localization_pairs`,
        `hallucinated_nouns`) and at the colour step
        (`localization_colour`, ...), and `attended_cells`
        (`attended_cells`), and a few `examples`.
    """
    method = "greedy" if beam_width == 1 else "beam"
    references, candidates, exact = {}, {}, []
    attention_maps, words, masks, names, colors = [], [], [], [], []
    for batch in _batches(dataset, batch_size):
        # Images of any sizes, resized to the model's as `generate` would.
        images = np.stack([model.resize_images(e["images"][None])[0] for e in batch])
        generated = model.generate(images, method=method, beam_width=beam_width)
        for example, caption, row_words, maps in zip(
            batch, generated["captions"], generated["words"], generated["attention"]
        ):
            image_id = int(example["image_id"])
            refs = [c.decode() for c in example["captions"]]
            references[image_id], candidates[image_id] = refs, caption
            exact.append(caption in refs)
            if objects is not None:
                found = objects(example)
                attention_maps.append(maps[: max(len(row_words), 1)])
                words.append(row_words)
                masks.append(found["masks"])
                names.append(found["names"])
                colors.append(found["colors"])
    scores = score_captions(references, candidates)
    report = {k: float(v) for k, v in scores.items()}
    report.update(num_images=len(candidates), exact_match=float(np.mean(exact)))
    if objects is not None:
        found = (attention_maps, words, masks, names, colors)
        localization = attention_localization(*found, nouns=nouns)
        at_colour = attention_localization(*found, nouns=nouns, step="colour")
        report.update(
            localization=float(localization["score"]),
            localization_uniform=float(localization["uniform_score"]),
            localization_pairs=int(localization["count"]),
            hallucinated_nouns=int(localization["unmatched"]),
            localization_colour=float(at_colour["score"]),
            localization_colour_uniform=float(at_colour["uniform_score"]),
            localization_colour_pairs=int(at_colour["count"]),
            attended_cells=attended_cells(attention_maps),
        )
    report["examples"] = [
        {"image_id": i, "generated": candidates[i], "references": references[i]}
        for i in list(candidates)[:examples]
    ]
    return report


def attended_cells(attention_maps):
    """How many grid cells are ever the most attended one, over every step
    of every caption: 1 when attention has collapsed onto one cell (a
    hard-attention failure), up to the grid's size when it moves.

    Args:
        attention_maps: list of `(steps, Hg, Wg)` (or `(steps, L)`) arrays.
    """
    cells = set()
    for maps in attention_maps:
        maps = np.asarray(maps)
        flat = maps.reshape(maps.shape[0], -1)
        cells.update(int(c) for c in flat[flat.sum(-1) > 0].argmax(-1))
    return len(cells)


def _batches(dataset, batch_size):
    batch = []
    for example in dataset.as_numpy_iterator():
        batch.append(example)
        if len(batch) == batch_size:
            yield batch
            batch = []
    if batch:
        yield batch
