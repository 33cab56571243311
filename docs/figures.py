"""Draws the README's figures from trained runs.

python docs/figures.py camvid   # after the CamVid `segattn train` runs (README)
python docs/figures.py camvid_curve  # validation mean IoU by epoch of the CamVid runs
python docs/figures.py stn      # after `segattn stn-table`
python docs/figures.py stn_curve  # after the SGD `segattn stn-table` cell (README)
python docs/figures.py demo     # after `make demo`
python docs/figures.py captions # after the `segattn caption-train` runs (README)
python docs/figures.py instances  # after the COCO `segattn instance-train` run (README)
"""

import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
CAMVID = "camvid:../shared/data/camvid"


CAMVID_RUNS = [
    ("FCN-8s", "camvid_fcn8s", None),
    ("DeconvNet", "camvid_deconvnet", None),
    ("multiscale", "camvid_multiscale", None),
    ("multiscale + superpixels", "camvid_multiscale", "superpixels"),
    ("multiscale + CRF", "camvid_multiscale", "crf"),
    ("rCNN, 1 instance", "camvid_rcnn1", None),
    ("rCNN, 2 instances", "camvid_rcnn2", None),
    ("rCNN, 3 instances", "camvid_rcnn3", None),
]


def camvid(frame=10, columns=5):
    """One CamVid test frame, its ground truth and every trained run's labels.

    Each run's panel is also kept in docs/camvid_panels/
    (`<run>_<postprocess or raw>_<frame>.png`): a run whose folder is not on
    this machine (trained in another sitting) keeps the panel it had, so
    rows retrained one at a time redraw only their own panels. A run folder
    that is there is drawn from its `best.keras` as it is now (if the run
    is still training, that is its best epoch so far).
    """
    from PIL import Image, ImageDraw

    from keras_segattn.checkpoints import load_model
    from keras_segattn.data import load_segmentation_dataset
    from keras_segattn.evaluation import output_probabilities, predict_scores
    from keras_segattn.postprocess import refine_batch
    from keras_segattn.viz import CAMVID_PALETTE, colorize, panel_row, save_png

    data, info = load_segmentation_dataset(CAMVID, "test")
    example = next(iter(data.skip(frame).take(1)))
    image = example["images"].numpy()
    truth = example["segmentation_masks"].numpy()

    def labelled(title, panel):
        canvas = Image.fromarray(panel).resize((panel.shape[1] // 2, panel.shape[0] // 2))
        ImageDraw.Draw(canvas).text((6, 6), title, fill=(255, 255, 255))
        return np.asarray(canvas)

    panels = [labelled("test frame", image),
              labelled("ground truth", colorize(truth, CAMVID_PALETTE,
                                                ignore_class=info.ignore_class))]  # fmt: skip
    models = {}
    for title, run, postprocess in CAMVID_RUNS:
        path = f"runs/{run}/best.keras"
        kept = os.path.join(HERE, "camvid_panels", f"{run}_{postprocess or 'raw'}_{frame}.png")
        if os.path.exists(path):
            model = models.setdefault(run, load_model(path))
            scores = predict_scores(model, image[None], image_size=(180, 240))
            probabilities = np.asarray(output_probabilities(model, scores))
            labels = refine_batch(image[None], probabilities, method=postprocess)[0]
            panels.append(labelled(title, colorize(labels, CAMVID_PALETTE)))
            save_png(kept, panels[-1])
        elif os.path.exists(kept):
            panels.append(np.asarray(Image.open(kept).convert("RGB")))
    blank = np.full_like(panels[0], 255)
    panels += [blank] * (-len(panels) % columns)
    rows = [panel_row(panels[k : k + columns]) for k in range(0, len(panels), columns)]
    gap = np.full((4, rows[0].shape[1], 3), 255, np.uint8)
    grid = np.concatenate([r for row in rows for r in (row, gap)][:-1])
    return save_png(os.path.join(HERE, "camvid_test.png"), grid)


def stn(folders=("runs/stn_sgd90", "runs/stn")):
    """The transformer figures, each from the first of `folders` that holds
    its cell (the longest schedule first); figures without a cell are kept."""
    from keras_segattn.recipes.stn import transformer_figure

    paths = []
    for t, d in (("affine", "RTS"), ("tps", "R"), ("projective", "P")):
        models = [f"{folder}/st_cnn_{t}_{d}/last.keras" for folder in folders]
        models = [m for m in models if os.path.exists(m)]
        if models:
            paths.append(transformer_figure(models[0], d, os.path.join(HERE, f"stn_{t}_{d}.png")))
    return paths


def _curves(path, cells, column, scale, axis_kwargs, lines=()):
    """One line per run folder of `cells` ((folder, label) pairs; folders
    without a history.csv are left out): `scale(value)` of `column` in its
    history.csv by epoch, with horizontal `lines` ((y, label, style))."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from keras_segattn.recipes.runs import RunFolder

    figure, axis = plt.subplots(figsize=(6, 3.2))
    for folder, label in cells:
        if not os.path.exists(os.path.join(folder, "history.csv")):
            continue
        values = RunFolder(folder).history_column(column)
        axis.plot(range(1, len(values) + 1), [scale(v) for v in values], label=label)
    for y, label, style in lines:
        axis.axhline(y, color="grey", linestyle=style, label=label)
    axis.set(xlabel="epoch", **axis_kwargs)
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def stn_curve(cells=(("runs/stn_sgd90/st_cnn_affine_RTS", "affine, 90 ep. SGD, cosine"),
                     ("runs/stn_sgd90/st_cnn_tps_RTS", "TPS, 90 ep. SGD, cosine"),
                     ("runs/stn_sgd90/cnn_RTS", "CNN baseline, 90 ep. SGD, cosine"))):  # fmt: skip
    """Test error after every epoch of Table 1 cells on RTS (history.csv;
    cells whose folder is absent are left out), with the paper's."""
    from keras_segattn.recipes.stn import PAPER_ERRORS

    paper, baseline = PAPER_ERRORS["st_cnn:affine"][1], PAPER_ERRORS["cnn"][1]
    return _curves(
        os.path.join(HERE, "stn_curve.png"), cells, "val_accuracy", lambda a: 100 * (1 - a),
        dict(ylabel="RTS test error (%)", ylim=(0, 5),
             title="ST-CNN and CNN on RTS-distorted MNIST"),
        [(paper, "paper, ST-CNN", "--"), (paper + 0.5, "paper + 0.5", ":"),
         (baseline, "paper, CNN", "-.")],
    )  # fmt: skip


def camvid_curve(cells=(("runs/camvid_deconvnet", "DeconvNet (width 0.25)"),
                        ("runs/camvid_rcnn1", "recurrent CNN, 1 instance"),
                        ("runs/camvid_rcnn2", "recurrent CNN, 2 instances"),
                        ("runs/camvid_rcnn3", "recurrent CNN, 3 instances"),
                        ("runs/camvid_multiscale", "multiscale ConvNet (width 1.0)"))):  # fmt: skip
    """Validation mean IoU after every epoch of the CamVid runs (history.csv;
    runs whose folder is absent are left out)."""
    return _curves(
        os.path.join(HERE, "camvid_curve.png"),
        cells,
        "val_mean_iou",
        lambda v: 100 * v,
        dict(ylabel="val mean IoU (%)", title="CamVid, 101 validation frames"),
    )


def demo():
    from PIL import Image

    from keras_segattn.viz import save_png

    rows = [np.asarray(Image.open(f"runs/demo/overlays/test_{i}.png")) for i in range(4)]
    gap = np.full((4, rows[0].shape[1], 3), 255, np.uint8)
    grid = np.concatenate([r for row in rows for r in (row, gap)][:-1])
    return save_png(
        os.path.join(HERE, "demo_overlays.png"), np.kron(grid, np.ones((2, 2, 1), np.uint8))
    )


def captions(index=3):
    """Show-Attend-Tell figures: a held-out image, one panel per word."""
    from keras_segattn.checkpoints import load_model
    from keras_segattn.data import load_caption_dataset
    from keras_segattn.viz import attention_figure

    written = []
    for run, data, kwargs in (
        ("caption_shapes_soft", "shapes", {"num_images": 8, "image_size": (64, 64)}),
        ("caption_shapes_hard", "shapes", {"num_images": 8, "image_size": (64, 64)}),
    ):
        path = f"runs/{run}/best.keras"
        if not os.path.exists(path):
            continue
        model = load_model(path)
        split = "test" if data == "shapes" else "val"
        dataset, _ = load_caption_dataset(data, split, **kwargs)
        example = next(iter(dataset.skip(index).take(1)))
        image = example["images"].numpy()
        if data == "shapes":  # bigger panels for a 64x64 image
            image = np.kron(image, np.ones((4, 4, 1), np.uint8))
        reference = example["captions"].numpy()[0].decode()
        out = os.path.join(HERE, f"{run}.png")
        written.append(attention_figure(model, image, out, beam_width=3, title=reference))
    return written


def instances(
    run="runs/mnc_coco150",
    sds_run="runs/sds_coco",
    hc_run="runs/hc_coco",
    count=4,
    size=256,
    min_score=0.3,
):
    """Ground truth, then MNC's, SDS's and SDS + hypercolumns' detections
    drawn on COCO-slice val images (rows whose run is missing are left out)."""
    from keras_segattn.checkpoints import load_model
    from keras_segattn.data import load_instance_dataset, resize_instances
    from keras_segattn.models.instance.hypercolumns import resegment_detections
    from keras_segattn.models.instance.sds import sds_detect
    from keras_segattn.viz import draw_instances, panel_row, save_png

    def optional(path):
        path = os.path.join(path, "last.keras")
        return load_model(path) if os.path.exists(path) else None

    mnc = load_model(os.path.join(run, "last.keras"))
    sds, hc = optional(sds_run), optional(hc_run)
    data, info = load_instance_dataset("coco:../shared/data/coco_mini", "val")
    # The models were trained on images resized to size x size.
    data = resize_instances(data, size)
    rows = [[], [], [], []]
    for example in data.take(count).as_numpy_iterator():
        image = example["images"]
        real = (example["bounding_boxes"]["labels"] > 0) & ~example["is_crowd"]
        rows[0].append(
            draw_instances(image, example["bounding_boxes"]["boxes"][real],
                           example["instance_masks"][real],
                           example["bounding_boxes"]["labels"][real], class_names=info.class_names)
        )  # fmt: skip
        out = {k: np.asarray(v)[0] for k, v in mnc.detect(image[None]).items()}
        n = int(out["num_detections"])
        rows[1].append(
            draw_instances(image, out["boxes"][:n], out["masks"][:n], out["classes"][:n],
                           out["scores"][:n], info.class_names, min_score=min_score)
        )  # fmt: skip
        if sds is not None:
            found = sds_detect(sds, image)
            rows[2].append(
                draw_instances(image, found["boxes"], found["masks"], found["labels"],
                               found["scores"], info.class_names, min_score=min_score)
            )  # fmt: skip
            if hc is not None:
                masks = resegment_detections(hc, image, found)
                rows[3].append(
                    draw_instances(image, masks["boxes"], masks["masks"], masks["labels"],
                                   masks["scores"], info.class_names, min_score=min_score)
                )  # fmt: skip
    grid = [panel_row(row) for row in rows if row]
    spacer = np.full((4, grid[0].shape[1], 3), 255, np.uint8)
    picture = np.concatenate([p for row in grid for p in (row, spacer)][:-1], axis=0)
    return save_png(os.path.join(HERE, "instances_coco.png"), picture)


if __name__ == "__main__":
    for name in sys.argv[1:] or ["camvid", "stn", "demo", "captions"]:
        print("wrote", globals()[name]())
