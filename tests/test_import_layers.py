"""Tests for the package's layers contract (pyproject.toml [tool.importlinter], what `make test` runs as
`lint-imports`): the package keeps it, and an upward import breaks it."""

import os
import shutil
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LINT_IMPORTS = os.path.join(os.path.dirname(sys.executable), "lint-imports")


def _lint_imports(root):
    """Runs `lint-imports` on the package under `root` (its pyproject.toml, its bgshift_tf/)."""
    if not os.path.isfile(LINT_IMPORTS):
        pytest.fail(f"{LINT_IMPORTS} is missing: pip install -r requirements-dev.txt (import-linter)")
    env = {**os.environ, "PYTHONPATH": root}
    return subprocess.run([LINT_IMPORTS, "--no-cache"], cwd=root, env=env, capture_output=True, text=True,
                          timeout=300)


def _copy_package(tmp_path):
    root = str(tmp_path / "repo")
    shutil.copytree(os.path.join(ROOT, "bgshift_tf"), os.path.join(root, "bgshift_tf"),
                    ignore=shutil.ignore_patterns("__pycache__", "configs"))
    shutil.copy(os.path.join(ROOT, "pyproject.toml"), root)
    return root


def test_the_contract_lists_every_layer_top_to_bottom():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        config = tomllib.load(f)["tool"]["importlinter"]
    (contract,) = config["contracts"]
    assert config["root_package"] == "bgshift_tf" and contract["type"] == "layers" and contract["exhaustive"]
    assert contract["layers"][1:] == [
        "workflow", "report", "export", "generation | evaluation", "training", "models", "data", "core"]


@pytest.mark.slow
def test_the_package_keeps_its_layers_and_an_upward_import_breaks_them(tmp_path):
    kept = _lint_imports(ROOT)
    assert kept.returncode == 0, kept.stdout + kept.stderr
    assert "1 kept, 0 broken" in kept.stdout

    root = _copy_package(tmp_path)
    upward = os.path.join(root, "bgshift_tf", "data", "upward.py")
    with open(upward, "w") as f:
        f.write(textwrap.dedent('''\
            """An upward import: the data layer using the report layer."""

            def draw():
                from bgshift_tf.report import figures  # a function-level import counts too

                return figures
            '''))
    broken = _lint_imports(root)
    assert broken.returncode != 0, broken.stdout
    assert "BROKEN" in broken.stdout and "bgshift_tf.data.upward -> bgshift_tf.report.figures" in broken.stdout


@pytest.mark.slow
def test_a_module_outside_every_layer_breaks_the_contract(tmp_path):
    root = _copy_package(tmp_path)
    with open(os.path.join(root, "bgshift_tf", "unplaced.py"), "w") as f:
        f.write('"""A top-level module the contract does not place."""\n')
    broken = _lint_imports(root)
    assert broken.returncode != 0, broken.stdout
    assert "bgshift_tf.unplaced" in broken.stdout
