import io
import json
import os
import zlib

import numpy as np
import pytest
from PIL import Image

from keras_segattn.cli import main
from keras_segattn.recipes.runs import RunFolder
from tests.data.test_coco import write_squares_layout


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    output = tmp_path_factory.mktemp("run")
    main(
        [
            "train",
            "--model",
            "fcn16s",
            "--data",
            "shapes",
            "--num-images",
            "16",
            "--epochs",
            "1",
            "--batch-size",
            "8",
            "--width",
            "0.0625",
            "--output",
            str(output),
            "--verbose",
            "0",
        ]
    )
    return output


def test_train_writes_checkpoints_logs_and_metrics(trained):
    for name in ("best.keras", "last.keras", "run.json", "metrics.json", "history.csv"):
        assert os.path.isfile(trained / name), name
    assert os.listdir(trained / "logs")
    metrics = json.loads((trained / "metrics.json").read_text())
    assert 0 <= metrics["mean_iou"] <= 1 and metrics["split"] == "test"


def test_evaluate_prints_the_three_figures(trained, capsys):
    main(["evaluate", "--model-path", str(trained / "best.keras"), "--data", "shapes"])
    out = capsys.readouterr().out
    assert "global accuracy" in out and "mean IoU" in out and "circle" in out


def test_evaluate_with_postprocessing_writes_json(trained, tmp_path, capsys):
    plain, refined = tmp_path / "plain.json", tmp_path / "superpixels.json"
    model = str(trained / "best.keras")
    main(["evaluate", "--model-path", model, "--data", "shapes", "--output", str(plain)])
    main(
        [
            "evaluate",
            "--model-path",
            model,
            "--data",
            "shapes",
            "--postprocess",
            "superpixels",
            "--output",
            str(refined),
        ]
    )
    plain, refined = json.loads(plain.read_text()), json.loads(refined.read_text())
    assert refined["postprocess"] == "superpixels" and plain["postprocess"] is None
    assert refined["num_images"] == plain["num_images"] > 0
    assert 0 <= refined["mean_iou"] <= 1 and len(refined["per_class_iou"]) == 4
    assert "seconds per image" in capsys.readouterr().out


def test_model_args_reach_the_builder(tmp_path):
    output = tmp_path / "rcnn"
    main(
        [
            "train",
            "--model",
            "recurrent_cnn",
            "--model-arg",
            "instances=2",
            "--model-arg",
            "filters=(8, 8)",
            "--model-arg",
            "kernel_size=3",
            "--data",
            "shapes",
            "--num-images",
            "8",
            "--epochs",
            "1",
            "--batch-size",
            "8",
            "--width",
            "0.5",
            "--image-size",
            "32",
            "--output",
            str(output),
            "--verbose",
            "0",
        ]
    )
    import keras

    model = keras.saving.load_model(output / "last.keras")
    assert model.instances == 2 and model.get_layer("dense_f").trunk.layers[1].filters == 4
    with pytest.raises(SystemExit, match="--model-arg expects KEY=VALUE"):
        main(
            [
                "train",
                "--model",
                "recurrent_cnn",
                "--model-arg",
                "instances",
                "--output",
                str(tmp_path / "bad"),
            ]
        )


def test_predict_writes_overlays_and_rejects_bad_files(trained, tmp_path):
    image = tmp_path / "a.png"
    Image.fromarray(np.zeros((40, 50, 3), np.uint8)).save(image)
    main(
        [
            "predict",
            "--model-path",
            str(trained / "best.keras"),
            "--images",
            str(image),
            "--output-dir",
            str(tmp_path / "out"),
        ]
    )
    overlay = Image.open(tmp_path / "out" / "a_overlay.png")
    assert overlay.size == (2 * 50 + 4, 40)
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"not a jpeg")
    with pytest.raises(SystemExit, match="corrupt.jpg.*not a readable image"):
        main(["predict", "--model-path", str(trained / "best.keras"), "--images", str(corrupt)])
    with pytest.raises(SystemExit, match="missing.png.*does not exist"):
        main(
            [
                "predict",
                "--model-path",
                str(trained / "best.keras"),
                "--images",
                str(tmp_path / "missing.png"),
            ]
        )


