"""Dense predictors beyond one pass over the whole image: DeconvNet's
proposal-wise inference, and ensembles.

A predictor maps a batch of images `(B, H, W, 3)` (0-255) to class
probabilities at their size, `(B, H, W, num_classes)`:

- `WholeImage(model)`: the network on the image (resized to `image_size`
  and back, if given), as `segattn evaluate` always ran it;
- `ProposalWise(model)`: DeconvNet's inference on object proposals (Noh,
  Hong and Han, ICCV 2015, section 4.3): each proposal box is cropped and
  resized to the network's input, its predicted probabilities pasted back
  into the image's coordinates, and the proposals merged pixel by pixel by
  their sum (`merge="sum"`: the average of the proposals covering the
  pixel) or their maximum (`"max"`, renormalised over the classes), the
  whole image being one of the proposals;
- `EnsembleSegmenter(members)`: the average of several predictors'
  probabilities (EDeconvNet: FCN-8s on the whole image with the
  proposal-wise DeconvNet).

The split for serving: proposals are found on the host
(`postprocess.selective_search`); `proposal_probabilities(model, image,
boxes)`, the network part, is a TensorFlow function of the image and its
boxes.
"""

import numpy as np
import tensorflow as tf

from keras_segattn.core.kernels import in_tensorflow
from keras_segattn.core.validation import check_int
from keras_segattn.models.common import ends_in_softmax

MERGES = ("sum", "max")


def predict_scores(model, images, image_size=None):
    """Per-pixel scores at the size of `images`.

    With `image_size`, the images are resized to it for the network (the
    size it was trained at) and the scores resized back bilinearly.
    """
    height, width = tf.shape(images)[1], tf.shape(images)[2]
    inputs = images
    if image_size is not None:
        inputs = tf.image.resize(tf.cast(images, tf.float32), image_size)
    scores = model(inputs, training=False)
    if image_size is not None:
        scores = tf.image.resize(scores, tf.stack([height, width]), method="bilinear")
    return scores


def output_probabilities(model, scores):
    """Softmax of the scores, unless the model already ends with one."""
    return scores if ends_in_softmax(model) else tf.nn.softmax(scores, axis=-1)


def _input_size(model, input_size):
    fixed = tuple(model.input.shape[1:3])
    if input_size is None:
        if None in fixed:
            raise ValueError(
                "proposal-wise inference resizes each proposal to the network's input size; "
                f"{model.name} takes any size, so pass input_size=(height, width) (segattn "
                "evaluate: --image-size, or the run's image size)."
            )
        return fixed
    return tuple(check_int(v, "input_size") for v in np.broadcast_to(input_size, (2,)))


def crop_proposals(image, boxes, size):
    """The boxes' crops of one image, each resized to `size`.

    Args:
        image: `(H, W, 3)`.
        boxes: int `(N, 4)` `(x1, y1, x2, y2)`, inclusive pixel corners.
        size: `(height, width)` of the crops.

    Returns:
        float32 `(N, height, width, 3)`: crop `n`'s sample `(i, j)` is the
        image bilinearly at `(y1 + i (y2 - y1) / (height - 1), x1 + j (x2 -
        x1) / (width - 1))` (corners on corners).
    """
    image = tf.cast(image, tf.float32)
    last = tf.cast(tf.shape(image)[:2] - 1, tf.float32)
    boxes = tf.cast(boxes, tf.float32)
    normalised = tf.stack(
        [
            boxes[:, 1] / last[0],
            boxes[:, 0] / last[1],
            boxes[:, 3] / last[0],
            boxes[:, 2] / last[1],
        ],
        axis=1,
    )
    indices = tf.zeros([tf.shape(boxes)[0]], tf.int32)
    return tf.image.crop_and_resize(image[None], normalised, indices, size)


