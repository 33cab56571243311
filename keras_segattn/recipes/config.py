"""One config per recipe: the single source of its arguments.

A recipe's config is a dataclass whose fields are the recipe's arguments,
each with its default and its help text (`option`). Everything else is made
from it:

- the command line: `add_arguments(parser, Config)` adds one `--flag` per
  field (type, choices and help from the field), `Config.from_arguments`
  reads them back;
- `run.json`: `config.record()`, the fields by name;
- resuming: a `run.json` written before a field existed is compared with
  that field at its default (`Config.defaults()`, given to
  `RunFolder.start`), so old run folders resume without a shim per field.

The recipes take the config or its fields as keywords:

```python
train_segmenter(model="fcn8s", data="shapes", epochs=3)
train_segmenter(SegmenterConfig(model="fcn8s", epochs=3))
```
"""

import ast
import dataclasses
import types
import typing

from keras_segattn.core.validation import optional_size

STRATEGIES = ("auto", "default", "mirrored", "multi-worker", "tpu")
PRECISIONS = ("float16", "bfloat16")


def option(default, help, *, choices=None, metavar=None, flag=None, parse=None, cli=True):
    """A config field: its default, its help text and how the command line
    spells it.

    Args:
        default: the default; a dict or list default is copied per config.
        help: str. One line for `--help`.
        choices: the accepted values, or `None`.
        metavar: str or `None`. How `--help` names the value.
        flag: str or `None`. The flag; defaults to `--<name with dashes>`.
        parse: callable or `None`. Reads the flag's text (default: the
            field's type).
        cli: bool. Whether the command line has it (`False` for Python-only
            arguments, e.g. an array of class weights).
    """
    metadata = {
        "help": help,
        "choices": choices,
        "metavar": metavar,
        "flag": flag,
        "parse": parse,
        "cli": cli,
    }
    if isinstance(default, (dict, list)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def parse_key_values(pairs, flag="--model-arg"):
    """`KEY=VALUE` strings as a dict; values are Python literals or strings."""
    parsed = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.isidentifier():
            raise ValueError(f"{flag} expects KEY=VALUE, e.g. instances=3; got {pair!r}.")
        try:
            parsed[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            parsed[key] = value
    return parsed


def none_or_text(text):
    """The text of a flag, `None` for "none"."""
    return None if text.lower() == "none" else text


def _value_type(annotation):
    """The type of a field's values, `None` left out of an optional one."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        kinds = [a for a in typing.get_args(annotation) if a is not type(None)]
        return kinds[0]
    return annotation


@dataclasses.dataclass
class RecipeConfig:
    """Fields every training recipe has."""

    seed: int = option(0, "seeds the weights, the data order and the augmentation")
    verbose: int = option(1, "1 a progress bar, 2 one line an epoch, 0 silent")
    strategy: str = option(
        "auto",
        "where to train: auto picks a TPU if attached, the $TF_CONFIG cluster if it has "
        "several workers, all GPUs if several, else one device; --batch-size is the global batch",
        choices=STRATEGIES,
    )
    mixed_precision: str | None = option(
        None,
        "compute in float16 (GPUs, with loss scaling) or bfloat16 (TPUs, recent GPUs); "
        "variables and outputs stay float32",
        choices=PRECISIONS,
    )
    deterministic: bool = option(
        False,
        "bit-identical runs: TensorFlow's deterministic kernels, seeded by --seed (slower; a run "
        "killed and resumed ends with the same weights as one never interrupted)",
    )

    # The fields a recipe also takes by position, in order (its first ones).
    POSITIONAL = ()

    @classmethod
    def make(cls, *args, **arguments):
        """The config a recipe was called with: a `cls` (changed by any
        keyword `arguments`), or one made of the fields given by position
        (`POSITIONAL`) and by keyword. A keyword that is not a field is
        named."""
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(arguments) - set(names))
        if unknown:
            raise TypeError(
                f"unexpected arguments {unknown}; {cls.__name__} has {', '.join(sorted(names))}."
            )
        if len(args) == 1 and isinstance(args[0], cls):
            return dataclasses.replace(args[0], **arguments)
        if len(args) > len(cls.POSITIONAL):
            raise TypeError(
                f"{cls.__name__} takes {len(cls.POSITIONAL)} positional fields "
                f"({', '.join(cls.POSITIONAL)}), or a {cls.__name__}; got {len(args)}."
            )
        given = dict(zip(cls.POSITIONAL, args))
        twice = sorted(set(given) & set(arguments))
        if twice:
            raise TypeError(f"{twice} given both by position and by keyword.")
        return cls(**given, **arguments)

    @classmethod
    def defaults(cls):
        """`{field: default}`: what a `run.json` without the field meant."""
        return {f.name: cls().__getattribute__(f.name) for f in dataclasses.fields(cls)}

    @classmethod
    def upgrade(cls, record):
        """A `run.json` record of an earlier version, in this version's field
        names (run folders from before the configs recorded the command
        line: `command` and `--model-arg`'s list). Returns a new dict."""
        record = {k: v for k, v in record.items() if k != "command"}
        if "model_arg" in record and "model_kwargs" not in record:
            record["model_kwargs"] = parse_key_values(record.pop("model_arg"))
        return record

    def record(self):
        """The fields as `run.json` records them (a strategy by its name)."""
        from keras_segattn.recipes.distribute import strategy_name

        record = {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}
        return {**record, "strategy": strategy_name(self.strategy)}

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_arguments(cls, args):
        """The config of parsed command-line arguments (`add_arguments`)."""
        values = {}
        for field in dataclasses.fields(cls):
            if not field.metadata.get("cli", True):
                continue
            value = getattr(args, field.name)
            kind = _value_type(field.type)
            if kind is dict:
                value = parse_key_values(value)
            elif kind is tuple and value is not None:
                value = tuple(value)
            values[field.name] = value
        return cls(**values)


def add_arguments(parser, config_class, **defaults):
    """Adds a `--flag` for every command-line field of `config_class`:
    `bool` fields are switches, `tuple` ones take several values (`H [W]`
    sizes), `dict` ones repeat `KEY=VALUE`. `defaults` override the
    config's defaults on this command. The recipe's own fields come
    first, those every recipe shares (`RecipeConfig`) after them."""
    shared = {field.name for field in dataclasses.fields(RecipeConfig)}
    fields = sorted(dataclasses.fields(config_class), key=lambda f: f.name in shared)
    for field in fields:
        meta = field.metadata
        if not meta.get("cli", True):
            continue
        flag = meta.get("flag") or "--" + field.name.replace("_", "-")
        default = defaults.get(field.name, config_class.defaults()[field.name])
        kind = _value_type(field.type)
        kwargs = {"help": meta["help"], "dest": field.name}
        if kind is bool:
            parser.add_argument(flag, action="store_true", **kwargs)
            continue
        if kind is dict:
            kwargs.update(action="append", metavar=meta.get("metavar") or "KEY=VALUE")
            parser.add_argument(flag, **kwargs)
            continue
        if kind is tuple:
            kwargs.update(type=int, nargs="+")
        else:
            kwargs["type"] = meta.get("parse") or kind
        if meta.get("choices"):
            kwargs["choices"] = meta["choices"]
        if meta.get("metavar"):
            kwargs["metavar"] = meta["metavar"]
        parser.add_argument(flag, default=default, **kwargs)
    return parser


def sizes(config, *names):
    """The `(height, width)` of each size field named, checked."""
    return [optional_size(getattr(config, name), name) for name in names]
