"""The recipes' configs: the one source of the command line and `run.json`."""

import dataclasses
import json

import pytest

from keras_segattn.cli import build_parser
from keras_segattn.recipes.captioning import CaptionerConfig
from keras_segattn.recipes.config import RecipeConfig, parse_key_values
from keras_segattn.recipes.instance import InstanceConfig
from keras_segattn.recipes.runs import RunFolder
from keras_segattn.recipes.semantic import SegmenterConfig

CONFIGS = {
    "train": SegmenterConfig,
    "caption-train": CaptionerConfig,
    "instance-train": InstanceConfig,
}


def parse(command, *flags):
    return build_parser().parse_args([command, *flags])


@pytest.mark.parametrize("command", sorted(CONFIGS))
def test_the_command_line_is_the_config(command):
    config_class = CONFIGS[command]
    args = parse(command)
    # Every field has its flag, with the config's default.
    assert config_class.from_arguments(args) == config_class()
    help_text = build_parser()._subparsers._group_actions[0].choices[command].format_help()
    for field in dataclasses.fields(config_class):
        flag = field.metadata.get("flag") or "--" + field.name.replace("_", "-")
        assert flag in help_text, flag


def test_every_recipe_command_takes_the_shared_fields():
    args = parse("stn-table", "--strategy", "mirrored", "--mixed-precision", "bfloat16")
    assert (args.strategy, args.mixed_precision, args.seed, args.verbose) == (
        "mirrored",
        "bfloat16",
        0,
        2,
    )
    args = parse("instance-train", "--model", "sds", "--schedule", "step", "--model-arg", "a=1")
    config = InstanceConfig.from_arguments(args)
    assert (config.model, config.schedule, config.model_kwargs) == ("sds", "step", {"a": 1})
    assert config.epochs is None and config.verbose == 2  # the trainer's epochs
    with pytest.raises(SystemExit):
        parse("instance-train", "--model", "fcn8s")  # only the models it can train


def test_train_instances_names_what_it_cannot_train(tmp_path):
    from keras_segattn.recipes.instance import train_instances

    with pytest.raises(ValueError, match="'fcn8s' is a semantic model"):
        train_instances("fcn8s", output=str(tmp_path / "x"))
    assert not (tmp_path / "x").exists()


def test_flags_become_typed_fields():
    flags = ["--image-size", "32", "48", "--model-arg", "instances=2", "--model-arg", "name=x"]
    args = parse("train", *flags, "--weights", "none", "--augment", "--epochs", "3")
    config = SegmenterConfig.from_arguments(args)
    assert config.image_size == (32, 48) and config.epochs == 3 and config.augment
    assert config.model_kwargs == {"instances": 2, "name": "x"} and config.weights is None
    with pytest.raises(SystemExit):
        parse("train", "--schedule", "linear")  # choices come from the config


def test_a_recipe_takes_its_config_by_position_keyword_or_object():
    made = SegmenterConfig.make("deconvnet", "camvid:x", epochs=2)
    assert (made.model, made.data, made.epochs) == ("deconvnet", "camvid:x", 2)
    assert SegmenterConfig.make(made, epochs=5).epochs == 5 and made.epochs == 2
    with pytest.raises(TypeError, match="unexpected arguments \\['epoch'\\]"):
        SegmenterConfig.make(epoch=2)
    with pytest.raises(TypeError, match="given both by position and by keyword"):
        SegmenterConfig.make("fcn8s", model="fcn16s")
    with pytest.raises(TypeError, match="takes 3 positional fields"):
        SegmenterConfig.make("a", "b", "c", "d")


def test_key_values_are_literals_or_text():
    assert parse_key_values(["a=1", "b=[1, 2]", "c=text"]) == {"a": 1, "b": [1, 2], "c": "text"}
    with pytest.raises(ValueError, match="--model-arg expects KEY=VALUE"):
        parse_key_values(["nokey"])


