import json
import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from keras_segattn.data import captions as cap
from keras_segattn.data import shapes


def _coco_root(shared_data):
    return os.path.join(shared_data, "coco_mini")


def _coco_json(root, split):
    with open(os.path.join(root, "annotations", f"captions_{split}2017.json")) as f:
        return json.load(f)


# --- COCO -------------------------------------------------------------------


@pytest.mark.parametrize("split, count", [("train", 80), ("val", 79)])
def test_coco_mini_counts_and_captions(shared_data, split, count):
    root = _coco_root(shared_data)
    ds = cap.coco_captions(root, split)
    assert int(ds.cardinality()) == count
    assert ds.element_spec["images"] == tf.TensorSpec([None, None, 3], tf.uint8)
    assert ds.element_spec["captions"] == tf.TensorSpec([None], tf.string)
    assert ds.element_spec["image_id"] == tf.TensorSpec([], tf.int64)

    data = _coco_json(root, split)
    sizes = {im["id"]: (im["height"], im["width"]) for im in data["images"]}
    expected = {}
    for ann in data["annotations"]:
        expected.setdefault(ann["image_id"], []).append(ann["caption"].strip())
    ids = []
    for ex in ds.take(3):
        image_id = int(ex["image_id"])
        ids.append(image_id)
        assert ex["images"].dtype == tf.uint8
        assert tuple(ex["images"].shape) == sizes[image_id] + (3,)
        assert [c.decode() for c in ex["captions"].numpy()] == expected[image_id]
    assert ids == sorted(expected)[:3]


def test_coco_images_absent_from_disk_are_counted_and_skipped(shared_data, tmp_path):
    source = _coco_root(shared_data)
    (tmp_path / "annotations").mkdir()
    os.symlink(
        os.path.join(source, "annotations", "captions_val2017_full.json"),
        tmp_path / "annotations" / "captions_val2017.json",
    )
    os.symlink(os.path.join(source, "val2017"), tmp_path / "val2017")
    with pytest.warns(UserWarning, match="4841 of 5000 images .* are skipped"):
        ds = cap.coco_captions(tmp_path, "validation")
    assert int(ds.cardinality()) == 159


def _write_coco(root, files, split="val"):
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    (root / f"{split}2017").mkdir(exist_ok=True)
    data = {
        "images": [{"id": i + 1, "file_name": name} for i, name in enumerate(files)],
        "annotations": [
            {"id": 10 * (i + 1) + k, "image_id": i + 1, "caption": f" Caption {k} of {name}. "}
            for i, name in enumerate(files)
            for k in range(2)
        ],
    }
    (root / "annotations" / f"captions_{split}2017.json").write_text(json.dumps(data))


def _jpeg(path, size=(12, 16), value=90):
    Image.fromarray(np.full(size + (3,), value, np.uint8)).save(path, quality=95)


def test_coco_missing_json_is_named(tmp_path):
    with pytest.raises(ValueError, match="captions_val2017.json' does not exist"):
        cap.coco_captions(tmp_path, "val")


def test_coco_malformed_json_is_named(tmp_path):
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "captions_val2017.json").write_text('{"images": []')
    with pytest.raises(ValueError, match="captions_val2017.json' is not a valid"):
        cap.coco_captions(tmp_path, "val")


def test_coco_no_image_on_disk(tmp_path):
    _write_coco(tmp_path, ["a.jpg"])
    with pytest.raises(ValueError, match="None of the 1 captioned images"):
        cap.coco_captions(tmp_path, "val")


def test_coco_small_tree_and_greyscale(tmp_path):
    _write_coco(tmp_path, ["a.jpg", "b.png"])
    _jpeg(tmp_path / "val2017" / "a.jpg")
    Image.fromarray(np.zeros((5, 7), np.uint8)).save(tmp_path / "val2017" / "b.png")
    out = list(cap.coco_captions(tmp_path, "val").as_numpy_iterator())
    assert [ex["image_id"] for ex in out] == [1, 2]
    assert out[0]["images"].shape == (12, 16, 3)
    assert out[1]["images"].shape == (5, 7, 3)
    assert out[0]["captions"].tolist() == [b"Caption 0 of a.jpg.", b"Caption 1 of a.jpg."]


