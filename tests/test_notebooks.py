"""Every notebook of `colab/` runs top to bottom in smoke mode.

`KERAS_SEGATTN_SMOKE=1` switches each notebook's parameters cell to tiny
data and one epoch; the notebooks run in a fresh Jupyter kernel (nbclient),
in a temporary folder, and any cell error fails the test."""

import json
import pathlib

import pytest

nbclient = pytest.importorskip("nbclient")
nbformat = pytest.importorskip("nbformat")

pytestmark = pytest.mark.slow

COLAB = pathlib.Path(__file__).resolve().parents[1] / "colab"
NOTEBOOKS = sorted(COLAB.glob("*.ipynb"))
MNIST = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"


def test_the_families_each_have_a_notebook():
    names = {p.stem for p in NOTEBOOKS}
    assert names >= {
        "quickstart",
        "semantic_segmentation",
        "scene_labelling",
        "instance_segmentation",
        "captioning",
        "spatial_transformers",
    }


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_committed_without_outputs(path):
    # Small, diffable files: the figures are made by running them.
    notebook = json.loads(path.read_text())
    for cell in notebook["cells"]:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None, path.name
    first = "".join(notebook["cells"][0]["source"])
    assert "smoke" in first.lower() and "KERAS_SEGATTN_SMOKE" in first, (
        f"{path.name}: the first cell says what the full and the smoke settings are"
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_in_smoke_mode(path, tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_SEGATTN_SMOKE", "1")
    if MNIST.is_dir():
        monkeypatch.setenv("KERAS_SEGATTN_MNIST", str(MNIST))
    elif path.stem == "spatial_transformers":
        pytest.skip(f"MNIST is not at {MNIST}")
    notebook = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        notebook,
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()  # raises CellExecutionError, naming the cell, on any error
    outputs = [o for cell in notebook.cells for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o["output_type"] == "error"]
