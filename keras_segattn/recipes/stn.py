"""Reproduces Table 1 of Spatial Transformer Networks on distorted MNIST.

`segattn stn-table` trains one cell (model x distortion) after another, each
in its own run folder `<output>/<cell>/` (`keras_segattn.recipes.runs`),
writes its `metrics.json` as soon as it is measured, and skips cells
already measured with the same settings, so an interrupted table resumes
where it stopped, and an interrupted cell at its last finished epoch, on
the digits it would have seen. A cell folder holding other settings is
refused by name (`--overwrite` starts it afresh): a measured cell is never
lost to a changed command. It prints the measured error beside the paper's.

The schedule is Adam with a cosine decay (the default: quick), or SGD with
momentum (the paper's optimizer) with a cosine decay or the paper's steps,
the learning rate divided by 10 after a third and two thirds of the
training (`--optimizer sgd --schedule step`). The measured table, with
the commands that made it, is in the documentation
(`docs/spatial-transformers.md`).
"""

import math
import os

import keras
import numpy as np
import tensorflow as tf

from keras_segattn.checkpoints import load_model
from keras_segattn.core.validation import check_int
from keras_segattn.data.distortions import (
    DISTORTION_VERSIONS,
    DISTORTIONS,
    distorted_mnist,
    distortion_image_size,
)
from keras_segattn.data.mnist import load_mnist
from keras_segattn.models.registry import create_model
from keras_segattn.models.spatial_transformer.mnist_models import (  # noqa: F401 (re-exported)
    PAPER_ERRORS,
    transformer_outputs,
)
from keras_segattn.recipes.distribute import (
    is_chief,
    make_strategy,
    training_context,
)
from keras_segattn.recipes.runs import RunFolder
from keras_segattn.recipes.schedules import check_schedule, per_step
from keras_segattn.tasks import fit_epochs
from keras_segattn.viz import save_transformer_grid


def parse_row(row):
    """`"st_cnn:tps"` to `("st_cnn", "tps")`; `"cnn"` to `("cnn", None)`."""
    if row not in PAPER_ERRORS:
        raise ValueError(f"Unknown table row {row!r}; rows are {sorted(PAPER_ERRORS)}.")
    name, _, transform = row.partition(":")
    return name, transform or None


def training_epoch(distortion, batch_size, seed, mnist):
    """One pass over the 60,000 digits as a function of the epoch
    (`fit_epochs`' `one_epoch`): each digit freshly distorted and the
    whole shuffled, both seeded `seed + epoch` statelessly, so epoch `e`
    is the same batches whether or not the run was interrupted before it.
    One pipeline serves every epoch: the digits are held once, whatever the
    number of epochs."""

    def one_pass(epoch):
        epoch_seed = seed + epoch
        data = distorted_mnist("train", distortion, epoch_seed, mnist, shuffle_seed=epoch_seed)
        data = data.batch(batch_size, drop_remainder=True)
        return data.map(lambda x, y: (x * 255.0, y), num_parallel_calls=tf.data.AUTOTUNE)

    return one_pass


OPTIMIZERS = ("adam", "sgd")
SCHEDULES = ("cosine", "step")


def learning_rate_schedule(schedule, learning_rate, total_steps):
    """`"cosine"`: from `learning_rate` down to 0 over the run. `"step"`:
    the paper's, `learning_rate` divided by 10 after a third and again
    after two thirds of the steps (its 50k and 100k of 150k iterations).
    Both are `recipes.schedules`' (`per_step`), evaluated at every step."""
    check_schedule(schedule, SCHEDULES)
    return per_step(schedule, learning_rate, total_steps)


def make_optimizer(optimizer, schedule, momentum):
    if optimizer == "adam":
        return keras.optimizers.Adam(schedule)
    if optimizer == "sgd":
        return keras.optimizers.SGD(schedule, momentum=momentum)
    raise ValueError(f"optimizer must be one of {OPTIMIZERS}; got optimizer={optimizer!r}.")