def test_a_run_folder_of_an_earlier_version_resumes(tmp_path):
    """A `run.json` written by the command line before the configs (the
    command's name, `--model-arg` as a list) and before a field existed
    resumes under the same arguments; another value is still refused."""
    config = SegmenterConfig(model="recurrent_cnn", model_kwargs={"instances": 2}, epochs=3)
    old = {k: v for k, v in config.record().items() if k not in ("model_kwargs", "schedule")}
    old.update(command="train", model_arg=["instances=2"], func=None, overwrite=False)
    (tmp_path / "run.json").write_text(json.dumps(old))
    run = RunFolder(tmp_path)
    assert run.start(config.record(), config_class=SegmenterConfig) is None  # resumes
    (tmp_path / "run.json").write_text(json.dumps(old))
    other = config.replace(schedule="cosine")  # not the default an old run meant
    with pytest.raises(ValueError, match="schedule: not recorded -> 'cosine'"):
        RunFolder(tmp_path).start(other.record(), config_class=SegmenterConfig)


def test_the_folder_name_is_not_a_run_argument(tmp_path):
    config = SegmenterConfig(output=str(tmp_path))
    RunFolder(tmp_path).start(config.record(), config_class=SegmenterConfig)
    moved = config.replace(output=f"./{tmp_path}/")
    assert RunFolder(tmp_path).start(moved.record(), config_class=SegmenterConfig) is None


def test_every_recipe_config_shares_the_training_fields():
    shared = {f.name for f in dataclasses.fields(RecipeConfig)}
    for config_class in CONFIGS.values():
        assert shared <= {f.name for f in dataclasses.fields(config_class)}


def test_a_builder_argument_with_a_flag_of_its_own_is_named(tmp_path):
    from keras_segattn.recipes.semantic import train_segmenter

    with pytest.raises(ValueError, match=r"sets 'width': use width= \(--width\) instead"):
        train_segmenter(model_kwargs={"width": 0.5}, output=str(tmp_path / "x"))
    with pytest.raises(ValueError, match="sets 'num_classes': it is the dataset's"):
        train_segmenter(model_kwargs={"num_classes": 3}, output=str(tmp_path / "x"))
    assert not (tmp_path / "x").exists()


def test_the_demo_asks_for_a_valid_run(monkeypatch):
    """`make demo` (the README's main job) passes its arguments through the
    same checks as any caller of `train_segmenter`."""
    from keras_segattn.recipes import demo, semantic

    seen = {}

    def checked(*args, **kwargs):
        config = semantic.SegmenterConfig.make(*args, **kwargs)
        semantic._check_model_kwargs(config.model_kwargs)
        seen["config"] = config
        raise KeyboardInterrupt  # stop before training

    monkeypatch.setattr(demo, "train_segmenter", checked)
    with pytest.raises(KeyboardInterrupt):
        demo.run_demo(quick=True)
    assert seen["config"].batch_norm and seen["config"].width == 0.25


def _command_line(options_class):
    """The fewest flags `options_class`'s command accepts: a value for each
    required field."""
    flags = []
    for field in dataclasses.fields(options_class):
        if field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            flag = field.metadata.get("flag") or "--" + field.name.replace("_", "-")
            flags += [flag, "x"] if flag.startswith("-") else ["x"]
    return flags


def test_every_command_line_is_made_of_its_options():
    """Every `segattn` command, training or not: its arguments are exactly
    its options' fields (plus --overwrite for training), and parsing the
    fewest flags gives the options' defaults."""
    from keras_segattn.cli import commands

    subparsers = build_parser()._subparsers._group_actions[0].choices
    for command in commands():
        fields = {f.name for f in dataclasses.fields(command.options) if f.metadata.get("cli", 1)}
        actions = {a.dest for a in subparsers[command.name]._actions} - {"help"}
        assert actions == fields | ({"overwrite"} if command.trains else set()), command.name
        flags = _command_line(command.options)
        options = command.options.from_arguments(parse(command.name, *flags))
        required = {k: getattr(options, k) for k in fields - set(command.options.defaults())}
        assert options == command.options(**required), command.name


def test_every_training_command_takes_the_run_options():
    """What every task's run gets: a schedule, a strategy, mixed precision
    and deterministic kernels, whichever command trains it."""
    from keras_segattn.cli import commands

    subparsers = build_parser()._subparsers._group_actions[0].choices
    trained = [c for c in commands() if c.trains or issubclass(c.options, RecipeConfig)]
    assert {c.name for c in trained} >= {"train", "instance-train", "caption-train", "stn-table"}
    for command in trained:
        flags = {f for a in subparsers[command.name]._actions for f in a.option_strings}
        for flag in ("--schedule", "--strategy", "--mixed-precision", "--deterministic", "--seed"):
            assert flag in flags, (command.name, flag)
