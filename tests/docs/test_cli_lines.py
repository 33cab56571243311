"""Every `segattn` command of the README and the site's pages parses.

Each ```bash, ```sh, ```shell or ```console block (of the files that
test_code_blocks.py reads) is one test, named `file:line`. The block is
read as the shell would split it: backslash-continued lines are joined, a
quoted string may go on over several lines, `# comments` are dropped (not
inside quotes), here-documents (`python - <<'EOF' ... EOF`) are passed
over, and commands are split at `;`, `&&`, `||`, `|`, `&` and new lines.
In a ```console block only the lines after a `$ ` prompt are commands.

A command whose first word (after `VAR=value` assignments and `do`,
`then`, ...) is `segattn` has its arguments parsed by the package's own
parser (`keras_segattn.cli.build_parser()`), which must accept them.
Redirections (`> log.txt`) are left out. Shell variables are put in the
way a reader runs the block: `$VAR` of a `for VAR in a b c; do` loop of
the block becomes the loop's first item, any other `$NAME` becomes `NAME`.
A `python benchmarks/...` or `python docs/...` command must name a script
that exists.
"""

import contextlib
import io
import re
import shlex

import pytest

from tests.docs.markdown_files import REPO, documents

SHELL_BLOCKS = [(d, b) for d in documents() for b in d.shell]

_KEYWORDS = {"do", "then", "else", "elif", "if", "while", "until", "time", "!", "{", "}"}
_ASSIGNMENT = re.compile(r"^[A-Za-z_]\w*=")
_VARIABLE = re.compile(r"\$\{(\w+)\}|\$(\w+)")
_SEPARATOR = set(";&|()")
_SCRIPT_FOLDERS = ("benchmarks/", "docs/")


def _tokens(text):
    lexer = shlex.shlex(text, posix=True, punctuation_chars=";&|()<>")
    lexer.whitespace_split = True  # `--model-arg`, `a=b`, `$p` stay one word
    return list(lexer)


def _is_separator(token):
    return set(token) <= _SEPARATOR


def _is_redirection(token):
    return set(token) <= set("<>&") and bool(set(token) & set("<>"))


def commands(code, console=False):
    """(line in the block, words) of each simple command of shell `code`."""
    lines = code.splitlines()
    if console:  # only prompted lines, and the lines that continue them
        kept, going_on = [], False
        for line in lines:
            if line.startswith("$ ") or going_on:
                kept.append(line[2:] if line.startswith("$ ") and not going_on else line)
                going_on = line.rstrip().endswith("\\")
            else:
                kept.append("")  # output: keeps the line numbers
        lines = kept
    i = 0
    while i < len(lines):
        start, text = i, lines[i]
        i += 1
        while True:
            if text.endswith("\\") and i < len(lines):  # a continued line
                text, i = text[:-1] + lines[i], i + 1
                continue
            try:
                tokens = _tokens(text)
            except ValueError as error:  # a quoted string goes on
                if i == len(lines):
                    raise ValueError(f"line {start + 1} of the block: {error}") from error
                text, i = text + "\n" + lines[i], i + 1
                continue
            break
        words = []
        for j, token in enumerate(tokens):
            if token in ("<<", "<<-") and j + 1 < len(tokens):  # a here-document
                delimiter = tokens[j + 1]
                while i < len(lines) and lines[i].strip() != delimiter:
                    i += 1
                i += 1
        skip = False
        for token in tokens + [";"]:
            if skip:
                skip = False
            elif _is_separator(token):
                if words:
                    yield start, words
                words = []
            elif _is_redirection(token):
                skip = True  # its target
                if words and words[-1] in ("1", "2"):
                    words.pop()  # the 2 of 2>&1
            else:
                words.append(token)


def _command(words):
    """`words` less leading keywords and `VAR=value` assignments."""
    while words and (words[0] in _KEYWORDS or _ASSIGNMENT.match(words[0])):
        words = words[1:]
    return words


@pytest.fixture(scope="module")
def parser():
    from keras_segattn.cli import build_parser

    return build_parser()


def _parse(parser, argv):
    """argparse's error line about `argv`, or None where it accepts them."""
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
        try:
            parser.parse_args(argv)
        except SystemExit as exit:  # parser.error() exits 2; --help exits 0
            if exit.code not in (0, None):
                said = stderr.getvalue().strip().splitlines()  # usage, then the error
                return said[-1] if said else f"exit status {exit.code}"
    return None


@pytest.mark.parametrize(
    ("document", "block"),
    SHELL_BLOCKS,
    ids=[f"{d.name}:{b.line}" for d, b in SHELL_BLOCKS],
)
def test_segattn_commands_parse(document, block, parser):
    loops, problems = {}, []
    try:
        found, unsplit = list(commands(block.code, console=block.lang == "console")), None
    except ValueError as error:
        found, unsplit = [], str(error)
    if unsplit:  # failed outside the except: no "during handling" above it
        where = f"{document.name}:{block.line}"
        pytest.fail(f"{where}: the shell block does not split: {unsplit}", pytrace=False)
    for offset, words in found:
        line = block.first_line + offset
        words = _command(words)
        if not words:
            continue
        if words[0] == "for" and len(words) >= 3 and words[2] == "in":
            loops[words[1]] = words[3] if len(words) > 3 else ""
            continue
        words = [
            _VARIABLE.sub(lambda m: loops.get(m[1] or m[2], m[1] or m[2]), word) for word in words
        ]
        program = words[0].rsplit("/", 1)[-1]
        if program == "segattn":
            complaint = _parse(parser, words[1:])
            if complaint:
                problems.append(f"{document.name}:{line}: {shlex.join(words)}\n    {complaint}")
        elif program.startswith("python") and len(words) > 1:
            script = words[1]
            if script.startswith(_SCRIPT_FOLDERS) and not (REPO / script).is_file():
                problems.append(f"{document.name}:{line}: {script} does not exist")
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)