def test_predict_never_overwrites_and_scales_16_bit_images(trained, tmp_path):
    from keras_segattn.cli import read_image

    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        Image.fromarray(np.zeros((40, 50, 3), np.uint8)).save(tmp_path / folder / "x.png")
    main(
        [
            "predict",
            "--model-path",
            str(trained / "best.keras"),
            "--images",
            str(tmp_path / "a" / "x.png"),
            str(tmp_path / "b" / "x.png"),
            "--output-dir",
            str(tmp_path / "out"),
        ]
    )
    assert sorted(os.listdir(tmp_path / "out")) == ["x_2_overlay.png", "x_overlay.png"]
    deep = tmp_path / "deep.png"
    Image.fromarray(np.array([[0, 32768, 65535]], np.uint16)).save(deep)
    assert read_image(str(deep))[0, :, 0].tolist() == [0, 128, 255]  # scaled, not clipped


def test_output_names_never_repeat():
    from keras_segattn.cli import output_names

    paths = ["a/frame.png", "b/frame.png", "c/frame_2.png", "d/frame.jpg"]
    names = output_names(paths, "_overlay.png")
    assert names == [
        "frame_overlay.png",
        "frame_2_overlay.png",
        "frame_2_2_overlay.png",
        "frame_3_overlay.png",
    ]
    assert len(set(names)) == len(paths)


def test_an_image_claiming_a_huge_size_is_refused_from_its_header(tmp_path):
    from keras_segattn.cli import read_image

    buffer = io.BytesIO()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(buffer, format="PNG")
    for side, message in (
        (9000, "is 9000x9000 pixels, more than the 67,108,864"),
        (60000, "has more than the 67,108,864 pixels"),
    ):
        data = bytearray(buffer.getvalue())
        data[16:24] = side.to_bytes(4, "big") * 2  # IHDR: width, height
        data[29:33] = zlib.crc32(bytes(data[12:29])).to_bytes(4, "big")  # a valid chunk
        (tmp_path / "bomb.png").write_bytes(bytes(data))
        with pytest.raises(SystemExit, match=rf"bomb.png' {message}"):
            read_image(str(tmp_path / "bomb.png"))


def test_an_output_dir_that_is_a_file_is_named(trained, tmp_path):
    (tmp_path / "taken").write_text("x")
    image = tmp_path / "a.png"
    Image.fromarray(np.zeros((40, 50, 3), np.uint8)).save(image)
    with pytest.raises(SystemExit, match="--output-dir .*taken' is a file; expected a folder"):
        main(
            [
                "predict",
                "--model-path",
                str(trained / "best.keras"),
                "--images",
                str(image),
                "--output-dir",
                str(tmp_path / "taken"),
            ]
        )


def test_evaluate_refuses_data_of_another_class_count(trained, shared_data):
    camvid = os.path.join(shared_data, "camvid")
    with pytest.raises(SystemExit, match="predicts 4 classes but --data camvid.* has 11"):
        main(
            ["evaluate", "--model-path", str(trained / "best.keras"), "--data", f"camvid:{camvid}"]
        )


def test_zero_epochs_and_a_parent_run_json_are_not_taken(tmp_path):
    from keras_segattn.checkpoints import read_run_config

    with pytest.raises(SystemExit, match="epochs must be a positive int"):
        main(["train", "--data", "shapes", "--epochs", "0", "--output", str(tmp_path / "r")])
    (tmp_path / "run.json").write_text('{"image_size": [8, 8]}')
    (tmp_path / "elsewhere").mkdir()
    assert read_run_config(str(tmp_path / "elsewhere" / "m.keras")) == {}
    assert read_run_config(str(tmp_path / "m.keras")) == {"image_size": [8, 8]}


def test_export_writes_serving_layout_and_tflite(trained, tmp_path, capsys):
    main(
        [
            "export",
            "--model-path",
            str(trained / "best.keras"),
            "--output",
            str(tmp_path),
            "--name",
            "demo",
            "--tflite",
            "float32",
            "float16",
            "--tflite-size",
            "40",
            "56",
        ]
    )
    assert os.path.isfile(tmp_path / "demo" / "1" / "saved_model.pb")
    assert os.path.isfile(tmp_path / "demo" / "demo_v1.tflite")
    assert os.path.isfile(tmp_path / "demo" / "demo_v1_float16.tflite")
    # The fixed-size files beside them, each checked against Keras at that size.
    assert os.path.isfile(tmp_path / "demo" / "demo_v1_40x56.tflite")
    assert os.path.isfile(tmp_path / "demo" / "demo_v1_40x56_float16.tflite")
    out = capsys.readouterr().out
    assert "tflite vs Keras" in out and "TFLite 40x56_float32" in out