def train_cell(
    row,
    distortion,
    epochs=10,
    batch_size=128,
    learning_rate=1e-3,
    optimizer="adam",
    schedule="cosine",
    momentum=0.9,
    seed=0,
    output="runs/stn",
    source=None,
    limit=None,
    overwrite=False,
    verbose=2,
    strategy="auto",
    mixed_precision=None,
    deterministic=False,
):
    """Trains and tests one table cell; returns (and saves) its result dict.

    Each cell is a run folder `<output>/<row>_<distortion>/` (run.json,
    history.csv, last.keras, the resume state, logs/, metrics.json): a cell
    measured with the same settings is read back instead of retrained, an
    interrupted one resumes from its last finished epoch (on the same
    distorted digits an uninterrupted run would see), and a folder holding
    a cell of other settings is refused, naming them, unless `overwrite`.
    The settings hold the distortion set's version (`DISTORTION_VERSIONS`),
    so a cell measured on an earlier version of its set is refused too.

    The test error is measured after every epoch too (`val_accuracy` in
    history.csv, `test_error_by_epoch` in the result): it shows how the
    error falls with training; nothing is chosen on it, the cell reports
    the last epoch.

    Args:
        row: str. A row of `PAPER_ERRORS`, e.g. `"st_cnn:affine"`.
        distortion: str. One of `DISTORTIONS`.
        epochs: int. Passes over the 60,000 training digits.
        batch_size: int.
        learning_rate: float. The initial learning rate.
        optimizer: `"adam"` or `"sgd"` (with `momentum`; the paper's).
        schedule: `"cosine"` (to 0) or `"step"` (/10 after 1/3 and 2/3 of
            the steps, the paper's).
        momentum: float. SGD's momentum.
        seed: int. The initialisation and distortion seed.
        output: str. The folder of the cells.
        source: the MNIST source of `load_mnist`.
        limit: int or `None`. Only the first `limit` training and test
            digits (smoke runs).
        overwrite: bool. Start the cell afresh if its folder holds other
            settings.
        verbose: int. Keras' fit verbosity.
        strategy: str or `tf.distribute.Strategy`. Where to train
            (`recipes.distribute.make_strategy`); `batch_size` is the
            global batch. Under several workers only the chief writes the
            cell's folder; the others return `None`. Not recorded among
            the settings (it does not change what is computed).
        mixed_precision: `None`, `"float16"` or `"bfloat16"`: computations
            in that precision, variables in float32. Recorded among the
            settings (a cell measured before it was recorded counts as
            `None`).
        deterministic: bool. TensorFlow's deterministic kernels: the same
            weights bit for bit on every run, a killed one resumed included
            (`recipes.distribute.training_context`). Not recorded among the
            settings.

    Returns:
        The cell's result dict (`metrics.json`), or `None` on a worker
        other than the chief.
    """
    epochs = check_int(epochs, "epochs")
    name, transform = parse_row(row)
    if distortion not in DISTORTIONS:
        raise ValueError(f"distortion must be one of {DISTORTIONS}; got {distortion!r}.")
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}; got optimizer={optimizer!r}.")
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}; got schedule={schedule!r}.")
    settings = {
        "row": row,
        "distortion": distortion,
        "epochs": epochs,
        "batch_size": batch_size,
        "learning_rate": learning_rate,
        "optimizer": optimizer,
        "schedule": schedule,
        "momentum": momentum if optimizer == "sgd" else None,
        "seed": seed,
        "limit": limit,
        "source": source,
        "distortion_version": DISTORTION_VERSIONS[distortion],
        "mixed_precision": mixed_precision,
    }
    # Cells recorded before versions (or the precision) were recorded count
    # as version 1 (in float32).
    added = {"distortion_version": 1, "mixed_precision": None}
    # The strategy comes first: a multi-worker one must be made before
    # TensorFlow runs anything else.
    with training_context(strategy, mixed_precision, seed, deterministic) as distribution:
        run = RunFolder(cell_folder(output, row, distortion), chief=is_chief(distribution))
        finished = run.start(settings, overwrite=overwrite, added=added)
        if finished is not None:
            return finished
        model, test, accuracy = _fit_cell(run, name, transform, distortion, settings, verbose)
    if not run.finish_training(model):  # last.keras
        return None  # another worker than the chief
    result = {
        "settings": settings,
        "test_error": 100.0 * (1.0 - accuracy),
        "paper_error": PAPER_ERRORS[row][DISTORTIONS.index(distortion)],
        "test_error_by_epoch": [100.0 * (1.0 - a) for a in run.history_column("val_accuracy")],
        "train_seconds": round(run.training_seconds(), 1),
        "test_images": int(test),
        "parameters": int(model.count_params()),
    }
    run.write_metrics(result)
    return result


