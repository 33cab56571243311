import numpy as np

from keras_segattn.viz.overlay import save_png


def _to_uint8(images):
    images = np.asarray(images, np.float32)[..., 0]
    scale = 255.0 if images.max() <= 1.0 + 1e-6 else 1.0
    return np.clip(images * scale, 0, 255).astype(np.uint8)


def save_transformer_grid(path, inputs, transformed, scale=3):
    """Writes a PNG like the paper's Figure 1: each distorted input (top
    row) above what the spatial transformer made of it (bottom row).

    Args:
        path: str. Output PNG.
        inputs: `(n, h, w, 1)` array, the distorted digits (in [0, 1] or
            [0, 255]).
        transformed: `(n, h', w', 1)` array, the transformer's outputs.
        scale: int. Nearest-neighbour magnification. Defaults to `3`.

    Returns:
        `path`.
    """
    top, bottom = _to_uint8(inputs), _to_uint8(transformed)
    height = max(top.shape[1], bottom.shape[1])
    width = max(top.shape[2], bottom.shape[2])

    def row(images):
        cells = []
        for image in images:
            cell = np.full((height, width), 255, np.uint8)
            y, x = (height - image.shape[0]) // 2, (width - image.shape[1]) // 2
            cell[y : y + image.shape[0], x : x + image.shape[1]] = 255 - image
            cells += [cell, np.full((height, 2), 200, np.uint8)]
        return np.concatenate(cells[:-1], axis=1)

    grid = np.concatenate([row(top), np.full((2, row(top).shape[1]), 200, np.uint8), row(bottom)])
    return save_png(path, np.kron(grid, np.ones((scale, scale), np.uint8)))