def test_an_exported_folder_is_all_a_user_needs(trained, tmp_path):
    from keras_segattn.export import read_labels, tflite_labels, tflite_serving_limits

    main(
        [
            "export",
            "--model-path",
            str(trained / "best.keras"),
            "--output",
            str(tmp_path),
            "--name",
            "demo",
            "--keras",
            "--max-pixels",
            "250000",
        ]
    )
    folder = tmp_path / "demo"
    names = ["background", "circle", "square", "triangle"]
    assert read_labels(folder / "1") == names  # assets.extra/labels.txt
    assert tflite_labels(str(folder / "demo_v1.tflite")) == names
    assert tflite_serving_limits(str(folder / "demo_v1.tflite")) == {
        "max_pixels": 250000,
        "max_batch_pixels": 2 * 2048 * 2048,
    }
    assert (folder / "demo_v1.labels.txt").read_text().split() == names
    assert sorted(p for p in os.listdir(folder) if not p.startswith(".")) == [
        "1",
        "demo_v1.keras",
        "demo_v1.labels.txt",
        "demo_v1.run.json",
        "demo_v1.tflite",
    ]
    # The Keras file has no optimizer state and finds its run's arguments.
    run = json.loads((folder / "demo_v1.run.json").read_text())
    assert run == json.loads((trained / "run.json").read_text())
    assert os.path.getsize(folder / "demo_v1.keras") < os.path.getsize(trained / "best.keras")
    image = tmp_path / "a.png"
    Image.fromarray(np.zeros((40, 50, 3), np.uint8)).save(image)
    main(
        [
            "predict",
            "--model-path",
            str(folder / "demo_v1.keras"),
            "--images",
            str(image),
            "--output-dir",
            str(tmp_path / "out"),
        ]
    )
    assert os.path.isfile(tmp_path / "out" / "a_overlay.png")


def test_export_of_the_keras_file_alone(trained, tmp_path):
    main(
        [
            "export",
            "--model-path",
            str(trained / "best.keras"),
            "--output",
            str(tmp_path),
            "--name",
            "demo",
            "--keras",
            "--tflite",
        ]
    )
    folder = tmp_path / "demo"
    assert sorted(p for p in os.listdir(folder) if not p.startswith(".")) == [
        "1",
        "demo_v1.keras",
        "demo_v1.run.json",
    ]


def test_a_caption_report_prints_unmeasured_scores_as_none(capsys):
    from keras_segattn.cli import print_caption_report

    print_caption_report({"BLEU-4": 0.25, "METEOR": None, "attended_cells": 3})
    lines = capsys.readouterr().out.splitlines()
    assert [line.split() for line in lines] == [
        ["BLEU-4", "0.2500"],
        ["METEOR", "None"],
        ["attended_cells", "3"],
    ]


def test_bad_model_path_is_reported(tmp_path):
    with pytest.raises(SystemExit, match="--model-path"):
        main(["evaluate", "--model-path", str(tmp_path / "none.keras"), "--data", "shapes"])
    with pytest.raises(SystemExit, match="Unknown model name='nope'"):
        main(["train", "--model", "nope"])


def test_export_of_a_spatial_transformer_model(tmp_path, shared_data, capsys):
    from keras_segattn.models import create_model

    model_path = str(tmp_path / "st_cnn.keras")
    create_model("st_cnn", transform="tps", input_size=42).save(model_path)
    main(
        [
            "export",
            "--model-path",
            model_path,
            "--output",
            str(tmp_path / "out"),
            "--data",
            f"{shared_data}/mnist",
            "--tflite",
            "float32",
            "int8",
        ]
    )
    out = capsys.readouterr().out
    assert "transformed_images" in out and "transform" in out
    assert os.path.isfile(tmp_path / "out" / "st_cnn" / "1" / "saved_model.pb")
    assert os.path.isfile(tmp_path / "out" / "st_cnn" / "st_cnn_v1_int8.tflite")
    # A classifier's input size is fixed: another --tflite-size is refused
    # before anything is written.
    with pytest.raises(SystemExit, match="input size"):
        main(
            [
                "export",
                "--model-path",
                model_path,
                "--output",
                str(tmp_path / "other"),
                "--data",
                f"{shared_data}/mnist",
                "--tflite-size",
                "40",
                "40",
            ]
        )
    assert not os.path.exists(tmp_path / "other" / "st_cnn")


