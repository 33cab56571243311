"""Scoring an exported SavedModel as a client gets it: through its
`serving_default` signature, uint8 images in.

`score_saved_model` reproduces the held-out score of a shipped model
(`saved_models/<name>/heldout.json`) from the files alone, without the
Keras model: what the tests run on the models in `saved_models/`.
"""

import json
import os

import numpy as np
import tensorflow as tf

from keras_segattn.export.saved_model import resize_image_uint8
from keras_segattn.metrics import confusion_matrix_update, scores_from_confusion_matrix

HELDOUT_FILE = "heldout.json"


def _uint8(image, size=None):
    """A uint8 image as a client sends it, resized (and rounded) to `size`."""
    return tf.cast(image, tf.uint8) if size is None else resize_image_uint8(image, size)


def _semantic(signature, data, split, count, image_size):
    from keras_segattn.data import load_segmentation_dataset

    dataset, info = load_segmentation_dataset(data, split)
    if count is not None:
        dataset = dataset.take(count)
    confusion = np.zeros((info.num_classes, info.num_classes), np.int64)
    for example in dataset:
        image, mask = example["images"], tf.cast(example["segmentation_masks"], tf.int32)
        probabilities = signature(images=_uint8(image, image_size)[None])["probabilities"]
        probabilities = tf.image.resize(probabilities, tf.shape(image)[:2])  # at the labels' size
        update = confusion_matrix_update(
            mask[None], probabilities, info.num_classes, info.ignore_class
        )
        confusion += update.numpy()
    scores = scores_from_confusion_matrix(confusion)
    return {"mean_iou": scores["mean_iou"], "global_accuracy": scores["global_accuracy"]}


def _classification(signature, data, split, count, distortion):
    from keras_segattn.data import distorted_mnist, load_mnist

    images, labels = load_mnist(data, split)
    if count is not None:
        images, labels = images[:count], labels[:count]
    dataset = distorted_mnist(split, distortion, source=(images, labels)).batch(500)
    wrong = total = 0
    for x, y in dataset:
        pixels = tf.cast(tf.round(x * 255.0), tf.uint8)
        predicted = tf.argmax(signature(images=pixels)["probabilities"], axis=-1)
        wrong += int(tf.reduce_sum(tf.cast(predicted != tf.cast(y, tf.int64), tf.int32)))
        total += int(y.shape[0])
    return {"error_percent": 100.0 * wrong / total}


def _captioning(signature, data, split, count, image_size, num_images):
    from keras_segattn.data import load_caption_dataset
    from keras_segattn.evaluation import score_captions

    kwargs = {}
    if data == "shapes":  # generated: how many, at which size
        kwargs = {"num_images": num_images or count or 200, "image_size": image_size[0]}
    dataset = load_caption_dataset(data, split, **kwargs)
    if count is not None:
        dataset = dataset.take(count)
    references, candidates = {}, {}
    for i, example in enumerate(dataset):
        caption = signature(images=_uint8(example["images"])[None])["captions"][0]
        candidates[i] = caption.numpy().decode()
        references[i] = [c.decode() for c in example["captions"].numpy()]
    scores = score_captions(references, candidates, metrics=("BLEU",))
    return {"BLEU-1": scores["BLEU-1"], "BLEU-4": scores["BLEU-4"]}


def score_saved_model(
    path, task, data, split="test", count=None, image_size=None, distortion=None, num_images=None
):
    """Scores a SavedModel on held-out data through `serving_default`.

    Args:
        path: str. The version folder (`saved_models/<name>/<version>`).
        task: str. `"semantic"` (mean IoU and global accuracy at the labels'
            resolution, the images resized to `image_size` for the network
            as `segattn evaluate` does, but as uint8, which is what the
            signature takes), `"classification"` (% error on distorted
            MNIST, `distortion`), `"captioning"` (BLEU-1 and BLEU-4 of the
            greedy `captions` output).
        data: str. The dataset spec (an MNIST source for classifiers).
        split: str. Defaults to `"test"`.
        count: int or `None`. The first `count` examples; `None` all.
        image_size: `(height, width)` or `None`. Semantic: the network's
            size; captioning on the shapes: the images' size.
        distortion: str. Classification: `"R"`, `"RTS"`, `"P"` or `"E"`.
        num_images: int or `None`. Captioning on the shapes: how many
            held-out images to generate (`count` takes the first ones).

    Returns:
        A dict of scores.
    """
    signature = tf.saved_model.load(os.fspath(path)).signatures["serving_default"]
    size = None if image_size is None else tuple(int(v) for v in image_size)
    if task == "semantic":
        return _semantic(signature, data, split, count, size)
    if task == "classification":
        if distortion is None:
            raise ValueError("task='classification' needs distortion ('R', 'RTS', 'P' or 'E').")
        return _classification(signature, data, split, count, distortion)
    if task == "captioning":
        return _captioning(signature, data, split, count, size, num_images)
    raise ValueError(
        f"task must be 'semantic', 'classification' or 'captioning'; got task={task!r}."
    )


def read_heldout(folder):
    """The `heldout.json` of a shipped model's folder: how its held-out
    score was measured (`score_saved_model`'s arguments under `"score"`)
    and what it was (`"full"` and `"subset"`)."""
    with open(os.path.join(os.fspath(folder), HELDOUT_FILE), encoding="utf-8") as f:
        return json.load(f)


def score_shipped(folder, count=None, shared_data="../shared/data", version=1):
    """Scores a shipped model folder as its `heldout.json` says
    (`score_saved_model`'s arguments, `{shared}` in the data spec standing
    for `shared_data`), on its first `count` held-out examples (`None`: all).
    """
    arguments = dict(read_heldout(folder)["score"])
    arguments["data"] = arguments["data"].format(shared=os.fspath(shared_data))
    path = os.path.join(os.fspath(folder), str(version))
    return score_saved_model(path, count=count, **arguments)
