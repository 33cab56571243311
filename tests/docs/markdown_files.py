"""The code blocks of the README and the site's pages, read for the tests.

`documents()` gives README.md, every `docs/**/*.md` but `docs/api/` (which
holds only mkdocstrings directives) and any Markdown file those pages pull
in with a snippet line (`--8<-- "CHANGELOG.md"`), each as a `Document`: its
fenced code blocks and the HTML comments that steer the tests:

- `<!-- not-run: REASON -->` just above a ```python block (only blank
  lines between) keeps the block from running;
- `<!-- code-blocks: slow -->` anywhere marks the file's item `slow`.

Fences are CommonMark's: three or more backticks or tildes, closed by a
fence of the same character at least as long, possibly indented (a block
inside a list item); the indent is taken off the block's lines.
"""

import dataclasses
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"

PYTHON = {"python", "py", "python3"}
SHELL = {"bash", "sh", "shell", "console"}

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>[^`]*)$")
_SNIPPET = re.compile(r"""^\s*-+8<-+\s+["']([^"']+\.md)["']\s*$""")
_NOT_RUN = re.compile(r"^\s*not-run\b\s*:?(?P<reason>.*)$", re.DOTALL)
_CODE_BLOCKS = re.compile(r"^\s*code-blocks\s*:(?P<value>.*)$", re.DOTALL)


@dataclasses.dataclass
class Block:
    path: Path
    lang: str  # the info string's first word, lower case: "python", "bash", ""
    line: int  # the opening fence's line, from 1
    code: str  # the lines between the fences, indent taken off
    not_run: str | None = None  # the reason of a not-run marker just above

    @property
    def first_line(self):
        return self.line + 1


@dataclasses.dataclass
class Marker:
    """A `<!-- not-run: ... -->` comment, and the block it stands above."""

    line: int
    reason: str
    block: Block | None  # the fenced block after only blank lines, if any


@dataclasses.dataclass
class Document:
    path: Path
    blocks: list
    markers: list
    slow: bool
    problems: list  # comments the tests do not understand, as "path:line: why"
    includes: list  # Markdown files pulled in by snippet lines

    @property
    def name(self):
        return relative(self.path)

    @property
    def python(self):
        return [b for b in self.blocks if b.lang in PYTHON]

    @property
    def runnable(self):
        return [b for b in self.python if b.not_run is None]

    @property
    def shell(self):
        return [b for b in self.blocks if b.lang in SHELL]


def relative(path):
    """The path from the repository's root (as it is, outside the repository)."""
    path = Path(path).resolve()
    return path.relative_to(REPO).as_posix() if path.is_relative_to(REPO) else str(path)


def _language(info):
    word = (info.strip().split() or [""])[0]
    return word.strip("{}").lstrip(".").lower()


def _dedent(line, indent):
    """`line` less up to `indent` columns of leading blanks."""
    taken = 0
    while taken < indent and line[:1] in (" ", "\t"):
        line, taken = line[1:], taken + 1
    return line


def parse(path):
    path = Path(path)
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks, markers, problems, includes = [], [], [], []
    slow = False
    pending = None  # the last not-run marker, until a non-blank line
    i = 0
    while i < len(lines):
        line, number = lines[i], i + 1
        fence = _FENCE.match(line)
        if fence:
            indent, mark = len(fence["indent"]), fence["fence"]
            close = re.compile(rf"^[ \t]*{re.escape(mark[0])}{{{len(mark)},}}[ \t]*$")
            body = []
            i += 1
            while i < len(lines) and not close.match(lines[i]):
                body.append(_dedent(lines[i], indent))
                i += 1
            block = Block(path, _language(fence["info"]), number, "\n".join(body) + "\n")
            if pending is not None:
                block.not_run = pending.reason
                pending.block = block
                pending = None
            blocks.append(block)
            i += 1  # the closing fence (or the end of the file)
            continue
        if line.strip().startswith("<!--"):
            start = i
            while "-->" not in lines[i] and i + 1 < len(lines):
                i += 1
            text = "\n".join(lines[start : i + 1])
            comment = text.strip()[len("<!--") :].split("-->")[0]
            i += 1
            not_run, code_blocks = _NOT_RUN.match(comment), _CODE_BLOCKS.match(comment)
            if not_run:
                pending = Marker(start + 1, " ".join(not_run["reason"].split()), None)
                markers.append(pending)
            elif code_blocks:
                if code_blocks["value"].strip() == "slow":
                    slow = True
                else:
                    problems.append(
                        f"{relative(path)}:{start + 1}: unknown <!-- code-blocks: "
                        f"{code_blocks['value'].strip()} --> (the one value is `slow`)"
                    )
            if not not_run:
                pending = None  # another comment between a marker and its block
            continue
        snippet = _SNIPPET.match(line)
        if snippet and (REPO / snippet[1]).is_file():
            includes.append((REPO / snippet[1]).resolve())
        if line.strip():
            pending = None
        i += 1
    return Document(path, blocks, markers, slow, problems, includes)


def documents():
    """README.md, then docs/**/*.md but docs/api/, then what they include."""
    paths = [REPO / "README.md"]
    paths += sorted(p for p in DOCS.rglob("*.md") if not p.is_relative_to(DOCS / "api"))
    found, seen = [], set()
    while paths:
        path = paths.pop(0).resolve()
        if path in seen or not path.is_file():
            continue
        seen.add(path)
        document = parse(path)
        found.append(document)
        paths += document.includes
    return found
