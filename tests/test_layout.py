"""The package's floors: every import points down, and no module imports
itself back through a cycle (README, "Layout").

The test reads the source with `ast` (nothing is imported), so a violation
is reported with its file and line even when it sits inside a function.
"""

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "keras_segattn"

# The floor of each top-level module or subpackage of keras_segattn. A module
# may import from a lower floor and from its own subpackage, never from a
# higher floor or from another subpackage of the same floor.
FLOORS = {
    "core": 0,
    "layers": 1,
    "initializers": 1,
    "losses": 1,
    "metrics": 2,
    "models": 2,
    "postprocess": 2,
    "data": 3,
    "evaluation": 3,
    "checkpoints": 3,
    "tasks": 4,
    "export": 5,
    "viz": 5,
    "recipes": 6,
    "testing": 6,
    "cli": 7,
}


def module_name(path):
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def resolve(node, module, is_package):
    """The absolute names one import statement brings in."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level:
        base = module.split(".")
        base = base[: len(base) - node.level + (1 if is_package else 0)]
        prefix = ".".join(base + ([node.module] if node.module else []))
    else:
        prefix = node.module
    # `from pkg import sub` imports the submodule `pkg.sub` when it is one.
    names = []
    for alias in node.names:
        candidate = f"{prefix}.{alias.name}"
        names.append(candidate if candidate in MODULES else prefix)
    return names


def internal_imports():
    """{module: [(imported module, line)]} for every module of the package."""
    graph = {}
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        edges = []
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for name in resolve(node, module, path.name == "__init__.py"):
                    if name == "keras_segattn" or name.startswith("keras_segattn."):
                        edges.append((name, node.lineno))
        graph[module] = edges
    return graph


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def top(module):
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def test_every_top_level_module_has_a_floor():
    tops = {top(m) for m in MODULES} - {None}
    assert tops == set(FLOORS), (
        f"modules without a floor: {sorted(tops - set(FLOORS))}; "
        f"floors without a module: {sorted(set(FLOORS) - tops)}"
    )


def test_imports_point_down():
    upward = []
    for module, edges in internal_imports().items():
        source = top(module)
        if source is None:  # the package's lazy __init__ imports nothing
            assert not edges, f"keras_segattn/__init__.py imports {edges} at import time"
            continue
        for target_module, line in edges:
            target = top(target_module)
            if target is None:
                upward.append(f"{module}:{line} imports the whole package")
            elif target != source and FLOORS[target] >= FLOORS[source]:
                upward.append(
                    f"{module}:{line} -> {target_module} "
                    f"(floor {FLOORS[source]} {source} -> floor {FLOORS[target]} {target})"
                )
    assert not upward, "imports that do not point down:\n" + "\n".join(upward)


def test_models_never_load_data_score_or_draw():
    forbidden = ("data", "evaluation", "recipes", "export", "viz", "postprocess", "checkpoints")
    found = [
        f"{module}:{line} -> {target}"
        for module, edges in internal_imports().items()
        if top(module) == "models"
        for target, line in edges
        if top(target) in forbidden
    ]
    assert not found, "\n".join(found)


def find_cycle(graph):
    """One import cycle of `graph` as a list of modules, or `None`."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for target in graph.get(node, ()):
            if state.get(target) == "open":
                return stack[stack.index(target) :] + [target]
            if target not in state:
                cycle = visit(target)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_no_import_cycles():
    graph = {
        m: sorted({t for t, _ in edges if t in MODULES}) for m, edges in internal_imports().items()
    }
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_finder_finds_cycles():
    assert find_cycle({"a": ["b"], "b": ["c"], "c": ["a"]}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": ["b"], "b": [], "c": ["a"]}) is None


@pytest.mark.parametrize(
    "source, expected",
    [
        ("from keras_segattn.models import registry", ["keras_segattn.models.registry"]),
        ("from keras_segattn.data import load_mnist", ["keras_segattn.data"]),
        ("import keras_segattn.layers", ["keras_segattn.layers"]),
        ("from . import registry", ["keras_segattn.models.registry"]),
    ],
)
def test_imports_are_resolved(source, expected):
    node = ast.parse(source).body[0]
    assert resolve(node, "keras_segattn.models", is_package=True) == expected


# Where a task's, a model's or a generated dataset's name may decide what
# happens: the task objects, the model registry and builders, and (for
# dataset names) the data floor. Everywhere else asks the object.
NAMED_BY_TASKS = ("tasks", "models")
NAMED_BY_DATA = ("data",)


def registered_names():
    """{name: what it names} for every task, model and generated dataset."""
    from keras_segattn.data.pipeline import GENERATED_DATASETS
    from keras_segattn.models import list_models
    from keras_segattn.tasks import list_tasks

    names = {name: "task" for name in list_tasks()}
    names.update({name: "model" for name in list_models()})
    names.update({name: "dataset" for name in GENERATED_DATASETS})
    return names


def _strings(node):
    """The string constants `node` is, or holds as a tuple, list or set."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return [s for element in node.elts for s in _strings(element)]
    return []


def name_branches(tree, names):
    """`(line, text)` of every comparison with a name in `names`, and of every
    dict literal keyed by one (a table of names), in `tree`."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            hits = sorted({s for o in operands for s in _strings(o) if s in names})
        elif isinstance(node, ast.Dict):
            hits = sorted(
                {s for k in node.keys if k is not None for s in _strings(k) if s in names}
            )
        else:
            continue
        if hits:
            found.append((node.lineno, ", ".join(f"{names[h]} {h!r}" for h in hits)))
    return found


def test_generic_code_asks_the_task_instead_of_comparing_names():
    names = registered_names()
    found = []
    for module, path in MODULES.items():
        floor = top(module)
        if floor in NAMED_BY_TASKS:
            continue
        allowed = names
        if floor in NAMED_BY_DATA:
            allowed = {k: v for k, v in names.items() if v != "dataset"}
        tree = ast.parse(path.read_text(), filename=str(path))
        for line, what in name_branches(tree, allowed):
            found.append(f"{module}:{line} compares or tabulates {what}")
    assert not found, (
        "branches on a task, model or dataset name outside the task objects and the "
        "registry (ask keras_segattn.tasks.task_of(model) instead):\n" + "\n".join(found)
    )


@pytest.mark.parametrize(
    "source, hits",
    [
        ('if task == "semantic": pass', 1),
        ('if name in ("rpn", "mnc"): pass', 1),
        ('TABLE = {"sds": 1}', 1),
        ('if data != "shapes": pass', 1),
        ('if method == "bilinear": pass', 0),
        ('create_model("fcn8s")', 0),
    ],
)
def test_the_name_branch_finder_finds_branches(source, hits):
    assert len(name_branches(ast.parse(source), registered_names())) == hits


# The one place the package calls `fit` (`tasks.fit_epochs`), and the test
# helper's one-step check of a model (`testing.check_jit_fit_step`).
FIT_CALLERS = {("tasks/base.py", "fit_epochs"), ("testing.py", "check_jit_fit_step")}


def fit_calls(tree):
    """`(function, line)` of every `<something>.fit(...)` call in `tree`."""
    calls = []
    for function in ast.walk(tree):
        if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for node in ast.walk(function):
            is_fit = isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            if is_fit and node.func.attr == "fit":
                calls.append((function.name, node.lineno))
    return calls


def test_every_recipe_trains_through_the_one_fit_loop():
    """Every training path of every task calls `tasks.fit_epochs`, which
    draws each epoch's data from its seed and resumes them with the run:
    no recipe calls `model.fit` by itself."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        where = path.relative_to(PACKAGE).as_posix()
        for function, line in fit_calls(ast.parse(path.read_text())):
            if (where, function) not in FIT_CALLERS:
                found.append(f"{where}:{line} in {function}")
    assert not found, "model.fit outside tasks.fit_epochs:\n" + "\n".join(found)


def test_the_fit_finder_finds_fit_calls():
    source = "def train(model, data):\n    model.fit(data)\n\ndef other():\n    pass\n"
    assert fit_calls(ast.parse(source)) == [("train", 2)]
