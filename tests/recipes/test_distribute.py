import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_segattn.cli import build_parser
from keras_segattn.recipes.distribute import (
    DETERMINISM_HINT,
    MIXED_PRECISIONS,
    STRATEGIES,
    cluster_from_environment,
    is_chief,
    make_strategy,
    mixed_precision_policy,
    training_context,
)
from keras_segattn.recipes.semantic import train_segmenter


def test_auto_is_the_default_strategy_on_one_cpu(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    strategy = make_strategy("auto")
    assert strategy is tf.distribute.get_strategy() and is_chief(strategy)
    assert isinstance(make_strategy("mirrored"), tf.distribute.MirroredStrategy)
    assert make_strategy(strategy) is strategy  # a strategy passes through


def test_auto_picks_a_tpu_when_one_is_attached(monkeypatch):
    from keras_segattn.recipes import distribute

    monkeypatch.delenv("TF_CONFIG", raising=False)
    monkeypatch.setenv("TPU_NAME", "grpc://10.0.0.2:8470")
    calls = []

    class Resolver:
        def __init__(self, tpu):
            calls.append(("resolver", tpu))

    class FakeTPUStrategy:
        def __init__(self, resolver):
            calls.append(("strategy", type(resolver).__name__))

    monkeypatch.setattr(distribute, "_tpu_attached", lambda: True)
    monkeypatch.setattr(tf.distribute.cluster_resolver, "TPUClusterResolver", Resolver)
    monkeypatch.setattr(tf.config, "experimental_connect_to_cluster", lambda _: calls.append(1))
    monkeypatch.setattr(tf.tpu.experimental, "initialize_tpu_system", lambda _: calls.append(2))
    monkeypatch.setattr(tf.distribute, "TPUStrategy", FakeTPUStrategy)
    assert isinstance(make_strategy("auto"), FakeTPUStrategy)
    assert calls == [("resolver", "grpc://10.0.0.2:8470"), 1, 2, ("strategy", "Resolver")]


@pytest.mark.parametrize("gpus, mirrored", [(2, True), (1, False)])
def test_auto_mirrors_over_several_gpus_only(monkeypatch, gpus, mirrored):
    from keras_segattn.recipes import distribute

    monkeypatch.delenv("TF_CONFIG", raising=False)
    monkeypatch.setattr(distribute, "_tpu_attached", lambda: False)
    real = tf.config.list_physical_devices
    devices = [f"/physical_device:GPU:{i}" for i in range(gpus)]

    def list_devices(kind=None):
        return devices if kind == "GPU" else real(kind)

    class FakeMirrored:  # no GPU is real here
        pass

    monkeypatch.setattr(tf.config, "list_physical_devices", list_devices)
    monkeypatch.setattr(tf.distribute, "MirroredStrategy", FakeMirrored)
    strategy = make_strategy("auto")
    assert isinstance(strategy, FakeMirrored) == mirrored
    assert mirrored or strategy is tf.distribute.get_strategy()


def test_bad_strategies_are_named(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    monkeypatch.delenv("COLAB_TPU_ADDR", raising=False)
    monkeypatch.delenv("TPU_NAME", raising=False)
    with pytest.raises(ValueError, match="strategy must be one of .*'gpu'"):
        make_strategy("gpu")
    with pytest.raises(ValueError, match="'multi-worker' needs \\$TF_CONFIG"):
        make_strategy("multi-worker")
    with pytest.raises(ValueError, match="'tpu' needs a TPU"):
        make_strategy("tpu")
    for text in ("{not json", '{"cluster": {"worker": "host:1"}}'):
        monkeypatch.setenv("TF_CONFIG", text)
        with pytest.raises(ValueError, match="TF_CONFIG must be JSON like"):
            cluster_from_environment()


def test_tf_config_is_read(monkeypatch):
    config = {"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 1}}
    monkeypatch.setenv("TF_CONFIG", json.dumps(config))
    assert cluster_from_environment() == (config["cluster"], config["task"])


def test_mixed_precision_policy_is_scoped():
    before = keras.config.dtype_policy().name
    with mixed_precision_policy("bfloat16"):
        assert keras.config.dtype_policy().name == "mixed_bfloat16"
    assert keras.config.dtype_policy().name == before
    with pytest.raises(ValueError, match="mixed_precision must be None or one of"):
        with mixed_precision_policy("float8"):
            pass
    with training_context("default", "float16") as strategy:
        assert keras.config.dtype_policy().name == "mixed_float16"
        assert tf.distribute.get_strategy() is strategy
    assert keras.config.dtype_policy().name == before


def op_determinism():
    from tensorflow.python.framework import config

    return config.is_op_determinism_enabled()


class UnseededNoise(keras.layers.Layer):
    """A stateful random op with no seed (TensorFlow's seed=0, seed2=0): it
    has no deterministic form, so TensorFlow refuses it under determinism."""

    def call(self, x):
        noise = tf.raw_ops.RandomUniform(shape=tf.shape(x), dtype=tf.float32, seed=0, seed2=0)
        return x + 0.0 * noise


def test_determinism_is_scoped_seeds_everything_and_names_what_it_refuses():
    assert not op_determinism()
    draws = []
    for _ in range(2):
        with training_context("default", seed=7, deterministic=True):
            assert op_determinism()
            draws.append((np.random.rand(), float(tf.random.uniform([])), keras.random.uniform([])))
    assert not op_determinism()
    assert draws[0][:2] == draws[1][:2] and float(draws[0][2]) == float(draws[1][2])

    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(1)(UnseededNoise()(inputs)))
    model.compile("sgd", "mse")
    data = (np.ones((4, 3), "float32"), np.ones((4, 1), "float32"))
    model.fit(*data, epochs=1, verbose=0)  # fine without determinism
    with pytest.raises(RuntimeError) as error:
        with training_context("default", seed=0, deterministic=True):
            model.fit(*data, epochs=1, verbose=0)
    message = str(error.value)
    assert message.startswith(DETERMINISM_HINT) and "unseeded_noise" in message, message
    assert message.endswith("When determinism is enabled, random ops must have a seed specified.")
    assert not op_determinism()


def test_every_training_command_takes_deterministic():
    parser = build_parser()
    for command in ("train", "caption-train", "instance-train", "stn-table"):
        assert parser.parse_args([command, "--deterministic"]).deterministic is True
        assert parser.parse_args([command]).deterministic is False


def test_training_commands_take_strategy_and_precision():
    parser = build_parser()
    train = next(
        a
        for a in parser._subparsers._group_actions[0].choices["train"]._actions
        if a.dest == "strategy"
    )
    assert tuple(train.choices) == STRATEGIES  # the CLI lists what make_strategy takes
    for command in ("train", "caption-train", "instance-train"):
        args = parser.parse_args(
            [command, "--strategy", "mirrored", "--mixed-precision", "bfloat16"]
        )
        assert (args.strategy, args.mixed_precision) == ("mirrored", "bfloat16")
        assert parser.parse_args([command]).strategy == "auto"
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "--mixed-precision", "float64"])
    for precision in MIXED_PRECISIONS:
        assert parser.parse_args(["train", "--mixed-precision", precision])


def test_train_segmenter_in_mixed_bfloat16(tmp_path):
    summary = train_segmenter(
        "fcn8s",
        "shapes",
        tmp_path / "run",
        epochs=1,
        batch_size=4,
        num_images=8,
        width=0.0625,
        mixed_precision="bfloat16",
        strategy=tf.distribute.MirroredStrategy(),
        verbose=0,
    )
    assert 0 <= summary["mean_iou"] <= 1
    assert keras.config.dtype_policy().name == "float32"  # restored
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["mixed_precision"] == "bfloat16" and run["strategy"] == "MirroredStrategy"
    best = keras.saving.load_model(tmp_path / "run" / "best.keras", compile=False)
    assert best.get_layer("block1_conv1").dtype_policy.name == "mixed_bfloat16"
    assert best.output.dtype == "float32"
