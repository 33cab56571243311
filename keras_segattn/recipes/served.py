"""Scoring an exported SavedModel as a client gets it: through its
`serving_default` signature, uint8 images in.

`score_saved_model` reproduces the held-out score of a shipped model
(`saved_models/<name>/heldout.json`) from the files alone, without the
Keras model: what the tests run on the models in `saved_models/`.
"""

import json
import os

import tensorflow as tf

from keras_segattn.tasks import get_task

HELDOUT_FILE = "heldout.json"


def score_saved_model(
    path, task, data, split="test", count=None, image_size=None, distortion=None, num_images=None
):
    """Scores a SavedModel on held-out data through `serving_default`.

    Args:
        path: str. The version folder (`saved_models/<name>/<version>`).
        task: str or `Task`. How to score it (`Task.score_signature`):
            `"semantic"` (mean IoU and global accuracy at the labels'
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
    return get_task(task).score_signature(
        signature,
        data,
        split,
        count,
        image_size=size,
        distortion=distortion,
        num_images=num_images,
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
