"""One config per recipe: the single source of its arguments.

A recipe's config is an options dataclass (`keras_segattn.core.options`)
whose fields are the recipe's arguments, each with its default and its help
text (`option`). Everything else is made from it:

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

import dataclasses

from keras_segattn.core.options import (
    Options,
    add_arguments,
    none_or_text,
    option,
    parse_key_values,
)
from keras_segattn.core.validation import optional_size

__all__ = ["RecipeConfig", "add_arguments", "none_or_text", "option", "parse_key_values", "sizes"]

STRATEGIES = ("auto", "default", "mirrored", "multi-worker", "tpu")
PRECISIONS = ("float16", "bfloat16")


@dataclasses.dataclass
class RecipeConfig(Options):
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


def sizes(config, *names):
    """The `(height, width)` of each size field named, checked."""
    return [optional_size(getattr(config, name), name) for name in names]
