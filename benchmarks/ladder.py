"""DeconvNet's ladder on CamVid: whole image, proposal-wise, the ensemble
with FCN-8s (EDeconvNet), and the dense CRF after it (Noh et al., Table 1).

Every rung is what `segattn evaluate` scores with the matching flags
(`--proposals N --merge sum|max --ensemble FCN8S --postprocess crf`), but
this script runs them side by side in one pass over the frames: each
frame's proposals are found once and go through the network once for both
merges, so the eight rows cost about what one proposal-wise evaluation
does. It writes `benchmarks/ladder.md` (`--quick`: a few frames, printed
only).

    python benchmarks/ladder.py --deconvnet runs/camvid_deconvnet/best.keras \\
        --fcn8s runs/camvid_fcn8s/best.keras --data camvid:../shared/data/camvid
"""

import argparse
import time

import numpy as np
import tensorflow as tf
from timing import machine, report

from keras_segattn.checkpoints import load_model
from keras_segattn.data import load_segmentation_dataset
from keras_segattn.evaluation.predictors import ProposalWise, WholeImage
from keras_segattn.metrics import confusion_matrix_update, scores_from_confusion_matrix
from keras_segattn.postprocess import refine_batch

MERGES = ("sum", "max")


def rungs(whole_deconvnet, whole_fcn8s, proposal_wise):
    """The probabilities of each rung without the CRF, by row name."""
    rows = {"FCN-8s": whole_fcn8s, "DeconvNet, whole image": whole_deconvnet}
    for merge in MERGES:
        rows[f"DeconvNet, proposals ({merge})"] = proposal_wise[merge]
        rows[f"EDeconvNet ({merge})"] = (proposal_wise[merge] + whole_fcn8s) / 2
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--deconvnet", required=True, help="a trained DeconvNet .keras file")
    parser.add_argument("--fcn8s", required=True, help="a trained FCN-8s .keras file")
    parser.add_argument("--data", default="camvid:../shared/data/camvid")
    parser.add_argument("--split", default="test")
    parser.add_argument("--proposals", type=int, default=50)
    parser.add_argument("--image-size", type=int, nargs=2, default=(180, 240))
    parser.add_argument("--quick", action="store_true", help="4 frames, nothing written")
    args = parser.parse_args()

    data, info = load_segmentation_dataset(args.data, args.split)
    if args.quick:
        data = data.take(4)
    size = tuple(args.image_size)
    deconvnet, fcn8s = load_model(args.deconvnet), load_model(args.fcn8s)
    whole_d, whole_f = WholeImage(deconvnet, size), WholeImage(fcn8s, size)
    proposals = ProposalWise(deconvnet, args.proposals, input_size=size)

    confusion, seconds, frames, most = {}, {}, 0, 0

    def count(row, class_map, masks, spent):
        predicted = tf.cast(class_map[None], tf.int32)
        update = confusion_matrix_update(masks, predicted, info.num_classes, info.ignore_class)
        confusion[row] = confusion.get(row, 0) + update.numpy().astype(np.int64)
        seconds[row] = seconds.get(row, 0.0) + spent

    for example in data:
        image = example["images"].numpy()
        masks = tf.cast(example["segmentation_masks"], tf.int32)[None]
        start = time.perf_counter()
        d = whole_d(image[None])[0]
        t_d = time.perf_counter() - start
        start = time.perf_counter()
        f = whole_f(image[None])[0]
        t_f = time.perf_counter() - start
        start = time.perf_counter()
        boxes = proposals.boxes(image.astype(np.uint8))
        t_boxes = time.perf_counter() - start
        start = time.perf_counter()
        p = proposals.probabilities_by_merge(image, boxes)
        t_p = time.perf_counter() - start  # both merges, one network pass
        costs = {
            "FCN-8s": t_f,
            "DeconvNet, whole image": t_d,
            "DeconvNet, proposals": t_boxes + t_p,
            "EDeconvNet": t_boxes + t_p + t_f,
        }
        for row, probabilities in rungs(d, f, p).items():
            spent = next(c for name, c in costs.items() if row.startswith(name))
            count(row, np.argmax(probabilities, -1), masks, spent)
            if row.startswith("EDeconvNet"):
                start = time.perf_counter()
                refined = refine_batch(image[None].astype(np.uint8), probabilities[None], "crf")
                crf = time.perf_counter() - start
                count(row + " + CRF", refined[0], masks, spent + crf)
        frames, most = frames + 1, max(most, len(boxes) - 1)
        print(
            f"frame {frames}: {len(boxes)} proposals, {t_boxes:.2f} s to find them, "
            f"{t_p:.2f} s through the network",
            flush=True,
        )

    lines = [
        f"Machine: {machine()}. {frames} {args.split} frames, {most}"
        f" proposals a frame at most ({args.proposals} asked) plus the whole image, crops and"
        f" whole images at {size[0]}x{size[1]}; the time a frame counts every step of its"
        " rung (proposals, network, CRF).",
        "",
        "| rung | global acc. | class-avg acc. | mean IoU | s per frame |",
        "|---|---|---|---|---|",
    ]
    for row, matrix in confusion.items():
        s = scores_from_confusion_matrix(matrix)
        lines.append(
            f"| {row} | {100 * s['global_accuracy']:.1f} | {100 * s['mean_class_accuracy']:.1f}"
            f" | {100 * s['mean_iou']:.1f} | {seconds[row] / frames:.2f} |"
        )
    report(lines, "ladder.md", args.quick)


if __name__ == "__main__":
    main()
