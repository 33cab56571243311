"""The `Task` contract and the registry of tasks.

A task is what a family of models is *for*: semantic segmentation, patch
classification, instance segmentation, captioning, classification. What
differs between tasks lives in one `Task` object per task, registered once
here; generic code (the run folder, the recipes, `segattn`'s commands, the
export flow, the scoring of exports) asks the task object and never compares
a task or a model name. The model registry (`keras_segattn.models`) names
each model's task; `task_of(model)` turns that name into the object.

Adding a task: subclass `Task`, fill in what differs, and decorate it with
`register_task` (see `docs/extending.md`).
"""

import dataclasses

import tensorflow as tf

from keras_segattn.core.options import REQUIRED, Options, option
from keras_segattn.core.validation import check_size
from keras_segattn.data.epochs import batches_per_epoch, epochs_of, first_epoch
from keras_segattn.models.registry import get_model_spec, list_models

_TASKS = {}

# Any image size, uint8: what every image signature takes unless its model
# has a fixed input size.
IMAGE_SIGNATURE = tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")


def fit_epochs(
    model,
    one_epoch,
    epochs,
    callbacks,
    *,
    first=0,
    resume_epoch=0,
    steps_per_epoch=None,
    validation_data=None,
    verbose=1,
):
    """The fit loop every task's training runs through.

    `model.fit` over epochs `first` to `epochs - 1` (a stage of a longer
    schedule starts at its `first`), epoch `e`'s batches drawn by
    `one_epoch(e)` from `e` alone (`data.epochs.epochs_of`), so a resumed
    run, its data starting at its first untrained epoch `resume_epoch`,
    trains on the batches an uninterrupted run would.

    Args:
        model: a compiled `keras.Model`.
        one_epoch: function from the epoch (an int64 scalar tensor) to that
            epoch's batches (`data.epochs.epochs_of`).
        epochs: int. The last epoch (exclusive) of this fit.
        callbacks: list. The run folder's (`RunFolder.callbacks`: they
            restore a resumed run's state and write each epoch) and any
            more.
        first: int. This fit's first epoch (`initial_epoch`).
        resume_epoch: int. A resumed run's first untrained epoch
            (`RunFolder.resume_epoch()`), `0` for a new one.
        steps_per_epoch: int or `None`. Batches an epoch; `None` counts
            epoch 0's (`data.epochs.batches_per_epoch`).
        validation_data: `fit`'s held-out batches, or `None`.
        verbose: int. `fit`'s verbosity.

    Returns:
        The `History`.
    """
    data = epochs_of(one_epoch, epochs, first_epoch(resume_epoch, epochs, first))
    return model.fit(
        data,
        initial_epoch=first,
        epochs=epochs,
        steps_per_epoch=steps_per_epoch or batches_per_epoch(one_epoch),
        validation_data=validation_data,
        callbacks=list(callbacks or []),
        verbose=verbose,
        shuffle=False,  # the pipelines shuffle (Keras warns otherwise)
    )


def register_task(cls):
    """Class decorator: registers one instance of `cls` under `cls.name`."""
    if not cls.name or cls.name in _TASKS:
        raise ValueError(f"A task needs a new name; got {cls.name!r}.")
    _TASKS[cls.name] = cls()
    return cls


def task_of(model):
    """The `Task` of a model built by `create_model` (or loaded from one).

    The model registry is the one source of truth: a model keeps its
    registry name as `model.name` through `.keras` files, and its entry
    names its task.

    Args:
        model: a `keras.Model`, or a registry name.

    Raises:
        ValueError: for a model whose name is not registered (e.g. renamed
            or built by hand).
    """
    if isinstance(model, str):  # a registry name: unknown ones are named there
        return get_task(get_model_spec(model).task)
    name = getattr(model, "name", None)
    if name not in list_models():
        raise ValueError(
            f"model {name!r} is not a registered model (its name must be one of "
            f"{', '.join(list_models())}); build it with create_model()."
        )
    return get_task(get_model_spec(name).task)


def list_tasks():
    """The registered task names, sorted."""
    return sorted(_TASKS)


def get_task(task):
    """The registered `Task` named `task` (a `Task` is returned as it is)."""
    if isinstance(task, Task):
        return task
    if task not in _TASKS:
        raise ValueError(f"Unknown task={task!r}; known tasks: {', '.join(list_tasks())}.")
    return _TASKS[task]