def _fit_cell(run, name, transform, distortion, settings, verbose):
    """Builds, trains (resuming from `run`) and tests one cell's model.

    Returns:
        `(model, test images, test accuracy)`.
    """
    epochs, batch_size, seed = settings["epochs"], settings["batch_size"], settings["seed"]
    limit, source = settings["limit"], settings["source"]
    train_mnist = tuple(a[:limit] for a in load_mnist(source, "train"))
    test_mnist = tuple(a[:limit] for a in load_mnist(source, "test"))
    steps = len(train_mnist[1]) // batch_size
    kwargs = {"input_size": distortion_image_size(distortion)}
    if transform:
        kwargs["transform"] = transform
    model = create_model(name, **kwargs)
    rates = learning_rate_schedule(settings["schedule"], settings["learning_rate"], epochs * steps)
    model.compile(
        make_optimizer(settings["optimizer"], rates, settings["momentum"]),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    test = distorted_mnist("test", distortion, seed=seed, source=test_mnist)
    test = test.map(lambda x, y: (x * 255.0, y)).batch(1000).cache()
    # A resumed cell starts its data at its first untrained epoch (with
    # every epoch trained, fit only restores the saved state).
    fit_epochs(
        model,
        training_epoch(distortion, batch_size, seed, train_mnist),
        epochs,
        run.callbacks(),
        resume_epoch=run.resume_epoch(),
        steps_per_epoch=steps,
        validation_data=test,
        verbose=verbose,
    )
    _, accuracy = model.evaluate(test, verbose=0)
    return model, len(test_mnist[1]), accuracy


def cell_folder(output, row, distortion):
    """The run folder of one table cell, e.g. `runs/stn/st_cnn_affine_RTS`."""
    return os.path.join(output, f"{row.replace(':', '_')}_{distortion}")


def format_table(results, distortions):
    """A Markdown table: measured error (paper) and wall time per cell."""
    header = "| model | " + " | ".join(distortions) + " |"
    lines = [header, "|---" * (len(distortions) + 1) + "|"]
    for row in PAPER_ERRORS:
        cells = []
        for d in distortions:
            r = results.get((row, d))
            paper = PAPER_ERRORS[row][DISTORTIONS.index(d)]
            if r is None:
                cells.append(f"- (paper {paper})")
            else:
                minutes = math.ceil(r["train_seconds"] / 60)
                cells.append(
                    f"**{r['test_error']:.2f}** (paper {paper}; {schedule_text(r)}, {minutes} min)"
                )
        if any(not c.startswith("-") for c in cells):
            lines.append(f"| {row} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def schedule_text(result):
    """E.g. `"40 ep. SGD, step"` from a cell's settings."""
    settings = result["settings"]
    optimizer = settings.get("optimizer", "adam")
    return f"{settings['epochs']} ep. {optimizer.upper() if optimizer == 'sgd' else 'Adam'}, " + (
        settings.get("schedule") or "cosine"
    )


def run_table(rows, distortions, strategy="auto", mixed_precision=None, **kwargs):
    """Trains (or reads back) every cell, distortion by distortion; prints
    each result as it is measured, then the table.

    Args:
        rows: list of `PAPER_ERRORS` rows.
        distortions: list of `DISTORTIONS`.
        strategy: str or `tf.distribute.Strategy`. Made once, for every
            cell (`train_cell`).
        mixed_precision: `None`, `"float16"` or `"bfloat16"` (`train_cell`).
        **kwargs: more `train_cell` arguments.

    Returns:
        `(results, table)`: the result dict of each `(row, distortion)`
        cell and the Markdown table (on a worker other than the chief of
        a multi-worker run, the results are `None` and the table empty).
    """
    # One strategy for every cell: a multi-worker one can be made only once.
    strategy = make_strategy(strategy)
    results = {}
    for distortion in distortions:
        for row in rows:
            result = train_cell(
                row, distortion, strategy=strategy, mixed_precision=mixed_precision, **kwargs
            )
            results[(row, distortion)] = result
            if result is None:
                continue  # another worker than the chief
            print(
                f"{row} on {distortion}: {result['test_error']:.2f}% test error "
                f"(paper {result['paper_error']}), {result['train_seconds']:.0f} s",
                flush=True,
            )
    measured = {cell: r for cell, r in results.items() if r is not None}
    table = format_table(measured, distortions) if measured else ""
    print(table)
    return results, table


def transformer_figure(model_path, distortion, path, count=8, seed=0, source=None):
    """Draws `count` distorted test digits above the transformer's outputs."""
    model = load_model(model_path)
    digits = tuple(a[:count] for a in load_mnist(source, "test"))
    images, _ = next(iter(distorted_mnist("test", distortion, seed, source=digits).batch(count)))
    _, warped, _ = transformer_outputs(model)(images * 255.0)
    return save_transformer_grid(path, images.numpy(), np.asarray(warped))
