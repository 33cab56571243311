"""The paper's attention figure: a caption, one attention map per word."""

import numpy as np
import tensorflow as tf


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
