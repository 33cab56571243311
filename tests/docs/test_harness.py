"""The docs tests' own reading of Markdown and shell, on made-up pages."""

import textwrap

from tests.docs.markdown_files import parse
from tests.docs.test_cli_lines import commands
from tests.docs.test_code_blocks import run_blocks

PAGE = """\
# A page
<!-- code-blocks: slow -->

```python
x = 1
```

<!-- not-run: needs a GPU -->

```python
raise RuntimeError("not run")
```

1. In a list:

    ```py
    y = x + 1
    ```

````markdown
```python
not python: the outer fence is longer
```
````

<!--
  not-run: a reason
  over two lines
-->
```python
raise RuntimeError("not run either")
```

<!-- not-run: -->

<!-- not-run: before a shell block -->
```bash
segattn models
```

<!-- code-blocks: quick -->
"""


def write(tmp_path, text):
    path = tmp_path / "page.md"
    path.write_text(text)
    return parse(path)


def test_blocks_markers_and_the_slow_comment(tmp_path):
    document = write(tmp_path, PAGE)
    assert document.slow
    assert [(b.lang, b.line) for b in document.blocks] == [
        ("python", 4),
        ("python", 10),
        ("py", 16),
        ("markdown", 20),
        ("python", 30),
        ("bash", 37),
    ]
    assert document.blocks[2].code == "y = x + 1\n"  # the list item's indent taken off
    assert [b.line for b in document.runnable] == [4, 16]
    assert [(m.line, m.reason, m.block and m.block.line) for m in document.markers] == [
        (8, "needs a GPU", 10),
        (26, "a reason over two lines", 30),
        (34, "", None),
        (36, "before a shell block", 37),
    ]
    assert len(document.problems) == 1 and "code-blocks: quick" in document.problems[0]


def test_the_blocks_share_a_namespace_and_a_failure_names_its_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert run_blocks(write(tmp_path, PAGE)) is None  # x from the first block, y in the list
    failing = "```python\nz = 2\n```\n\ntext\n\n```python\nz += 1\nassert z == 2, 'z is 3'\n```\n"
    failure = run_blocks(write(tmp_path, failing))
    assert "the python block at line 7 failed" in failure
    assert 'page.md", line 9' in failure and "assert z == 2" in failure  # the file's own line
    assert "z is 3" in failure and "run_blocks" not in failure


def test_shell_commands_as_the_shell_splits_them():
    code = textwrap.dedent(
        """\
        # a comment
        TF_CONFIG='{"task": {"index": 0}}' \\
          segattn train --model fcn8s   # after the command
        for p in crf superpixels; do
          segattn evaluate --postprocess $p > "log #1.txt" 2>&1
        done
        python - <<'EOF'
        segattn is not a command here
        EOF
        python -c "
        print('# not a comment')" && segattn models | tee models.txt
        """
    )
    assert list(commands(code)) == [
        (1, ['TF_CONFIG={"task": {"index": 0}}', "segattn", "train", "--model", "fcn8s"]),
        (3, ["for", "p", "in", "crf", "superpixels"]),
        (3, ["do"]),
        (4, ["segattn", "evaluate", "--postprocess", "$p"]),
        (5, ["done"]),
        (6, ["python", "-"]),
        (9, ["python", "-c", "\nprint('# not a comment')"]),
        (9, ["segattn", "models"]),
        (9, ["tee", "models.txt"]),
    ]


def test_console_blocks_keep_the_prompted_lines():
    code = "$ segattn train \\\n    --model fcn8s\nEpoch 1/2\n$ segattn models\nfcn8s\n"
    assert list(commands(code, console=True)) == [
        (0, ["segattn", "train", "--model", "fcn8s"]),
        (3, ["segattn", "models"]),
    ]