def test_coco_null_captions_are_not_references(tmp_path):
    _write_coco(tmp_path, ["a.jpg"])
    path = tmp_path / "annotations" / "captions_val2017.json"
    data = json.loads(path.read_text())
    data["annotations"][1]["caption"] = None
    path.write_text(json.dumps(data))
    _jpeg(tmp_path / "val2017" / "a.jpg")
    out = list(cap.coco_captions(tmp_path, "val").as_numpy_iterator())
    assert out[0]["captions"].tolist() == [b"Caption 0 of a.jpg."]  # not b"None"
    data["annotations"][1]["caption"] = 7
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="is not a valid COCO captions JSON.*caption 7"):
        cap.coco_captions(tmp_path, "val")


def test_coco_non_image_file_is_named_up_front(tmp_path):
    _write_coco(tmp_path, ["a.jpg"])
    (tmp_path / "val2017" / "a.jpg").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="a.jpg' is not a PNG or JPEG"):
        cap.coco_captions(tmp_path, "val")


def test_coco_truncated_image_is_named_when_read(tmp_path):
    _write_coco(tmp_path, ["good.jpg", "broken.jpg"])
    _jpeg(tmp_path / "val2017" / "good.jpg")
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)).save(
        tmp_path / "val2017" / "broken.jpg"
    )
    data = (tmp_path / "val2017" / "broken.jpg").read_bytes()
    (tmp_path / "val2017" / "broken.jpg").write_bytes(data[: len(data) // 3])
    ds = cap.coco_captions(tmp_path, "val")
    with pytest.raises(tf.errors.OpError, match="broken.jpg' could not be decoded"):
        list(ds)


# --- Flickr8k ---------------------------------------------------------------

_FLICKR = ["1000_aa.jpg", "2000_bb.jpg", "3000_cc.jpg", "4000_dd.jpg"]


def _flickr_tree(root, text_dir=""):
    images = root / "Flicker8k_Dataset"
    images.mkdir()
    for i, name in enumerate(_FLICKR[:3]):  # 4000_dd.jpg is listed but absent
        _jpeg(images / name, size=(10 + i, 8), value=40 * i)
    text = root / text_dir if text_dir else root
    text.mkdir(exist_ok=True)
    lines = []
    for name in _FLICKR + ["9999_zz.jpg"]:
        for k in (2, 0, 1):  # out of order on purpose
            lines.append(f"{name}#{k}\t{name[:4]} caption {k} .")
    (text / "Flickr8k.token.txt").write_text("\n".join(lines) + "\n\n")
    (text / "Flickr_8k.trainImages.txt").write_text("1000_aa.jpg\n2000_bb.jpg\n4000_dd.jpg\n")
    (text / "Flickr_8k.devImages.txt").write_text("3000_cc.jpg\n")
    (text / "Flickr_8k.testImages.txt").write_text("2000_bb.jpg\n")


@pytest.mark.parametrize("text_dir", ["", "Flickr8k_text"])
def test_flickr8k_tmp_tree(tmp_path, text_dir):
    _flickr_tree(tmp_path, text_dir)
    with pytest.warns(UserWarning, match="1 of 3 images .* are skipped .*4000_dd.jpg"):
        ds = cap.flickr8k_captions(tmp_path, "train")
    out = list(ds.as_numpy_iterator())
    assert [ex["image_id"] for ex in out] == [1000, 2000]
    assert out[0]["captions"].tolist() == [
        b"1000 caption 0 .",
        b"1000 caption 1 .",
        b"1000 caption 2 .",
    ]
    assert out[1]["images"].shape == (11, 8, 3) and out[1]["images"].dtype == np.uint8
    assert ds.element_spec == {
        "images": tf.TensorSpec([None, None, 3], tf.uint8),
        "captions": tf.TensorSpec([None], tf.string),
        "image_id": tf.TensorSpec([], tf.int64),
    }
    dev = list(cap.flickr8k_captions(tmp_path, "val").as_numpy_iterator())
    assert [ex["image_id"] for ex in dev] == [3000]


def test_flickr8k_errors(tmp_path):
    with pytest.raises(ValueError, match="split must be one of"):
        cap.flickr8k_captions(tmp_path, "holdout")
    with pytest.raises(ValueError, match="Flickr8k.token.txt' is in neither"):
        cap.flickr8k_captions(tmp_path, "train")
    _flickr_tree(tmp_path)
    (tmp_path / "Flickr8k.token.txt").write_text("1000_aa.jpg#0\tok\n1000_aa.jpg no tab\n")
    with pytest.raises(ValueError, match="line 2 is not 'name.jpg#k<TAB>caption'"):
        cap.flickr8k_captions(tmp_path, "test")


def test_flickr8k_uncaptioned_images_warn(tmp_path):
    _flickr_tree(tmp_path)
    (tmp_path / "Flickr_8k.testImages.txt").write_text("2000_bb.jpg\n5555_xx.jpg\n")
    with pytest.warns(UserWarning, match="1 of 2 images .* have no caption"):
        ds = cap.flickr8k_captions(tmp_path, "test")
    assert int(ds.cardinality()) == 1


# --- Shapes -----------------------------------------------------------------


def test_shapes_captions_keep_generator_annotations():
    data = shapes.generate_shapes(6, 32, seed=3)
    ds = cap.shapes_captions(6, image_size=32, seed=3)
    out = list(ds.as_numpy_iterator())
    assert len(out) == 6
    for i, ex in enumerate(out):
        assert ex["image_id"] == i
        assert ex["captions"].tolist() == [data["captions"][i].encode()]
        np.testing.assert_array_equal(ex["images"], data["images"][i])
        np.testing.assert_array_equal(ex["instance_masks"], data["instance_masks"][i])
        np.testing.assert_array_equal(ex["segmentation_masks"], data["segmentation_masks"][i])
        np.testing.assert_array_equal(ex["bounding_boxes"]["labels"], data["labels"][i])
        assert ex["num_instances"] == data["num_instances"][i]


def test_shapes_caption_objects_name_what_the_caption_says():
    for ex in cap.shapes_captions(8, image_size=40, seed=1).as_numpy_iterator():
        objects = cap.shapes_caption_objects(ex)
        caption = ex["captions"][0].decode()
        assert len(objects["names"]) == ex["num_instances"] == objects["masks"].shape[0]
        named = [f"a {c} {n}" for c, n in zip(objects["colors"], objects["names"])]
        # The caption names the instances in order.
        positions = [caption.index(phrase) for phrase in named]
        assert positions == sorted(positions)


def test_shapes_caption_objects_errors():
    with pytest.raises(ValueError, match="instance_masks"):
        cap.shapes_caption_objects({"images": np.zeros((4, 4, 3))})


# --- load_caption_dataset ---------------------------------------------------


def test_load_caption_dataset_specs(shared_data):
    train, info = cap.load_caption_dataset("shapes", "train", num_images=3, image_size=32)
    val, _ = cap.load_caption_dataset("shapes", "val", num_images=3, image_size=32)
    assert info == cap.CaptionDatasetInfo(3, None, ("circle", "square", "triangle"))
    a = next(iter(train))["images"].numpy()
    b = next(iter(val))["images"].numpy()
    assert not np.array_equal(a, b)
    root = _coco_root(shared_data)
    coco, info = cap.load_caption_dataset(f"coco:{root}", "val")
    assert int(coco.cardinality()) == 79
    assert info == cap.CaptionDatasetInfo(
        79, os.path.join(root, "annotations", "captions_val2017.json")
    )
    with pytest.raises(
        ValueError, match="Unknown captions dataset spec 'voc:x'.*'flickr8k:<root>'"
    ):
        cap.load_caption_dataset("voc:x")
    with pytest.raises(ValueError, match="spec must be a string"):
        cap.load_caption_dataset(3)
    with pytest.raises(ValueError, match=r"Unexpected option \['num_images'\].*'coco:/x'"):
        cap.load_caption_dataset("coco:/x", num_images=3)
    with pytest.raises(ValueError, match="split for 'shapes'"):
        cap.load_caption_dataset("shapes", "restval")


def test_load_caption_dataset_flickr(tmp_path):
    _flickr_tree(tmp_path)
    ds, info = cap.load_caption_dataset(f"flickr8k:{tmp_path}", "dev")
    assert int(ds.cardinality()) == 1 and info.num_images == 1
    assert os.path.basename(info.annotation_file) == "Flickr8k.token.txt"


def test_tfds_offline_failure_is_clear(tmp_path):
    pytest.importorskip("tensorflow_datasets")
    with pytest.raises(RuntimeError, match="Could not load tfds dataset 'coco_captions'.*offline"):
        cap.load_caption_dataset(
            "tfds:coco_captions", "val", data_dir=str(tmp_path), download=False
        )
    with pytest.raises(ValueError, match="name must be 'coco_captions'"):
        cap.load_caption_dataset("tfds:voc")


# --- Vocabulary -------------------------------------------------------------

_CAPTIONS = ["A red circle.", "a blue square", "A RED square, left of a circle!"]


def test_vocabulary_build_order_and_specials():
    vocab = cap.CaptionVocabulary.build(_CAPTIONS)
    assert vocab.words[:4] == ["<pad>", "<unk>", "<start>", "<end>"]
    # a x4; circle, red, square x2 (alphabetical); blue, left, of x1.
    assert vocab.words[4:] == ["a", "circle", "red", "square", "blue", "left", "of"]
    assert (vocab.pad_id, vocab.unk_id, vocab.start_id, vocab.end_id) == (0, 1, 2, 3)
    assert len(vocab) == vocab.size == 11
    assert cap.CaptionVocabulary.build(_CAPTIONS, min_count=2).words[4:] == [
        "a",
        "circle",
        "red",
        "square",
    ]
    assert cap.CaptionVocabulary.build(_CAPTIONS, max_tokens=6).words[4:] == ["a", "circle"]


def test_vocabulary_encode_decode_round_trip():
    vocab = cap.CaptionVocabulary.build(_CAPTIONS)
    ids = vocab.encode(["A blue circle.", "a red square left of a circle"], max_length=8)
    assert ids.dtype == tf.int32
    assert ids.numpy().tolist() == [
        [2, 4, 8, 5, 3, 0, 0, 0],
        [2, 4, 6, 7, 9, 10, 4, 3],  # truncated, <end> kept
    ]
    assert vocab.decode(ids) == ["a blue circle", "a red square left of a"]
    single = vocab.encode("a green circle", max_length=5)
    assert single.numpy().tolist() == [2, 4, 1, 5, 3]
    assert vocab.decode(single) == "a <unk> circle"
    # Reading stops at <end>, ignoring what follows.
    assert vocab.decode(np.array([2, 4, 5, 3, 6, 6])) == "a circle"


def test_vocabulary_save_load_and_config(tmp_path):
    vocab = cap.CaptionVocabulary.build(_CAPTIONS)
    config = vocab.get_config()
    assert json.loads(json.dumps(config)) == config == {"words": vocab.words}
    assert cap.CaptionVocabulary.from_config(config).words == vocab.words
    path = tmp_path / "vocab.json"
    vocab.save(path)
    loaded = cap.CaptionVocabulary.load(path)
    assert loaded.words == vocab.words
    np.testing.assert_array_equal(
        loaded.encode(_CAPTIONS, 10).numpy(), vocab.encode(_CAPTIONS, 10).numpy()
    )


def test_vocabulary_errors(tmp_path):
    with pytest.raises(ValueError, match="1 empty caption.*index 1: '...'"):
        cap.CaptionVocabulary.build(["a circle", "..."])
    with pytest.raises(ValueError, match="captions is empty"):
        cap.CaptionVocabulary.build([])
    with pytest.raises(ValueError, match="max_tokens must be"):
        cap.CaptionVocabulary.build(_CAPTIONS, max_tokens=4)
    with pytest.raises(ValueError, match="min_count must be"):
        cap.CaptionVocabulary.build(_CAPTIONS, min_count=0)
    with pytest.raises(ValueError, match="captions must hold strings"):
        cap.CaptionVocabulary.build(["a", 3])
    vocab = cap.CaptionVocabulary.build(_CAPTIONS)
    with pytest.raises(ValueError, match="empty caption.*index 1"):
        vocab.encode(["a circle", "  "], max_length=5)
    unknown = vocab.encode(["Xylophones.", "green circle"], max_length=5).numpy()
    assert unknown[0].tolist() == [vocab.start_id, vocab.unk_id, vocab.end_id, 0, 0]
    assert unknown[1][1] == vocab.unk_id  # unknown words become <unk>, not an error
    with pytest.raises(ValueError, match="max_length must be an int >= 3"):
        vocab.encode(["a circle"], max_length=2)
    with pytest.raises(ValueError, match=r"ids holds \[-1, 11\], out of range .* 0..10"):
        vocab.decode([[2, 11, -1]])
    with pytest.raises(ValueError, match="ids must be integers"):
        vocab.decode([2.0, 4.0])
    with pytest.raises(ValueError, match="must start with the special tokens"):
        cap.CaptionVocabulary(["a", "b"])
    with pytest.raises(ValueError, match="words must be unique"):
        cap.CaptionVocabulary(list(cap.SPECIAL_TOKENS) + ["a", "a"])
    with pytest.raises(ValueError, match="does not exist"):
        cap.CaptionVocabulary.load(tmp_path / "none.json")
    (tmp_path / "bad.json").write_text('{"vocab": []}')
    with pytest.raises(ValueError, match="bad.json' is not a saved CaptionVocabulary"):
        cap.CaptionVocabulary.load(tmp_path / "bad.json")


def test_vocabulary_encode_in_graph_asserts():
    vocab = cap.CaptionVocabulary.build(_CAPTIONS)
    ds = tf.data.Dataset.from_tensor_slices(["a circle", "..."]).map(
        lambda c: vocab.encode(c, max_length=5)
    )
    with pytest.raises(tf.errors.InvalidArgumentError, match="a caption is empty"):
        list(ds)


def test_pipeline_skips_empty_captions_naming_the_image():
    vocab = cap.CaptionVocabulary.build(_CAPTIONS)
    images = np.zeros((2, 8, 8, 3), np.uint8)
    data = tf.data.Dataset.from_tensor_slices(
        {"images": images, "captions": [["a circle", "..."], ["!", ""]], "image_id": [7, 8]}
    )
    with pytest.warns(UserWarning) as caught:
        batches = list(
            cap.caption_pipeline(
                data, vocab, 4, image_size=None, max_length=5, one_caption_per_image="all"
            )
        )
    messages = " ".join(str(w.message) for w in caught)
    assert "image_id 7 has 1 empty caption" in messages and "image_id 8 has 2" in messages
    (_, input_ids), _ = batches[0]
    assert input_ids.shape[0] == 1  # only "a circle" is left; image 8 has no caption left


# --- caption_pipeline -------------------------------------------------------


def _toy_dataset():
    """Three 8x10 images with 2, 3 and 1 captions; pixel value = image index."""
    captions = [["a red circle", "a circle"], ["a blue square", "a square", "blue"], ["red"]]
    images = np.stack([np.full((8, 10, 3), 50 * i, np.uint8) for i in range(3)])
    return tf.data.Dataset.from_tensor_slices(
        {
            "images": images,
            "captions": tf.ragged.constant(captions),
            "image_id": np.arange(3, dtype=np.int64),
        }
    ).map(lambda ex: ex), captions  # the map turns the ragged rows into dense tensors


def test_caption_pipeline_all_captions_shift_and_shapes():
    ds, captions = _toy_dataset()
    vocab = cap.CaptionVocabulary.build(captions)
    batches = list(
        cap.caption_pipeline(
            ds, vocab, 4, (6, 5), 6, one_caption_per_image="all"
        ).as_numpy_iterator()
    )
    assert [b[1].shape for b in batches] == [(4, 5), (2, 5)]
    images = np.concatenate([b[0][0] for b in batches])
    inputs = np.concatenate([b[0][1] for b in batches])
    targets = np.concatenate([b[1] for b in batches])
    assert images.shape == (6, 6, 5, 3) and images.dtype == np.uint8
    assert images[:, 0, 0, 0].tolist() == [0, 0, 50, 50, 50, 100]
    assert inputs.dtype == targets.dtype == np.int32
    full = vocab.encode([c for per_image in captions for c in per_image], 6).numpy()
    np.testing.assert_array_equal(inputs, full[:, :-1])
    np.testing.assert_array_equal(targets, full[:, 1:])
    assert (inputs[:, 0] == vocab.start_id).all()


def test_caption_pipeline_random_caption_changes_per_epoch():
    ds, captions = _toy_dataset()
    ds = ds.repeat(8)  # 24 images, so a fixed choice would be very unlikely
    vocab = cap.CaptionVocabulary.build(captions)
    pipeline = cap.caption_pipeline(ds, vocab, 5, None, 6, shuffle=10, seed=1)
    epochs = []
    for _ in range(2):
        texts = []
        for (images, inputs), targets in pipeline.as_numpy_iterator():
            assert images.shape[1:] == (8, 10, 3)
            np.testing.assert_array_equal(inputs[:, 1:], targets[:, :-1])
            for image, text in zip(images, vocab.decode(targets)):
                assert text in captions[image[0, 0, 0] // 50]
                texts.append(text)
        assert len(texts) == 24
        epochs.append(texts)
    assert epochs[0] != epochs[1]
    # The same seed gives the same sequence of epochs.
    rebuilt = cap.caption_pipeline(ds, vocab, 5, None, 6, shuffle=10, seed=1)
    first = [text for _, t in rebuilt.as_numpy_iterator() for text in vocab.decode(t)]
    assert first == epochs[0]


def test_caption_pipeline_on_shapes_and_coco(shared_data):
    ds = cap.shapes_captions(5, image_size=32)
    vocab = cap.CaptionVocabulary.build(ds)
    (images, inputs), targets = next(iter(cap.caption_pipeline(ds, vocab, 8, 16, 20)))
    assert images.shape == (5, 16, 16, 3) and inputs.shape == targets.shape == (5, 19)
    coco = cap.coco_captions(_coco_root(shared_data), "val").take(3)
    vocab = cap.CaptionVocabulary.build(
        [c for v in cap.caption_references(coco).values() for c in v]
    )
    pipeline = cap.caption_pipeline(coco, vocab, 16, 32, 12, one_caption_per_image="all")
    (images, inputs), targets = next(iter(pipeline))
    assert images.shape == (15, 32, 32, 3) and targets.shape == (15, 11)


def test_caption_pipeline_errors():
    ds, captions = _toy_dataset()
    vocab = cap.CaptionVocabulary.build(captions)
    with pytest.raises(ValueError, match="dataset must be a tf.data.Dataset"):
        cap.caption_pipeline([1], vocab, 2, 8, 6)
    with pytest.raises(ValueError, match="'images' and 'captions'"):
        cap.caption_pipeline(ds.map(lambda ex: {"images": ex["images"]}), vocab, 2, 8, 6)
    with pytest.raises(ValueError, match="vocabulary must be a CaptionVocabulary"):
        cap.caption_pipeline(ds, ["a"], 2, 8, 6)
    with pytest.raises(ValueError, match="batch_size must be"):
        cap.caption_pipeline(ds, vocab, 0, 8, 6)
    with pytest.raises(ValueError, match="max_length must be"):
        cap.caption_pipeline(ds, vocab, 2, 8, 2)
    with pytest.raises(ValueError, match="image_size must be"):
        cap.caption_pipeline(ds, vocab, 2, (8,), 6)
    with pytest.raises(ValueError, match="one_caption_per_image must be"):
        cap.caption_pipeline(ds, vocab, 2, 8, 6, one_caption_per_image="first")
    with pytest.raises(ValueError, match="shuffle must be"):
        cap.caption_pipeline(ds, vocab, 2, 8, 6, shuffle=-1)
    varying = ds.map(
        lambda ex: {**ex, "images": ex["images"][: 4 + tf.cast(ex["image_id"], tf.int32)]}
    )
    with pytest.raises(ValueError, match="image_size=None needs images of one static size"):
        cap.caption_pipeline(varying, vocab, 2, None, 6)
