"""Host-side work: region proposals (SDS) and superpixels (scene labelling),
ours against the libraries, on real data.

    python benchmarks/host.py                # the README tables (about 10 min on 2 cores)
    python benchmarks/host.py --quick        # a few images, a smoke run
    python benchmarks/host.py --parts superpixels
    python benchmarks/host.py --parts voting --model-path runs/camvid_multiscale/best.keras
        # superpixel voting over a trained network's CamVid predictions (printed)

Needs `../shared/data` (the COCO slice and CamVid), and
`opencv-contrib-python-headless` for OpenCV's selective search (the
comparison row only; the package does not depend on it).

- proposals: our selective-search grouping (`propose_regions`, region
  masks) against OpenCV's `cv2.ximgproc.segmentation` selective search in
  its fast and quality modes (boxes only), on the shapes and on the COCO
  slice at 256x256: box recall of the ground-truth instances at IoU 0.5
  and 0.7 with at most 500 proposals, and time per image.
- superpixels: the segmentations `superpixel_vote` can use, on CamVid test
  frames (360x480): time per frame and the achievable accuracy, the
  standard superpixel benchmark (each superpixel labelled with its majority
  ground-truth class, the best any vote over it can do): pixel accuracy
  and mean IoU of that labelling.
"""

import argparse
import os
import time

import numpy as np
from timing import machine, report

HERE = os.path.dirname(os.path.abspath(__file__))
SHARED = os.path.join(HERE, "..", "..", "shared", "data")
MAX_PROPOSALS = 500


def box_recall(gt_boxes, boxes, thresholds=(0.5, 0.7)):
    from keras_segattn.core.instances import box_iou

    if len(gt_boxes) == 0:
        return None
    best = box_iou(gt_boxes, boxes).max(axis=1) if len(boxes) else np.zeros(len(gt_boxes))
    return [best >= t for t in thresholds]


