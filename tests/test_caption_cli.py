import json
import os
import zipfile

import numpy as np
import pytest
from PIL import Image

from keras_segattn.cli import main

TINY = [
    "--model-arg",
    "encoder_filters=(8, 8, 8)",
    "--model-arg",
    "units=16",
    "--model-arg",
    "embedding_dim=8",
    "--model-arg",
    "attention_units=8",
]


@pytest.fixture(scope="module")
def captioner(tmp_path_factory):
    output = tmp_path_factory.mktemp("caption")
    main(
        [
            "caption-train",
            "--num-images",
            "24",
            "--epochs",
            "1",
            "--batch-size",
            "8",
            "--image-size",
            "32",
            "--max-length",
            "12",
            "--beam-width",
            "2",
            "--schedule",
            "cosine",
            "--output",
            str(output),
            "--verbose",
            "0",
            *TINY,
        ]
    )
    return output


def test_caption_train_writes_model_vocabulary_and_scores(captioner):
    for name in ("best.keras", "last.keras", "vocabulary.json", "metrics.json", "history.csv"):
        assert os.path.isfile(captioner / name), name
    metrics = json.loads((captioner / "metrics.json").read_text())
    for key in ("BLEU-4", "METEOR", "CIDEr", "localization", "exact_match"):
        assert key in metrics
    assert metrics["num_images"] == 50 and metrics["attention"] == "soft"
    assert 0 <= metrics["BLEU-1"] <= 1
    # --schedule cosine: the optimizer's rate decays over the run's 3 steps
    # (24 training images, batches of 8, one epoch).
    with zipfile.ZipFile(captioner / "last.keras") as saved:
        optimizer = json.loads(saved.read("config.json"))["compile_config"]["optimizer"]
    rate = optimizer["config"]["learning_rate"]
    assert rate["class_name"] == "ScheduledRate"
    assert (rate["config"]["schedule"], rate["config"]["steps"]) == ("cosine", 3)
    assert json.loads((captioner / "run.json").read_text())["schedule"] == "cosine"


def test_caption_evaluate_and_caption_files(captioner, tmp_path, capsys):
    out = tmp_path / "scores.json"
    main(
        [
            "caption-evaluate",
            "--model-path",
            str(captioner / "best.keras"),
            "--data",
            "shapes",
            "--split",
            "val",
            "--num-images",
            "8",
            "--beam-width",
            "1",
            "--output",
            str(out),
        ]
    )
    assert json.loads(out.read_text())["num_images"] == 8
    image = tmp_path / "shape.png"
    Image.fromarray(np.full((40, 48, 3), 200, np.uint8)).save(image)
    main(
        [
            "caption",
            "--model-path",
            str(captioner / "best.keras"),
            "--images",
            str(image),
            "--beam-width",
            "1",
            "--output-dir",
            str(tmp_path / "figures"),
        ]
    )
    assert os.path.isfile(tmp_path / "figures" / "shape_attention.png")
    assert f"{image}: " in capsys.readouterr().out


def test_export_of_a_captioner(captioner, tmp_path, capsys):
    main(
        [
            "export",
            "--model-path",
            str(captioner / "best.keras"),
            "--output",
            str(tmp_path),
            "--data",
            "shapes",
        ]
    )
    out = capsys.readouterr().out
    assert "TFLite float32" in out and "tflite vs Keras" in out


def test_caption_commands_reject_a_segmentation_model(tmp_path):
    seg = tmp_path / "seg"
    main(
        [
            "train",
            "--model",
            "fcn32s",
            "--data",
            "shapes",
            "--num-images",
            "8",
            "--epochs",
            "1",
            "--width",
            "0.0625",
            "--output",
            str(seg),
            "--verbose",
            "0",
        ]
    )
    with pytest.raises(SystemExit, match="is not a captioning model"):
        main(["caption", "--model-path", str(seg / "best.keras"), "--images", "x.png"])


def test_caption_evaluate_on_coco_images_of_mixed_sizes(captioner, shared_data, tmp_path):
    out = tmp_path / "coco.json"
    main(
        [
            "caption-evaluate",
            "--model-path",
            str(captioner / "best.keras"),
            "--data",
            f"coco:{shared_data}/coco_mini",
            "--split",
            "val",
            "--beam-width",
            "1",
            "--output",
            str(out),
        ]
    )
    metrics = json.loads(out.read_text())
    assert metrics["num_images"] == 79 and "localization" not in metrics


def test_a_split_without_references_is_refused_before_training(tmp_path):
    from tests.data.test_captions import _jpeg, _write_coco

    root = tmp_path / "coco"
    for split in ("train", "val"):
        _write_coco(root, ["a.jpg", "b.jpg"], split)
        for name in ("a.jpg", "b.jpg"):
            _jpeg(root / f"{split}2017" / name, size=(32, 32))
    path = root / "annotations" / "captions_val2017.json"
    data = json.loads(path.read_text())
    for annotation in data["annotations"]:
        if annotation["image_id"] == 2:
            annotation["caption"] = "  "
    path.write_text(json.dumps(data))
    output = tmp_path / "run"
    with pytest.raises(SystemExit, match=r"'val' split has an image without .*\(image 2\)"):
        main(
            [
                "caption-train",
                "--data",
                f"coco:{root}",
                "--eval-split",
                "val",
                "--epochs",
                "1",
                "--output",
                str(output),
                "--image-size",
                "32",
            ]
        )
    assert not (output / "history.csv").exists()  # refused before the first epoch
