"""The layers are a contract: import-linter keeps them, and a forbidden import breaks it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"

pytestmark = pytest.mark.skipif(not LINT_IMPORTS.exists(), reason="import-linter not installed")


def lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    """Run the project's contracts over the `bridge` package found in `tree`."""
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(tree / "pyproject.toml"), "--no-cache"],
        cwd=tree,
        env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A copy of the package and its contracts, to break on purpose."""
    shutil.copytree(
        ROOT / "bridge", tmp_path / "bridge", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_the_code_keeps_every_contract(tree: Path) -> None:
    result = lint_imports(tree)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "broken" in result.stdout and " 0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "forbidden", "contract"),
    [
        ("site/model.py", "import bridge.pvs.gate", "The site model is pure"),
        ("site/legacy.py", "import aiohttp", "The site model is pure"),
        ("pvs/gate.py", "import bridge.web.keys", "Layers:"),
        ("cache/answers.py", "import bridge.app", "Layers:"),
        ("host/tls.py", "import bridge.web.errors", "Only the factory"),
        ("simulator/model.py", "import bridge.pvs.client", "Only the PVS layer"),
    ],
)
def test_a_forbidden_import_breaks_its_contract(
    tree: Path, module: str, forbidden: str, contract: str
) -> None:
    path = tree / "bridge" / module
    path.write_text(path.read_text() + f"\n{forbidden}  # noqa\n")
    result = lint_imports(tree)
    assert result.returncode != 0
    broken = [line for line in result.stdout.splitlines() if line.endswith("BROKEN")]
    assert any(line.startswith(contract) for line in broken), result.stdout