def test_instance_train_and_export(tmp_path, capsys):
    from keras_segattn.models.registry import get_model_spec

    tiny = get_model_spec("mnc").tiny
    args = [f"{k}={v!r}" for k, v in tiny.items() if k != "num_classes"]
    output = tmp_path / "mnc"
    main(
        [
            "instance-train",
            "--model",
            "mnc",
            "--num-train",
            "8",
            "--num-val",
            "4",
            "--epochs",
            "1",
            "--image-size",
            "48",
            "--output",
            str(output),
            "--verbose",
            "0",
            *[a for arg in args for a in ("--model-arg", arg)],
        ]
    )
    metrics = json.loads((output / "metrics.json").read_text())
    assert metrics["mAPr@0.5"] is None or 0 <= metrics["mAPr@0.5"] <= 1  # NaN -> null
    assert metrics["epochs"] == 1
    main(
        [
            "evaluate",
            "--model-path",
            str(output / "last.keras"),
            "--data",
            "shapes",
            "--split",
            "val",
            "--output",
            str(tmp_path / "scores.json"),
        ]
    )
    scores = json.loads((tmp_path / "scores.json").read_text())
    assert scores["predict_seconds_per_image"] > 0 and "mAPr@0.7" in scores
    assert "seconds per image (detect)" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="semantic models only"):
        main(
            [
                "evaluate",
                "--model-path",
                str(output / "last.keras"),
                "--data",
                "shapes",
                "--postprocess",
                "crf",
            ]
        )
    main(
        [
            "export",
            "--model-path",
            str(output / "last.keras"),
            "--output",
            str(tmp_path / "sm"),
            "--data",
            "shapes",
        ]
    )
    assert "TFLite float32" in capsys.readouterr().out


@pytest.mark.parametrize("model", ["hypercolumns", "sds"])
def test_instance_train_of_the_array_trainers_on_a_coco_layout(tmp_path, model):
    root = write_squares_layout(str(tmp_path / "coco"))
    output = tmp_path / model
    extra = ["--model-arg", "width=0.125", "--model-arg", "fc_units=16"]
    main(
        [
            "instance-train",
            "--model",
            model,
            "--data",
            f"coco:{root}",
            "--image-size",
            "64",
            "--epochs",
            "1",
            "--output",
            str(output),
            "--verbose",
            "0",
            *extra,
        ]
    )
    metrics = json.loads((output / "metrics.json").read_text())
    assert metrics["model"] == model and metrics["train_seconds"] > 0
    assert metrics["epochs"] == 1
    assert metrics["mAPr@0.5"] is None or 0 <= metrics["mAPr@0.5"] <= 1  # NaN -> null
    assert {"box_metrics" if model == "hypercolumns" else "metrics_unrefined"} <= set(metrics)
    assert os.path.isfile(output / "last.keras")
    run = json.loads((output / "run.json").read_text())
    assert run["model"] == model and run["epochs"] == 1
    # The network exports (the detection loop stays on the host), checked
    # against Keras on crops or boxes of this data, its classes as labels.
    main(
        [
            "export",
            "--model-path",
            str(output / "last.keras"),
            "--output",
            str(tmp_path / "sm"),
            "--data",
            f"coco:{root}",
        ]
    )
    from keras_segattn.export import read_labels, tflite_labels

    assert read_labels(tmp_path / "sm" / model / "1")[0] == "background"
    assert tflite_labels(str(tmp_path / "sm" / model / f"{model}_v1.tflite"))[0] == "background"
    # The checkpoint is scored like rpn / mnc ones: COCO numbers, one JSON.
    scores = tmp_path / "scores.json"
    main(
        [
            "evaluate",
            "--model-path",
            str(output / "last.keras"),
            "--data",
            f"coco:{root}",
            "--split",
            "val",
            "--output",
            str(scores),
        ]
    )
    scored = json.loads(scores.read_text())
    for key in ("mAPr@0.5", "mAPr@0.7", "mask_AP", "predict_seconds_per_image"):
        assert scored[key] is None or 0 <= scored[key] <= (1 if "AP" in key else 60)
    if model == "hypercolumns":  # the full detector: SDS's boxes, hypercolumn masks
        with pytest.raises(SystemExit, match="--detector"):
            main(
                [
                    "evaluate",
                    "--model-path",
                    str(output / "last.keras"),
                    "--data",
                    f"coco:{root}",
                    "--split",
                    "val",
                    "--detector",
                    str(tmp_path / "none.keras"),
                ]
            )