def paste_proposals(predictions, boxes, image_size):
    """Each box's prediction pasted back into the image, zero outside it.

    Args:
        predictions: `(N, h, w, C)`, sampled as `crop_proposals` samples.
        boxes: int `(N, 4)` `(x1, y1, x2, y2)`, inclusive pixel corners,
            each at least 2 pixels a side.
        image_size: `(H, W)`.

    Returns:
        float32 `(N, H, W, C)`: pixel `(r, c)` inside box `n` is
        `predictions[n]` bilinearly at the crop position of `(r, c)`.
    """
    predictions = tf.cast(predictions, tf.float32)
    height, width = image_size[0], image_size[1]
    crop = tf.cast(tf.shape(predictions)[1:3], tf.float32)
    boxes_f = tf.cast(boxes, tf.float32)
    x1, y1, x2, y2 = tf.unstack(boxes_f, axis=1)
    # Positions in the crop padded by one border copy (so that rounding at
    # a box's last row or column still reads it), normalised as
    # crop_and_resize wants: by the padded crop's last index.
    rows = (crop[0] - 1) / (y2 - y1)
    cols = (crop[1] - 1) / (x2 - x1)
    first_y = (1.0 - y1 * rows) / (crop[0] + 1)
    last_y = (1.0 + (tf.cast(height, tf.float32) - 1 - y1) * rows) / (crop[0] + 1)
    first_x = (1.0 - x1 * cols) / (crop[1] + 1)
    last_x = (1.0 + (tf.cast(width, tf.float32) - 1 - x1) * cols) / (crop[1] + 1)
    padded = tf.pad(predictions, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="SYMMETRIC")
    count = tf.shape(boxes)[0]
    pasted = tf.image.crop_and_resize(
        padded,
        tf.stack([first_y, first_x, last_y, last_x], 1),
        tf.range(count),
        tf.stack([height, width]),
    )
    boxes = tf.cast(boxes, tf.int32)
    ys = tf.range(height)[None, :]
    xs = tf.range(width)[None, :]
    inside_y = (ys >= boxes[:, 1:2]) & (ys <= boxes[:, 3:4])
    inside_x = (xs >= boxes[:, 0:1]) & (xs <= boxes[:, 2:3])
    inside = tf.cast(inside_y[:, :, None] & inside_x[:, None, :], tf.float32)
    return pasted * inside[..., None]


def proposal_probabilities(model, image, boxes, merge="sum", input_size=None):
    """DeconvNet's proposal-wise class probabilities of one image, from
    given proposals (`ProposalWise.probabilities`, traced for this call).

    Args:
        model: a semantic `keras.Model`.
        image: `(H, W, 3)`, 0-255.
        boxes: int `(N, 4)` `(x1, y1, x2, y2)` proposals, inclusive pixel
            corners, each at least 2 pixels a side (the whole image is not
            added here).
        merge: `"sum"` or `"max"`.
        input_size: `(height, width)` the crops are resized to; defaults to
            the model's fixed input size.

    Returns:
        float32 `(H, W, C)` probabilities; a pixel no proposal covers has
        all zeros.
    """
    return ProposalWise(model, 0, merge, input_size).probabilities(image, boxes)


class WholeImage:
    """The network on the whole image (resized to `image_size` and back)."""

    def __init__(self, model, image_size=None):
        self.model, self.image_size = model, image_size
        self._call = tf.function(
            in_tensorflow(
                lambda images: output_probabilities(
                    model, predict_scores(model, images, image_size)
                )
            ),
            reduce_retracing=True,
        )

    def __call__(self, images):
        return self._call(images).numpy()


