"""Training, evaluating and drawing a Show, Attend and Tell captioner.

`train_captioner` is what `segattn caption-train` runs: vocabulary from the
training captions, `model.fit` with teacher forcing on `tf.data`, the best
checkpoint by validation loss, then `evaluate_captioner` on held-out images
(greedy or beam search, BLEU / METEOR / CIDEr, and on the built-in shapes
the attention-localisation score). `attention_figure` draws the paper's
figure: an image, its caption, one attention map per word.
"""

import json
import os
import time

import keras
import numpy as np
import tensorflow as tf

from keras_segattn.caption_metrics import attention_localization, score_captions
from keras_segattn.data.captions import (
    CaptionVocabulary,
    caption_pipeline,
    load_caption_dataset,
    shapes_caption_objects,
)
from keras_segattn.data.shapes import CLASS_NAMES
from keras_segattn.models import create_model
from keras_segattn.models.captioning import CaptionLoss

# A light captioner for CPU training on the built-in shapes (64x64 images,
# an 8x8 grid of 128-d annotations).
SHAPES_MODEL = {
    "encoder_filters": (32, 64, 128, 128),
    "embedding_dim": 64,
    "units": 256,
    "attention_units": 128,
    "dropout": 0.2,
}


def _spec_kwargs(data, split, num_images, image_size):
    if data != "shapes":
        return {}
    count = num_images if split == "train" else max(50, num_images // 10)
    return {"num_images": count, "image_size": image_size}


def _captions_of(dataset):
    captions = []
    for example in dataset:
        captions.extend(c.decode() for c in example["captions"].numpy())
    return captions


def train_captioner(
    data="shapes",
    attention="soft",
    encoder="light",
    image_size=64,
    epochs=20,
    batch_size=32,
    max_length=16,
    num_images=2000,
    learning_rate=1e-3,
    output="runs/caption",
    val_split="val",
    eval_split="test",
    beam_width=3,
    seed=0,
    model_kwargs=None,
    verbose=2,
):
    """Trains a captioner, keeps the best checkpoint, evaluates it.

    Args:
        data: str. A caption dataset spec (`"shapes"`, `"coco:<root>"`,
            `"flickr8k:<root>"`, `"tfds:coco_captions"`).
        attention: str. `"soft"` or `"hard"`.
        encoder: str. `"light"` or `"vgg16"`.
        image_size: int. Side of the square images the model sees.
        epochs, batch_size, learning_rate: the `fit` schedule (Adam).
        max_length: int. Tokens per caption, `<end>` included.
        num_images: int. Training images of `"shapes"` (a tenth as many,
            at least 50, for validation and test).
        output: str. Folder for checkpoints, logs, `metrics.json`.
        val_split, eval_split: str. Splits for checkpoint selection and
            the final scores.
        beam_width: int. Beam search width of the evaluation (1: greedy).
        seed: int. Seed of weights, shuffling and hard attention.
        model_kwargs: dict. More `show_attend_tell` arguments; for shapes
            the light `SHAPES_MODEL` is the default.
        verbose: int. `fit` verbosity.

    Returns:
        The metrics dict written to `output/metrics.json`.
    """
    keras.utils.set_random_seed(seed)
    os.makedirs(output, exist_ok=True)
    size = (image_size, image_size)
    train = load_caption_dataset(data, "train", **_spec_kwargs(data, "train", num_images, size))
    val = load_caption_dataset(data, val_split, **_spec_kwargs(data, val_split, num_images, size))
    train, val = train.cache(), val.cache()
    vocabulary = CaptionVocabulary.build(_captions_of(train))
    vocabulary.save(os.path.join(output, "vocabulary.json"))
    kwargs = dict(SHAPES_MODEL if data == "shapes" else {})
    kwargs.update(model_kwargs or {})
    model = create_model(
        "show_attend_tell", vocabulary=vocabulary.words, encoder=encoder, image_size=size,
        attention=attention, max_length=max_length, **kwargs,
    )  # fmt: skip
    model.compile(keras.optimizers.Adam(learning_rate), loss=CaptionLoss())
    pipeline = dict(vocabulary=vocabulary, batch_size=batch_size, image_size=size,
                    max_length=max_length + 1)  # fmt: skip
    train_batches = caption_pipeline(train, shuffle=1024, seed=seed, **pipeline)
    val_batches = caption_pipeline(val, one_caption_per_image="all", **pipeline)
    best = os.path.join(output, "best.keras")
    callbacks = [
        keras.callbacks.ModelCheckpoint(best, monitor="val_loss", save_best_only=True),
        keras.callbacks.CSVLogger(os.path.join(output, "history.csv"), append=True),
        keras.callbacks.BackupAndRestore(os.path.join(output, "backup")),
    ]
    start = time.time()
    model.fit(
        train_batches, validation_data=val_batches, epochs=epochs, callbacks=callbacks,
        verbose=verbose,
    )  # fmt: skip
    train_seconds = time.time() - start
    model.save(os.path.join(output, "last.keras"))

    best_model = keras.saving.load_model(best) if os.path.exists(best) else model
    test = load_caption_dataset(
        data, eval_split, **_spec_kwargs(data, eval_split, num_images, size)
    )
    metrics = evaluate_captioner(best_model, test, beam_width=beam_width, shapes=data == "shapes")
    metrics.update(
        data=data, attention=attention, encoder=encoder, image_size=image_size, epochs=epochs,
        train_images=num_images if data == "shapes" else None, beam_width=beam_width,
        train_seconds=round(train_seconds, 1), vocabulary_size=len(vocabulary.words),
    )  # fmt: skip
    with open(os.path.join(output, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=2)
    return metrics


def evaluate_captioner(model, dataset, beam_width=3, shapes=False, batch_size=32, examples=5):
    """Captions every image of `dataset` and scores the captions.

    Args:
        model: a `ShowAttendTell`.
        dataset: unbatched caption dataset (`images`, `captions`,
            `image_id`; plus the shapes annotations when `shapes`).
        beam_width: int. 1 decodes greedily, more runs beam search.
        shapes: bool. Also score attention localisation (the built-in
            shapes know where each named object is).
        batch_size: int. Images per `generate` call.
        examples: int. How many (reference, generated) pairs to keep.

    Returns:
        A dict: `BLEU-1`..`BLEU-4`, `METEOR`, `CIDEr`, `num_images`,
        `exact_match` (share of captions equal to a reference), with
        `shapes` the localisation `score`, `uniform_score`, `count` and
        `unmatched`, and a few `examples`.
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
            if shapes:
                objects = shapes_caption_objects(example)
                attention_maps.append(maps[: max(len(row_words), 1)])
                words.append(row_words)
                masks.append(objects["masks"])
                names.append(objects["names"])
                colors.append(objects["colors"])
    scores = score_captions(references, candidates)
    report = {k: float(v) for k, v in scores.items()}
    report.update(num_images=len(candidates), exact_match=float(np.mean(exact)))
    if shapes:
        localization = attention_localization(
            attention_maps, words, masks, names, colors, nouns=CLASS_NAMES[1:]
        )
        report.update(
            localization=float(localization["score"]),
            localization_uniform=float(localization["uniform_score"]),
            localization_pairs=int(localization["count"]),
            hallucinated_nouns=int(localization["unmatched"]),
        )
    report["examples"] = [
        {"image_id": i, "generated": candidates[i], "references": references[i]}
        for i in list(candidates)[:examples]
    ]
    return report


def _batches(dataset, batch_size):
    batch = []
    for example in dataset.as_numpy_iterator():
        batch.append(example)
        if len(batch) == batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


def attention_figure(model, image, path, beam_width=1, title=None):
    """The paper's figure: the image, then one panel per generated word
    with the attention it was generated with over the image (a smooth map
    for soft attention; for hard attention the chosen location).

    Args:
        model: a `ShowAttendTell`.
        image: uint8 `(h, w, 3)`.
        path: str. Where the PNG goes.
        beam_width: int. 1 for greedy decoding. Defaults to `1`.
        title: str or `None`. Text above the image panel.

    Returns:
        `path`.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    image = np.asarray(image)
    method = "greedy" if beam_width == 1 else "beam"
    generated = model.generate(image[None], method=method, beam_width=beam_width)
    words = generated["words"][0] + ["<end>"]
    maps = generated["attention"][0][: len(words)]
    hard = model.attention_mode == "hard"
    panels = len(words) + 1
    figure, axes = plt.subplots(1, panels, figsize=(1.6 * panels, 1.9))
    axes[0].imshow(image)
    axes[0].set_title(title or "image", fontsize=8)
    height, width = image.shape[:2]
    for axis, word, weights in zip(axes[1:], words, maps):
        if hard:
            chosen = np.zeros_like(weights)
            chosen[np.unravel_index(np.argmax(weights), weights.shape)] = 1.0
            weights = chosen
        upsampled = tf.image.resize(
            weights[..., None], (height, width), method="nearest" if hard else "bilinear"
        ).numpy()[..., 0]
        axis.imshow(image)
        axis.imshow(upsampled / max(upsampled.max(), 1e-8), cmap="gray", alpha=0.6)
        axis.set_title(word, fontsize=9)
    for axis in axes:
        axis.axis("off")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