def opencv_proposals(image, mode):
    import cv2

    search = cv2.ximgproc.segmentation.createSelectiveSearchSegmentation()
    search.setBaseImage(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    if mode == "fast":
        search.switchToSelectiveSearchFast()
    else:
        search.switchToSelectiveSearchQuality()
    rects = search.process()[:MAX_PROPOSALS].astype(np.float32)  # (x, y, w, h), ranked
    return np.concatenate([rects[:, :2], rects[:, :2] + rects[:, 2:]], axis=1)


def ours_proposals(image):
    from keras_segattn.models.instance.regions import propose_regions

    return propose_regions(image, max_regions=MAX_PROPOSALS)[1]


def proposal_rows(quick):
    import cv2

    from keras_segattn.core.instances import real_instances
    from keras_segattn.data import load_instance_dataset, resize_instances

    cv2.setNumThreads(os.cpu_count())
    count = 4 if quick else 40
    sources = [
        ("shapes 64x64", *load_instance_dataset("shapes", "val", num_images=count, image_size=64))
    ]
    coco = os.path.join(SHARED, "coco_mini")
    if os.path.isdir(coco):
        data, info = load_instance_dataset(f"coco:{coco}", "val")
        sources.append(("COCO slice 256x256", resize_instances(data, 256).take(count), info))
    methods = {
        "ours (selective-search grouping, region masks)": ours_proposals,
        "OpenCV selective search, fast (boxes)": lambda image: opencv_proposals(image, "fast"),
        "OpenCV selective search, quality (boxes)": lambda image: opencv_proposals(
            image, "quality"
        ),
    }
    rows = []
    for label, data, _ in sources:
        examples = [
            (e["images"].numpy().astype(np.uint8), real_instances(e)[0]) for e in data.take(count)
        ]
        for name, propose in methods.items():
            hits, seconds, numbers = [[], []], [], []
            for image, gt_boxes in examples:
                start = time.perf_counter()
                boxes = propose(image)
                seconds.append(time.perf_counter() - start)
                numbers.append(len(boxes))
                found = box_recall(gt_boxes, boxes)
                if found is not None:
                    for k in range(2):
                        hits[k].extend(found[k])
            rows.append(
                f"| {label} | {name} | {np.mean(numbers):.0f} | {np.mean(hits[0]):.3f} "
                f"| {np.mean(hits[1]):.3f} | {1000 * np.median(seconds):.0f} |"
            )
            print(rows[-1], flush=True)
    return rows, count


SUPERPIXELS = [
    ("felzenszwalb scale=100, sigma=0.8, min_size=50", "felzenszwalb", {"scale": 100}),
    ("felzenszwalb scale=40, min_size=50 (the default)", "felzenszwalb", {}),
    ("felzenszwalb scale=300, min_size=100", "felzenszwalb", {"scale": 300, "min_size": 100}),
    ("slic n_segments=400, compactness=10", "slic", {}),
    ("slic n_segments=1000, compactness=10", "slic", {"n_segments": 1000}),
    ("slic n_segments=400, compactness=10, max_num_iter=5", "slic", {"max_num_iter": 5}),
]


def achievable(segments, labels, num_classes, ignore):
    """Each segment takes its majority ground-truth class (ignored pixels
    do not vote): returns the labelling."""
    valid = labels != ignore
    counts = np.zeros((segments.max() + 1, num_classes))
    np.add.at(counts, (segments[valid], labels[valid]), 1)
    return counts.argmax(axis=1)[segments]


def superpixel_rows(quick):
    from keras_segattn.data import load_segmentation_dataset
    from keras_segattn.metrics import scores_from_confusion_matrix
    from keras_segattn.postprocess.superpixels import segment

    camvid = os.path.join(SHARED, "camvid")
    data, info = load_segmentation_dataset(f"camvid:{camvid}", "test")
    count = 3 if quick else 30
    frames = [
        (
            e["images"].numpy().astype(np.uint8),
            e["segmentation_masks"].numpy().astype(np.int64).squeeze(),
        )
        for e in data.take(count)
    ]
    rows = []
    for name, method, options in SUPERPIXELS:
        seconds, confusion, segments_per_frame = [], np.zeros((info.num_classes,) * 2), []
        for image, labels in frames:
            start = time.perf_counter()
            segments = segment(image, method, **options)
            seconds.append(time.perf_counter() - start)
            segments = np.unique(segments, return_inverse=True)[1].reshape(segments.shape)
            segments_per_frame.append(segments.max() + 1)
            voted = achievable(segments, labels, info.num_classes, info.ignore_class)
            valid = labels != info.ignore_class
            np.add.at(confusion, (labels[valid], voted[valid]), 1)
        scores = scores_from_confusion_matrix(confusion)
        rows.append(
            f"| {name} | {np.mean(segments_per_frame):.0f} | {1000 * np.median(seconds):.0f} "
            f"| {scores['global_accuracy']:.3f} | {scores['mean_iou']:.3f} |"
        )
        print(rows[-1], flush=True)
    return rows, count, frames[0][0].shape


VOTING = [
    ("none (the network's argmax)", None),
    ("felzenszwalb scale=100", {"scale": 100}),
    ("felzenszwalb scale=40 (the default)", {}),
    ("slic n_segments=400, max_num_iter=5", {"segmentation_method": "slic", "max_num_iter": 5}),
]


def voting_rows(model_path, quick):
    """Superpixel voting over a trained network's predictions, CamVid test."""
    from keras_segattn.checkpoints import load_model, read_run_config
    from keras_segattn.data import load_segmentation_dataset
    from keras_segattn.evaluation.semantic import evaluate_segmentation

    model = load_model(model_path, "model_path")
    image_size = read_run_config(model_path).get("image_size")
    data, info = load_segmentation_dataset(f"camvid:{os.path.join(SHARED, 'camvid')}", "test")
    data = data.take(8 if quick else 233)
    rows = []
    for name, options in VOTING:
        scores = evaluate_segmentation(
            model,
            data,
            info.num_classes,
            info.ignore_class,
            image_size=image_size,
            postprocess=None if options is None else "superpixels",
            postprocess_options=options,
        )
        rows.append(
            f"| {name} | {100 * scores['global_accuracy']:.1f} "
            f"| {100 * scores['mean_class_accuracy']:.1f} | {100 * scores['mean_iou']:.1f} "
            f"| {1000 * scores['seconds_per_image']:.0f} |"
        )
        print(rows[-1], flush=True)
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--parts",
        nargs="+",
        choices=["proposals", "superpixels", "voting"],
        default=["proposals", "superpixels"],
    )
    parser.add_argument("--model-path", help="a CamVid semantic checkpoint, for --parts voting")
    args = parser.parse_args()
    if "voting" in args.parts and not args.model_path:
        parser.error("--parts voting needs --model-path (a trained CamVid checkpoint)")
    lines = [f"Machine: {machine()}.", ""]
    if "proposals" in args.parts:
        rows, count = proposal_rows(args.quick)
        lines += [
            f"Region proposals, {count} held-out images per dataset, at most {MAX_PROPOSALS} "
            "per image; box recall of the ground-truth instances; median time per image:",
            "",
            "| data | proposals | per image | recall@0.5 | recall@0.7 | ms per image |",
            "|---|---|---|---|---|---|",
            *rows,
            "",
        ]
    if "superpixels" in args.parts:
        rows, count, shape = superpixel_rows(args.quick)
        lines += [
            f"Superpixels on {count} CamVid test frames ({shape[0]}x{shape[1]}); achievable "
            "accuracy (each superpixel labelled with its majority ground-truth class); median "
            "time per frame:",
            "",
            "| segmentation | segments | ms per frame | pixel accuracy | mean IoU |",
            "|---|---|---|---|---|",
            *rows,
            "",
        ]
    if "voting" in args.parts:
        lines += [
            f"Superpixel voting over `{args.model_path}` on the CamVid test frames:",
            "",
            "| voting | global acc. | class-avg acc. | mean IoU | ms per image |",
            "|---|---|---|---|---|",
            *voting_rows(args.model_path, args.quick),
            "",
        ]
    report(lines, "host.md", args.quick or "voting" in args.parts)


if __name__ == "__main__":
    main()