class ProposalWise:
    """DeconvNet's proposal-wise inference (see the module docstring).

    Args:
        model: a semantic `keras.Model`.
        max_proposals: int. Proposals of each image (selective search's
            best), the whole image added.
        merge: `"sum"` or `"max"`.
        input_size: the crops' size; defaults to the model's input size.
        proposer: function from a uint8 `(H, W, 3)` image and
            `max_proposals` to int `(N, 4)` boxes; defaults to
            `postprocess.selective_search`.
    """

    def __init__(self, model, max_proposals=50, merge="sum", input_size=None, proposer=None):
        if merge not in MERGES:
            raise ValueError(f"merge must be one of {MERGES}; got merge={merge!r}.")
        self.model, self.merge = model, merge
        self.max_proposals = check_int(max_proposals, "max_proposals", minimum=0)
        self.input_size = _input_size(model, input_size)
        if proposer is None:
            from keras_segattn.postprocess.proposals import selective_search

            proposer = selective_search
        self.proposer = proposer
        self._network_part = self._step()

    def _step(self):
        """The network part for a chunk of proposals: the sum and the
        maximum of their pasted probabilities, and how many cover each
        pixel (one pass of the network serves both merges)."""
        model, size = self.model, self.input_size

        @tf.function(reduce_retracing=True)
        @in_tensorflow
        def step(image, boxes, image_size):
            crops = crop_proposals(image, boxes, size)
            probabilities = output_probabilities(model, model(crops, training=False))
            pasted = paste_proposals(probabilities, boxes, image_size)
            inside = paste_proposals(tf.ones_like(probabilities[..., :1]), boxes, image_size)
            covered = tf.reduce_sum(tf.sign(inside), axis=0)
            return tf.reduce_sum(pasted, axis=0), tf.reduce_max(pasted, axis=0), covered

        return step

    def probabilities(self, image, boxes, batch_size=16):
        """The merged probabilities `(H, W, C)` of one image's proposals
        `boxes` (int `(N, 4)`, at least 2 pixels a side), `batch_size`
        proposals through the network at a time; a pixel no proposal
        covers has all zeros."""
        return self.probabilities_by_merge(image, boxes, batch_size)[self.merge]

    def probabilities_by_merge(self, image, boxes, batch_size=16):
        """`probabilities` under every merge, from one pass of the network:
        a dict from `"sum"` and `"max"` to `(H, W, C)` probabilities."""
        boxes = np.asarray(boxes, np.int64).reshape(-1, 4)
        narrow = (boxes[:, 2] - boxes[:, 0] < 1) | (boxes[:, 3] - boxes[:, 1] < 1)
        if narrow.any():
            raise ValueError(
                f"boxes must be at least 2 pixels a side; box {int(np.argmax(narrow))} is "
                f"{boxes[np.argmax(narrow)].tolist()}."
            )
        image = tf.convert_to_tensor(image)
        image_size = (int(image.shape[0]), int(image.shape[1]))
        if not len(boxes):
            empty = np.zeros((*image_size, self.model.output.shape[-1]), np.float32)
            return {merge: empty for merge in MERGES}
        total, largest, covered = None, None, None
        for start in range(0, len(boxes), check_int(batch_size, "batch_size")):
            chunk = tf.constant(boxes[start : start + batch_size])
            parts = self._network_part(image, chunk, tf.constant(image_size))
            if total is None:
                total, largest, covered = parts
            else:
                total, largest = total + parts[0], tf.maximum(largest, parts[1])
                covered = covered + parts[2]
        return {
            "sum": (total / tf.maximum(covered, 1e-12)).numpy(),
            "max": (largest / tf.maximum(tf.reduce_sum(largest, -1, keepdims=True), 1e-12)).numpy(),
        }

    def boxes(self, image):
        """The image's proposals, the whole image first."""
        height, width = image.shape[:2]
        whole = np.array([[0, 0, width - 1, height - 1]], np.int64)
        if not self.max_proposals:
            return whole
        found = np.asarray(self.proposer(image, self.max_proposals), np.int64).reshape(-1, 4)
        found = found[(found != whole).any(axis=1)]  # the whole image once
        return np.concatenate([whole, found])

    def __call__(self, images):
        images = np.asarray(images)
        return np.stack(
            [self.probabilities(image, self.boxes(image.astype(np.uint8))) for image in images]
        )


class EnsembleSegmenter:
    """The average of several predictors' class probabilities (each a
    `WholeImage`, a `ProposalWise` or a model, run on the whole image)."""

    def __init__(self, members):
        members = list(members)
        if not members:
            raise ValueError("an ensemble needs at least one member.")
        self.members = [
            m if callable(m) and not hasattr(m, "layers") else WholeImage(m) for m in members
        ]

    def __call__(self, images):
        probabilities = [np.asarray(member(images)) for member in self.members]
        classes = {p.shape[-1] for p in probabilities}
        if len(classes) != 1:
            raise ValueError(f"the ensemble's members predict different classes: {classes}.")
        return np.mean(probabilities, axis=0)
