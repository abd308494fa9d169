"""The README's deploy commands are the ones the lab runs (deploy/lab/readme_blocks.py).

The lab runs the fenced blocks after `<!-- lab: NAME -->` markers verbatim against its
booted Pi; these tests keep those blocks present and runnable, so the README cannot
drift from what the lab proves.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "deploy" / "lab" / "readme_blocks.py"


def load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("readme_blocks", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


readme_blocks = load()


def document(**blocks: str) -> str:
    """A README with one marked ```sh block per NAME=BODY (underscores become dashes)."""
    parts = ["# Title", ""]
    for name, body in blocks.items():
        parts += [f"<!-- lab: {name.replace('_', '-')} -->", "```sh", body, "```", ""]
    return "\n".join(parts)


COMPLETE = {
    "laptop": "make deploy",
    "on_pi": "sudo ./install.sh",
    "undo_laptop": "make undeploy",
    "undo_on_pi": "sudo ./install.sh --undo",
}


def test_the_readme_has_every_block_the_lab_runs() -> None:
    found = readme_blocks.needed((ROOT / "README.md").read_text(encoding="utf-8"))
    assert list(found) == list(readme_blocks.NEEDED)
    assert all(body.strip() for body in found.values())


def test_a_complete_document_gives_each_block_verbatim() -> None:
    found = readme_blocks.needed(document(**COMPLETE))
    assert found == {
        "laptop": "make deploy\n",
        "on-pi": "sudo ./install.sh\n",
        "undo-laptop": "make undeploy\n",
        "undo-on-pi": "sudo ./install.sh --undo\n",
    }


@pytest.mark.parametrize("missing", list(COMPLETE))
def test_a_missing_marker_is_refused_by_name(missing: str) -> None:
    blocks = {name: body for name, body in COMPLETE.items() if name != missing}
    with pytest.raises(readme_blocks.BlockError, match=missing.replace("_", "-")):
        readme_blocks.needed(document(**blocks))


def test_an_empty_block_is_refused() -> None:
    with pytest.raises(readme_blocks.BlockError, match=r"'lab: on-pi'.*empty"):
        readme_blocks.needed(document(**{**COMPLETE, "on_pi": "   "}))


def test_a_marker_without_a_fence_or_twice_is_refused() -> None:
    loose = document(**COMPLETE).replace("```sh\nsudo ./install.sh\n```", "sudo ./install.sh")
    with pytest.raises(readme_blocks.BlockError, match="not followed by a fenced block"):
        readme_blocks.needed(loose)
    twice = document(**COMPLETE) + "\n<!-- lab: laptop -->\n```sh\nmake deploy\n```\n"
    with pytest.raises(readme_blocks.BlockError, match="twice"):
        readme_blocks.needed(twice)
    unclosed = document(**COMPLETE) + "\n<!-- lab: extra -->\n```sh\nmake deploy\n"
    with pytest.raises(readme_blocks.BlockError, match="no closing fence"):
        readme_blocks.needed(unclosed)


def test_an_indented_block_in_a_list_loses_its_indent() -> None:
    text = document(**COMPLETE).replace(
        "<!-- lab: laptop -->\n```sh\nmake deploy\n```",
        "1. Run:\n\n   <!-- lab: laptop -->\n   ```sh\n   make deploy\n   ```",
    )
    assert readme_blocks.needed(text)["laptop"] == "make deploy\n"


def test_the_command_line_substitutes_the_pi_address(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(document(**{**COMPLETE, "laptop": "ssh pi@PI_ADDRESS true"}))
    run = [sys.executable, str(SCRIPT), str(readme)]
    out = subprocess.run(
        [*run, "laptop", "10.203.0.10"], capture_output=True, text=True, check=False
    )
    assert (out.returncode, out.stdout) == (0, "ssh pi@10.203.0.10 true\n")
    readme.write_text(document(laptop="make deploy"))
    out = subprocess.run(run, capture_output=True, text=True, check=False)
    assert out.returncode == 1 and "<!-- lab: on-pi -->" in out.stderr