class Task:
    """What one task decides, asked by every generic path of the package.

    Subclasses set the class attributes and override the methods that
    their task needs; a method a task does not support raises `ValueError`
    naming the command that serves the task instead.

    Attributes:
        name: str. The registry name (what `register_model(task=...)`,
            `run.json` and `segattn models` say).
        train_command: str or `None`. The `segattn` command that trains
            the task's models (`None`: trained inside another's pipeline).
        evaluate_command: str or `None`. The command that scores them.
        monitor, mode: the validation metric that picks `best.keras` and
            whether it is maximised (`"max"`) or minimised.
        takes_images: bool. Whether the serving signature takes images
            alone; such tasks also get `serving_bytes` (encoded images).
        per_pixel_outputs: dict. Outputs at each image's height and width:
            name -> (axis of the height in one image's output, padding
            value in a batch of mixed sizes).
        tflite_signature: str. The signature a TFLite file is made of.
    """

    name = None
    train_command = None
    evaluate_command = None
    monitor = None
    mode = "max"
    takes_images = True
    per_pixel_outputs = {}
    tflite_signature = "serving_default"

    def __repr__(self):
        return f"<task {self.name!r}>"

    # -- serving ----------------------------------------------------------

    def serving_model(self, model):
        """`(model, task)` as served: what a client gets for this model.
        Defaults to the model itself under this task."""
        return model, self

    def serving_functions(self, model):
        """`{signature name: serve}`, `serve` a function of the signature's
        inputs (`input_signature`) returning a dict of named outputs;
        `"serving_default"` first."""
        raise NotImplementedError

    def serving_function(self, model, signature="serving_default"):
        """One of `serving_functions`: `serve` of the signature named."""
        functions = self.serving_functions(model)
        if signature not in functions:
            raise ValueError(
                f"A {self.name} model has signatures {sorted(functions)}; got {signature!r}."
            )
        return functions[signature]

    def image_size_is_free(self, model):
        """Whether the model takes images of any size (resized inside or
        fully convolutional). Defaults to `True`."""
        return True

    def image_spec(self, model, image_size=None):
        """The `images` input: any size (or `image_size`) where the model
        takes any, else its fixed input size."""
        if self.image_size_is_free(model):
            if image_size is None:
                return IMAGE_SIGNATURE
            return tf.TensorSpec(
                [None, *check_size(image_size, "input_size"), 3], tf.uint8, "images"
            )
        fixed = tuple(model.input.shape[1:3])
        if image_size is not None and check_size(image_size, "input_size") != fixed:
            raise ValueError(
                f"A {self.name} model takes images of its input size {fixed}; got "
                f"input_size={image_size!r}."
            )
        return tf.TensorSpec([None, *model.input.shape[1:]], tf.uint8, name="images")

    def input_signature(self, model, image_size=None):
        """The `tf.TensorSpec`s every serving signature takes, in order."""
        return [self.image_spec(model, image_size)]

    def bytes_input_size(self, model):
        """The size `serving_bytes` resizes decoded images to, or `None`
        (each image at its own size)."""
        return None

    def sample_inputs(self, model, data_spec, image_size, count=32):
        """`count` batches of one example each, as the serving signature
        takes them (`{input name: array}`), for calibration and checks."""
        raise NotImplementedError

    def labels(self, model, data_spec, run):
        """What the exported files carry as labels, by id (class names, a
        vocabulary, digits). `run` is the run's `run.json` (or `{}`)."""
        if run.get("class_names"):
            return list(run["class_names"])
        return self.dataset_class_names(data_spec)

    def dataset_class_names(self, data_spec):
        raise ValueError(f"A {self.name} model names no labels; train it with class names.")

    # -- scoring ----------------------------------------------------------

    def evaluate(self, model, options):
        """Scores a loaded checkpoint as `segattn evaluate` does.

        Args:
            model: the loaded `keras.Model`.
            options: `EvaluateOptions`.

        Returns:
            `(scores, lines)`: the dict of scores and the lines to print.
        """
        raise ValueError(self._use_instead("segattn evaluate", self.evaluate_command))

    def draw(self, model):
        """The model that `segattn predict` draws class maps with: per-pixel
        scores for any image. Only the tasks with class maps have one."""
        raise ValueError(self._use_instead("segattn predict", self.evaluate_command))

    def captioner(self, model):
        """The model that `segattn caption` and `caption-evaluate` run; only
        a captioning task has one."""
        raise ValueError(
            f"--model-path holds a {self.name} model, which is not a captioning model."
        )

    def score_signature(self, signature, data, split, count, **options):
        """Scores an exported `serving_default` signature on held-out data
        (`recipes.served.score_saved_model`); a dict of scores."""
        raise ValueError(f"Scoring an exported {self.name} model is not supported.")

    def _use_instead(self, command, instead):
        hint = f" (use segattn {instead})" if instead else ""
        return f"{command} does not take {self.name} models{hint}."


@dataclasses.dataclass(kw_only=True)
class EvaluateOptions(Options):
    """What `segattn evaluate` asks a task's `evaluate` (the command's
    arguments are these fields)."""

    data: str = option(REQUIRED, "the dataset spec scored (e.g. shapes, camvid:<folder>)")
    split: str = option("test", "the split scored")
    image_size: tuple | None = option(
        None,
        "H [W]: the size images are scored at (default: the run's training size, else each "
        "image's own)",
    )
    batch_size: int = option(4, "images a batch")
    postprocess: str | None = option(
        None,
        "refine each image's probabilities on the host before scoring",
        choices=["superpixels", "crf"],
    )
    detector: str | None = option(
        None,
        "hypercolumns: an sds .keras file whose detections it re-segments (default: jittered "
        "ground-truth boxes)",
    )
    proposals: int | None = option(
        None,
        "semantic: DeconvNet's proposal-wise inference on each image's N best selective-search "
        "proposals and the whole image, each resized to the model's input",
        metavar="N",
    )
    merge: str = option(
        "sum", "how --proposals merges the proposals' probabilities", choices=["sum", "max"]
    )
    ensemble: tuple = option(
        (),
        "semantic: average the class probabilities with these models' (EDeconvNet: a "
        "proposal-wise DeconvNet with a whole-image FCN-8s)",
        metavar="KERAS",
        parse=str,
    )

    def __post_init__(self):
        self.ensemble = tuple(self.ensemble or ())

    def refuse_dense_predictors(self, task):
        """Raises if `--proposals` or `--ensemble` were asked of a `task`
        that has no class maps to run them on."""
        if self.proposals is not None or self.ensemble:
            raise ValueError(
                f"--proposals and --ensemble score semantic models, not {task.name} models."
            )
