"""Draws the README's figures from trained runs.

python docs/figures.py camvid   # after the two CamVid `segattn train` runs
python docs/figures.py stn      # after `segattn stn-table`
python docs/figures.py demo     # after `make demo`
"""

import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
CAMVID = "camvid:../shared/data/camvid"


def camvid(frame=10):
    from PIL import Image, ImageDraw

    from keras_segattn.cli import load_model
    from keras_segattn.data import load_segmentation_dataset
    from keras_segattn.evaluation import predict_scores
    from keras_segattn.viz import CAMVID_PALETTE, colorize, panel_row, save_png

    data, info = load_segmentation_dataset(CAMVID, "test")
    example = next(iter(data.skip(frame).take(1)))
    image = example["images"].numpy()
    panels = [("test frame", image),
              ("ground truth", colorize(example["segmentation_masks"].numpy(), CAMVID_PALETTE,
                                        ignore_class=info.ignore_class))]  # fmt: skip
    for name in ("fcn8s", "deconvnet"):
        model = load_model(f"runs/camvid_{name}/best.keras")
        scores = predict_scores(model, image[None], image_size=(180, 240))
        panels.append((name, colorize(np.argmax(np.asarray(scores)[0], -1), CAMVID_PALETTE)))
    labelled = []
    for title, panel in panels:
        canvas = Image.fromarray(panel)
        ImageDraw.Draw(canvas).text((8, 8), title, fill=(255, 255, 255))
        labelled.append(np.asarray(canvas))
    top, bottom = panel_row(labelled[:2]), panel_row(labelled[2:])
    grid = np.concatenate([top, np.full((4, top.shape[1], 3), 255, np.uint8), bottom])
    return save_png(os.path.join(HERE, "camvid_test.png"), grid)


def stn():
    from keras_segattn.models.spatial_transformer.reproduce import transformer_figure

    return [
        transformer_figure(
            f"runs/stn/st_cnn_{t}_{d}.keras", d, os.path.join(HERE, f"stn_{t}_{d}.png")
        )
        for t, d in (("affine", "RTS"), ("tps", "R"))
        if os.path.exists(f"runs/stn/st_cnn_{t}_{d}.keras")
    ]


def demo():
    from PIL import Image

    from keras_segattn.viz import save_png

    rows = [np.asarray(Image.open(f"runs/demo/overlays/test_{i}.png")) for i in range(4)]
    gap = np.full((4, rows[0].shape[1], 3), 255, np.uint8)
    grid = np.concatenate([r for row in rows for r in (row, gap)][:-1])
    return save_png(
        os.path.join(HERE, "demo_overlays.png"), np.kron(grid, np.ones((2, 2, 1), np.uint8))
    )


if __name__ == "__main__":
    for name in sys.argv[1:] or ["camvid", "stn", "demo"]:
        print("wrote", globals()[name]())
