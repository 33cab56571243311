"""Every ```python block of the README and the site's pages runs, or says why not.

The files: README.md, every `docs/**/*.md` but `docs/api/`, and the
Markdown files those pages include with a snippet line (`--8<-- "X.md"`).
The conventions, for whoever writes them:

- A block runs unless an HTML comment `<!-- not-run: REASON -->` stands
  just above its opening fence (only blank lines between). The reason is
  required, and a marker must stand above a ```python block.
- The running blocks of one file are one test, named by the file's path:
  they run in order, in one namespace (a later block sees what an earlier
  one defined), as `__main__`, in a fresh temporary working folder.
- `../shared/data` in a block stands for the shared data folder beside the
  repository; the test puts in its absolute path (and skips, through
  tests/skip_policy.py, where the folder is missing).
- `<!-- code-blocks: slow -->` anywhere in a file marks its test `slow`.
- A failure names the file and the block's line and shows the traceback,
  whose lines are the Markdown file's own.

Models, datasets, tasks and trainers that a block registers, and the Keras
settings and environment variables it changes, are put back afterwards:
the rest of the suite, which may share the test process, sees the
package's own.
"""

import contextlib
import os
import traceback

import keras
import pytest

from tests.docs.markdown_files import PYTHON, documents

SHARED = "../shared/data"

DOCUMENTS = documents()
RUNNABLE = [d for d in DOCUMENTS if d.runnable]


def _registries():
    """The package's registries a documentation example may add to."""
    from keras_segattn.data import catalogue
    from keras_segattn.models import registry
    from keras_segattn.recipes import instance
    from keras_segattn.tasks import base

    return [
        (registry, "_REGISTRY"),
        (catalogue, "_CATALOGUE"),
        (base, "_TASKS"),
        (instance, "TRAINERS"),
    ]


@contextlib.contextmanager
def _global_state_restored():
    saved = []
    for module, name in _registries():
        assert isinstance(getattr(module, name, None), dict), (
            f"{module.__name__}.{name} is no longer the registry dict: update _registries()"
        )
        saved.append((getattr(module, name), dict(getattr(module, name))))
    environ = dict(os.environ)
    policy, floatx = keras.config.dtype_policy(), keras.config.floatx()
    image_format = keras.config.image_data_format()
    try:
        yield
    finally:
        for registry, before in saved:
            registry.clear()
            registry.update(before)
        os.environ.clear()
        os.environ.update(environ)
        keras.config.set_dtype_policy(policy)
        keras.config.set_floatx(floatx)
        keras.config.set_image_data_format(image_format)


def _failure(document, block, error, ran):
    # The harness' own frame (the exec call) is left out of the traceback.
    tb = error.__traceback__.tb_next if ran else None
    shown = "".join(traceback.format_exception(type(error), error, tb))
    return f"{document.name}: the python block at line {block.line} failed:\n\n{shown}"


def run_blocks(document, shared=None):
    """Runs the document's running blocks in order in one namespace, in the
    current folder; the failure's message, or None where all ran."""
    namespace = {"__name__": "__main__", "__builtins__": __builtins__}
    with _global_state_restored():
        for block in document.runnable:
            code = block.code if shared is None else block.code.replace(SHARED, shared)
            # Blank lines in front: the traceback gives the Markdown file's lines.
            source = "\n" * (block.first_line - 1) + code
            try:
                compiled = compile(source, str(document.path), "exec")
            except SyntaxError as error:
                return _failure(document, block, error, ran=False)
            try:
                exec(compiled, namespace)
            except (Exception, SystemExit) as error:
                return _failure(document, block, error, ran=True)
    return None


@pytest.mark.parametrize(
    "document",
    [pytest.param(d, id=d.name, marks=[pytest.mark.slow] if d.slow else []) for d in RUNNABLE],
)
def test_python_blocks_run(document, request, tmp_path, monkeypatch):
    shared = None
    if any(SHARED in block.code for block in document.runnable):
        shared = request.getfixturevalue("shared_data")  # skips where it is missing
    monkeypatch.chdir(tmp_path)
    failure = run_blocks(document, shared)
    if failure:
        pytest.fail(failure, pytrace=False)


def test_not_run_markers_give_a_reason():
    empty = [f"{d.name}:{m.line}" for d in DOCUMENTS for m in d.markers if not m.reason]
    assert not empty, (
        "a <!-- not-run: REASON --> marker without its reason (say why the block "
        f"cannot run as a test): {', '.join(empty)}"
    )


def test_not_run_markers_stand_above_a_python_block():
    stray = [
        f"{d.name}:{m.line}"
        for d in DOCUMENTS
        for m in d.markers
        if m.block is None or m.block.lang not in PYTHON
    ]
    assert not stray, (
        "a <!-- not-run: ... --> marker must be followed (only blank lines between) "
        f"by a ```python block: {', '.join(stray)}"
    )


def test_code_blocks_comments_are_understood():
    problems = [p for d in DOCUMENTS for p in d.problems]
    assert not problems, "\n".join(problems)
