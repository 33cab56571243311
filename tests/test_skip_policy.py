"""The CI skip policy (tests/skip_policy.py): with the variable set, a
skipped test and a module skipped at import fail, giving their reason;
without it they stay skips."""

import os
import subprocess
import sys

from tests.skip_policy import VARIABLE

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SKIPPING = """
import pytest

def test_skips():
    pytest.skip("the data folder moved")

def test_passes():
    pass

@pytest.mark.xfail(reason="known", strict=True)
def test_expected_failure():
    assert False
"""

SKIPPED_MODULE = """
import pytest
pytest.importorskip("a_package_that_is_not_installed")

def test_never_runs():
    pass
"""


def run_pytest(folder, enforced):
    (folder / "conftest.py").write_text(
        "from tests.skip_policy import pytest_make_collect_report, pytest_runtest_makereport\n"
    )
    (folder / "test_skipping.py").write_text(SKIPPING)
    (folder / "test_skipped_module.py").write_text(SKIPPED_MODULE)
    env = {k: v for k, v in os.environ.items() if k != VARIABLE}
    env["PYTHONPATH"] = ROOT
    if enforced:
        env[VARIABLE] = "1"
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:xdist",
            "-rfEs",
            "--continue-on-collection-errors",
            str(folder),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=folder,
        timeout=120,
    )


def test_ci_counts_skips_as_failures(tmp_path):
    result = run_pytest(tmp_path, enforced=True)
    assert result.returncode == 1, result.stdout
    assert "the data folder moved" in result.stdout
    assert "a_package_that_is_not_installed" in result.stdout
    assert "1 failed, 1 passed, 1 xfailed, 1 error" in result.stdout, result.stdout


def test_locally_skips_stay_skips(tmp_path):
    result = run_pytest(tmp_path, enforced=False)
    assert result.returncode == 0, result.stdout
    assert "1 passed, 2 skipped, 1 xfailed" in result.stdout, result.stdout
