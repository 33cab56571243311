"""The documentation site builds strictly, and its pages render.

The build is `make docs`'s (`mkdocs build --strict`: a broken link, a page
missing from the nav or an API path that does not resolve fails it), into
a temporary folder. Two of its pages, the home page and a family page, are
then opened in Debian's headless chromium: the screenshot must have the
window's size and not be blank, and the page's <title> must be the
expected one. Set `KERAS_SEGATTN_SCREENSHOTS=<folder>` to keep the PNGs.
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.docs.markdown_files import REPO

MKDOCS = Path(sys.executable).parent / "mkdocs"
CHROMIUM = "/usr/bin/chromium"
WINDOW = (1280, 1000)  # width, height
SCREENSHOTS = "KERAS_SEGATTN_SCREENSHOTS"

# page, what its <title> contains
PAGES = [("index.html", "keras_segattn"), ("semantic.html", "FCN and DeconvNet")]


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    """The strict build: (return code, its output, the site folder)."""
    if not MKDOCS.exists():
        pytest.skip(f"mkdocs is not installed beside {sys.executable} (requirements.txt)")
    site = tmp_path_factory.mktemp("site")
    done = subprocess.run(
        [str(MKDOCS), "build", "--strict", "--site-dir", str(site)],
        cwd=REPO,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    return done.returncode, done.stdout + done.stderr, site


def test_the_site_builds_strictly(build):
    returncode, output, _ = build
    assert returncode == 0, f"mkdocs build --strict failed:\n{output}"


def _chromium(*arguments, profile):
    return subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            *arguments,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(("page", "title"), PAGES, ids=[page for page, _ in PAGES])
def test_page_renders(build, page, title, tmp_path):
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"chromium is not installed at {CHROMIUM} (apt-get install chromium)")
    _, output, site = build
    html = site / page
    assert html.is_file(), f"the build wrote no {page}:\n{output}"
    url = html.as_uri()

    dom = _chromium("--dump-dom", url, profile=tmp_path / "profile")
    found = re.search(r"<title>(.*?)</title>", dom.stdout, re.DOTALL)
    assert found, f"chromium read no <title> from {url}:\n{dom.stderr[-2000:]}"
    assert title in found[1], f"{page}'s title is {found[1]!r}, not one with {title!r}"

    png = tmp_path / (Path(page).stem + ".png")
    shot = _chromium(
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
        f"--screenshot={png}",
        url,
        profile=tmp_path / "profile",
    )
    assert png.is_file(), f"chromium wrote no screenshot of {url}:\n{shot.stderr[-2000:]}"
    if os.environ.get(SCREENSHOTS):
        folder = Path(os.environ[SCREENSHOTS])
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(png, folder / png.name)

    with Image.open(png) as image:
        assert image.size == WINDOW, f"{png.name} is {image.size}, the window {WINDOW}"
        pixels = np.asarray(image.convert("RGB"))
    colours = len(np.unique(pixels.reshape(-1, 3), axis=0))
    spread = pixels.astype(float).std()
    # A blank page is one colour (std 0); a page of text on a plain
    # background has hundreds of colours (antialiasing) and a std above 20.
    assert spread > 10 and colours > 16, (
        f"{png.name} looks blank: {colours} colours, pixel std {spread:.1f}"
    )
