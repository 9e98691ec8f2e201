"""timm's own model tests, unmodified, from the sdist of the installed timm version, on the zoo's variants.

The sdist is downloaded from PyPI once (`pip download --no-deps --no-binary :all: timm==VERSION`) and its tests
are kept under the toolkit's cache dir. Without it the tests skip and say what is missing, except under
TOKENMIX_REQUIRE_TIMM_SUITE=1 (CI), where they fail. `timm_suite_plugin.py` registers and selects the variants.
"""
from __future__ import annotations

import ast
import fnmatch
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

import pytest
import timm
from conftest import ROOT, skip_unless_required
from timm_suite_plugin import SELECTED

from harness.datasets import cache_dir

pytestmark = pytest.mark.slow  # minutes: timm's own model tests on every variant

# what timm's suite runs on a standard (NCHW, standard-features) model with a pretrained cfg and no weights URL
STANDARD_TESTS = {
    "test_model_forward", "test_model_backward", "test_model_default_cfgs", "test_model_forward_torchscript",
    "test_model_forward_features", "test_model_forward_fx", "test_model_backward_fx",
    "test_model_forward_fx_torchscript",
}


def fetch_timm_tests(version: str) -> Path:
    """The folder holding `tests/` and `pyproject.toml` of timm's sdist at `version`, downloaded once.

    Only those are unpacked: the sdist's `timm/` next to its tests would shadow the installed package."""
    target = cache_dir() / f"timm-{version}-sdist"
    if (target / "tests" / "test_models.py").exists():
        return target
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:", f"timm=={version}",
             "-d", tmp], capture_output=True, text=True, timeout=600)
        archives = list(Path(tmp).glob(f"timm-{version}.tar.gz"))
        if proc.returncode or not archives:
            reason = (proc.stderr.strip().splitlines() or ["no sdist downloaded"])[-1]
            raise FileNotFoundError(f"cannot download timm=={version}'s sdist from PyPI, whose tests/test_models.py "
                                    f"this runs (pip download --no-deps --no-binary :all: timm=={version}: {reason})")
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=target.parent))
        with tarfile.open(archives[0]) as tar:
            prefix = f"timm-{version}/"
            members = [m for m in tar.getmembers()
                       if m.name.startswith((prefix + "tests/", prefix + "pyproject.toml"))]
            for m in members:
                m.name = m.name[len(prefix):]
            tar.extractall(staging, members=members, filter="data")
        shutil.rmtree(target, ignore_errors=True)
        os.replace(staging, target)  # a complete folder or none, for the next run to find
    return target


@pytest.fixture(scope="module")
def timm_tests() -> Path:
    try:
        return fetch_timm_tests(timm.__version__)
    except (FileNotFoundError, subprocess.TimeoutExpired) as e:
        skip_unless_required(str(e), "TOKENMIX_REQUIRE_TIMM_SUITE")


def module_list(path: Path, name: str) -> list[str]:
    """A module-level list of strings in a Python file (read, not imported)."""
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == name for t in node.targets):
            return ast.literal_eval(node.value)
    raise LookupError(f"{path} has no list {name}")


def test_every_variant_takes_timms_standard_checks(timm_tests):
    """No name falls into the non-standard group of the suite (looser checks meant for token-sequence models)."""
    from mixers.zoo import VARIANTS
    patterns = module_list(timm_tests / "tests" / "test_models.py", "NON_STD_FILTERS")
    assert patterns and not [(n, p) for n in VARIANTS for p in patterns if fnmatch.fnmatch(n, p)]


@pytest.mark.timeout(1800)
def test_timm_model_suite_passes_on_every_selected_variant(timm_tests, tmp_path):
    junit = tmp_path / "timm.xml"
    env = {k: v for k, v in os.environ.items() if k != "GITHUB_ACTIONS"}  # that flag drops tests from the suite
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "tests"), env.get("PYTHONPATH", "")])  # the plugin
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "timm_suite_plugin", "-p", "no:cacheprovider", "-q", "-rfEs",
         f"--junitxml={junit}", "tests/test_models.py"],
        cwd=timm_tests, env=env, capture_output=True, text=True, timeout=1700)
    assert proc.returncode == 0, proc.stdout[-8000:] + proc.stderr[-2000:]
    outcomes: dict[str, set[str]] = defaultdict(set)
    for case in ET.parse(junit).iter("testcase"):
        function, params = case.get("name").rstrip("]").split("[")
        assert not [c.tag for c in case if c.tag in ("skipped", "failure", "error")], case.get("name")
        outcomes[params.split("-")[-1]].add(function)
    assert sorted(outcomes) == SELECTED
    assert {name: STANDARD_TESTS - ran for name, ran in outcomes.items() if ran != STANDARD_TESTS} == {}
