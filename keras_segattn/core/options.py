"""Options: a dataclass as the single source of a command's arguments.

A field made with `option` carries its default, its help text and how the
command line spells it. `add_arguments(parser, Options)` makes the command
line from the fields, `Options.from_arguments(args)` reads it back, and
`Options.defaults()` is what a field added later meant before it existed.
The recipes' configs (`keras_segattn.recipes.config.RecipeConfig`) and the
`segattn` commands that train nothing (`evaluate`, `export`, ...) are all
such dataclasses.

```python
@dataclasses.dataclass(kw_only=True)
class Scores(Options):
    model_path: str = option(REQUIRED, "the .keras file")
    split: str = option("test", "the split scored")
```
"""

import ast
import dataclasses
import types
import typing

# The default of a field the command line must give (a `kw_only` dataclass).
REQUIRED = dataclasses.MISSING


def option(
    default,
    help,
    *,
    choices=None,
    metavar=None,
    flag=None,
    parse=None,
    nargs=None,
    cli=True,
):
    """A field of an `Options` dataclass.

    Args:
        default: the default, or `REQUIRED`; a dict or list default is
            copied per instance.
        help: str. One line for `--help`.
        choices: the accepted values (of each value of a list), or `None`.
        metavar: str, tuple or `None`. How `--help` names the value(s).
        flag: str or `None`. The flag; defaults to `--<name with dashes>`.
            A name without dashes makes a positional argument.
        parse: callable or `None`. Reads one value's text (default: the
            field's type; `int` for a tuple's).
        nargs: how many values a tuple or list field takes (default `"+"`).
        cli: bool. Whether the command line has it (`False` for Python-only
            arguments, e.g. an array of class weights).
    """
    metadata = {
        "help": help,
        "choices": choices,
        "metavar": metavar,
        "flag": flag,
        "parse": parse,
        "nargs": nargs,
        "cli": cli,
    }
    if default is REQUIRED:
        return dataclasses.field(metadata=metadata)
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


def value_type(annotation):
    """The type of a field's values, `None` left out of an optional one and
    `list[str]` read as `list`."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        kinds = [a for a in typing.get_args(annotation) if a is not type(None)]
        annotation = kinds[0]
    return typing.get_origin(annotation) or annotation


class Options:
    """What every options dataclass can do (a mixin: subclasses are
    `@dataclasses.dataclass`)."""

    @classmethod
    def defaults(cls):
        """`{field: default}` of the fields that have one."""
        defaults = {}
        for f in dataclasses.fields(cls):
            if f.default is not dataclasses.MISSING:
                defaults[f.name] = f.default
            elif f.default_factory is not dataclasses.MISSING:
                defaults[f.name] = f.default_factory()
        return defaults

    @classmethod
    def from_arguments(cls, args):
        """The options of parsed command-line arguments (`add_arguments`);
        fields the command line does not have keep their defaults."""
        values = {}
        for field in dataclasses.fields(cls):
            if not field.metadata.get("cli", True):
                continue
            value = getattr(args, field.name)
            kind = value_type(field.type)
            if kind is dict:
                value = parse_key_values(value)
            elif kind in (tuple, list) and value is not None:
                value = kind(value)
            values[field.name] = value
        return cls(**values)

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)

    def fields(self, *names, leave_out=()):
        """`{name: value}` of the fields named (all by default), less those
        in `leave_out`: the keywords of the function the options call."""
        names = names or [f.name for f in dataclasses.fields(self)]
        return {n: getattr(self, n) for n in names if n not in leave_out}


def _inherited(options_class):
    """The names of the fields `options_class` inherits from its bases."""
    names = set()
    for base in options_class.__mro__[1:]:
        if dataclasses.is_dataclass(base):
            names.update(f.name for f in dataclasses.fields(base))
    return names


def add_arguments(parser, options_class, **defaults):
    """Adds an argument for every command-line field of `options_class`:
    `bool` fields are switches, `tuple` and `list` ones take several values
    (`nargs`), `dict` ones repeat `KEY=VALUE`, a field without a default is
    required. `defaults` override the class's defaults on this command. The
    class's own fields come first, those it inherits (e.g. the `--seed` every
    recipe has) after them. Returns `parser`."""
    inherited = _inherited(options_class)
    own_defaults = {**options_class.defaults(), **defaults}
    fields = sorted(dataclasses.fields(options_class), key=lambda f: f.name in inherited)
    for field in fields:
        meta = field.metadata
        if not meta.get("cli", True):
            continue
        flag = meta.get("flag") or "--" + field.name.replace("_", "-")
        positional = not flag.startswith("-")
        kind = value_type(field.type)
        kwargs = {"help": meta["help"]}
        if not positional:
            kwargs["dest"] = field.name
        if field.name in own_defaults:
            kwargs["default"] = own_defaults[field.name]
        elif not positional:
            kwargs["required"] = True
        if kind is bool:
            parser.add_argument(flag, action="store_true", **kwargs)
            continue
        if kind is dict:  # repeated KEY=VALUE, read by `from_arguments`
            kwargs.update(action="append", default=None)
            kwargs["metavar"] = meta.get("metavar") or "KEY=VALUE"
            parser.add_argument(flag, **kwargs)
            continue
        if kind in (tuple, list):
            kwargs["nargs"] = meta.get("nargs") or "+"
            kwargs["type"] = meta.get("parse") or (int if kind is tuple else str)
        else:
            kwargs["type"] = meta.get("parse") or kind
        for key in ("choices", "metavar"):
            if meta.get(key):
                kwargs[key] = meta[key]
        parser.add_argument(flag, **kwargs)
    return parser
