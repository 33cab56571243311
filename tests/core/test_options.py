"""`core.options`: a dataclass as the one source of a command's arguments."""

import argparse
import dataclasses

import pytest

from keras_segattn.core.options import REQUIRED, Options, add_arguments, option


@dataclasses.dataclass(kw_only=True)
class Base(Options):
    seed: int = option(0, "a shared field")


@dataclasses.dataclass(kw_only=True)
class Example(Base):
    folder: str = option(REQUIRED, "a positional argument", flag="folder")
    model_path: str = option(REQUIRED, "a required flag")
    size: tuple | None = option(None, "H W", nargs=2)
    kinds: list = option(["a"], "several choices", choices=["a", "b"], nargs="*")
    names: list = option(REQUIRED, "several texts")
    extra: dict = option({}, "KEY=VALUE pairs")
    switch: bool = option(False, "a switch", flag="--on")
    hidden: float = option(1.5, "Python only", cli=False)


def parser():
    return add_arguments(argparse.ArgumentParser(exit_on_error=False), Example)


def parse(*flags):
    return Example.from_arguments(parser().parse_args(flags))


def test_the_fields_become_the_command_line():
    options = parse("here", "--model-path", "m.keras", "--names", "x", "y")
    assert options == Example(folder="here", model_path="m.keras", names=["x", "y"])
    options = parse(
        "here",
        "--model-path=m",
        "--names=x",
        "--size",
        "3",
        "4",
        "--kinds",
        "b",
        "a",
        "--extra",
        "n=3",
        "--extra",
        "t=text",
        "--on",
        "--seed",
        "7",
    )
    assert options.size == (3, 4) and options.kinds == ["b", "a"]
    assert options.extra == {"n": 3, "t": "text"} and options.switch and options.seed == 7
    assert options.hidden == 1.5  # not on the command line: its default


def test_required_fields_choices_and_counts_are_enforced():
    for flags in [
        ("here", "--names", "x"),  # --model-path missing
        ("--model-path", "m", "--names", "x"),  # the positional folder missing
        ("here", "--model-path", "m", "--names", "x", "--kinds", "c"),
        ("here", "--model-path", "m", "--names", "x", "--size", "3"),
    ]:
        with pytest.raises((SystemExit, argparse.ArgumentError)):
            parser().parse_args(flags)
    with pytest.raises(TypeError, match="model_path"):
        Example(folder="x", names=[])


def test_defaults_are_copied_and_inherited_fields_come_last():
    first, second = Example.defaults(), Example.defaults()
    assert "model_path" not in first and first["kinds"] == ["a"]
    first["kinds"].append("b")
    assert second["kinds"] == ["a"] and Example(folder="f", model_path="m", names=[]).kinds == ["a"]
    flags = [a.option_strings[0] if a.option_strings else a.dest for a in parser()._actions]
    assert flags[-1] == "--seed" and flags.index("folder") < flags.index("--seed")


def test_fields_leave_out_what_the_called_function_does_not_take():
    options = Example(folder="f", model_path="m", names=["n"])
    assert options.fields("folder", "seed") == {"folder": "f", "seed": 0}
    assert "model_path" not in options.fields(leave_out=("model_path",))