def test_patch_cnn_trains_on_patches_and_is_scored_densely(tmp_path, capsys):
    output = tmp_path / "patch"
    main(
        [
            "train",
            "--model",
            "patch_cnn",
            "--data",
            "shapes",
            "--num-images",
            "8",
            "--epochs",
            "2",
            "--schedule",
            "cosine",
            "--batch-size",
            "32",
            "--patches-per-image",
            "16",
            "--width",
            "0.125",
            "--model-arg",
            "patch_size=17",
            "--output",
            str(output),
            "--verbose",
            "0",
        ]
    )
    assert {"run.json", "metrics.json", "last.keras", "best.keras", "history.csv"} <= set(
        os.listdir(output)
    )
    metrics = json.loads((output / "metrics.json").read_text())
    assert metrics["model"] == "patch_cnn" and 0 <= metrics["global_accuracy"] <= 1
    history = (output / "history.csv").read_text().splitlines()
    assert history[0].split(",")[:2] == ["epoch", "accuracy"] and len(history) == 3
    rates = RunFolder(output).history_column("learning_rate")
    assert rates == pytest.approx([1e-3, 5e-4])  # --schedule cosine: half way down at epoch 2
    scores = tmp_path / "dense.json"
    main(
        [
            "evaluate",
            "--model-path",
            str(output / "best.keras"),
            "--data",
            "shapes",
            "--split",
            "val",
            "--output",
            str(scores),
        ]
    )
    dense = json.loads(scores.read_text())
    assert dense["num_images"] > 0 and 0 <= dense["mean_iou"] <= 1


def test_instance_train_keeps_every_coco_instance_by_default(monkeypatch, tmp_path):
    from keras_segattn.recipes import instance as train

    seen = {}

    def capture(dataset, batch_size, **kwargs):
        seen.update(kwargs)
        raise KeyboardInterrupt  # stop before training

    monkeypatch.setattr(train, "instance_pipeline", capture)
    root = write_squares_layout(str(tmp_path / "coco"))
    light = ["--model-arg", "backbone='light'"]
    for i, (data, expected) in enumerate(((f"coco:{root}", None), ("shapes", 3))):
        with pytest.raises(KeyboardInterrupt):
            main(
                [
                    "instance-train",
                    "--data",
                    data,
                    "--num-train",
                    "2",
                    "--num-val",
                    "2",
                    "--image-size",
                    "64",
                    *light,
                    "--output",
                    str(tmp_path / str(i)),
                ]
            )
        assert seen["max_instances"] == expected
    with pytest.raises(KeyboardInterrupt):
        main(
            [
                "instance-train",
                "--data",
                f"coco:{root}",
                "--max-instances",
                "7",
                *light,
                "--output",
                str(tmp_path / "2"),
            ]
        )
    assert seen["max_instances"] == 7


def test_cosine_schedule_holds_the_rate_through_stage_one(tmp_path):
    output = tmp_path / "two_stage"
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
            "3",
            "--stage1-epochs",
            "1",
            "--schedule",
            "cosine",
            "--batch-size",
            "8",
            "--image-size",
            "32",
            "--width",
            "0.0625",
            "--output",
            str(output),
            "--verbose",
            "0",
        ]
    )
    assert RunFolder(output).history_column("learning_rate") == pytest.approx([1e-3, 1e-3, 5e-4])
    assert json.loads((output / "run.json").read_text())["schedule"] == "cosine"
    with pytest.raises(SystemExit, match="stage1_epochs needs crop_size or image_size"):
        main(
            [
                "train",
                "--model",
                "fcn32s",
                "--data",
                "shapes",
                "--stage1-epochs",
                "1",
                "--output",
                str(tmp_path / "no_size"),
            ]
        )


def test_train_stops_early_and_reports_when(tmp_path):
    output = tmp_path / "still"
    # Learning rate 0: validation mean IoU never improves on epoch 1's.
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
            "5",
            "--batch-size",
            "8",
            "--width",
            "0.0625",
            "--learning-rate",
            "0",
            "--patience",
            "2",
            "--output",
            str(output),
            "--verbose",
            "0",
        ]
    )
    metrics = json.loads((output / "metrics.json").read_text())
    assert (metrics["epochs"], metrics["epochs_trained"], metrics["best_epoch"]) == (5, 3, 1)
    assert len((output / "history.csv").read_text().split()) == 1 + 3
    assert json.loads((output / "run.json").read_text())["patience"] == 2
