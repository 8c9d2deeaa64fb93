"""The package as a user gets it: ``python -m build`` makes a wheel and an sdist, the wheel installs into a
fresh virtual environment beside the pinned CPU torch, and the README's few-shot snippet runs there."""

from __future__ import annotations

import re
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def readme_fewshot_snippet() -> str:
    """The README's first python block (few-shot learning on one's own tensors)."""
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(encoding="utf-8"), re.S)
    assert blocks, "README.md has no python block"
    return blocks[0]


def run(cmd: list[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{' '.join(cmd)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.mark.slow
def test_wheel_installs_in_a_fresh_environment_and_runs_the_readme_snippet(tmp_path: Path) -> None:
    pytest.importorskip("build")
    dist = tmp_path / "dist"
    run(
        [sys.executable, "-m", "build", "--no-isolation", "--wheel", "--sdist", "--outdir", str(dist), str(ROOT)],
        cwd=tmp_path,
    )
    wheels, sdists = sorted(dist.glob("metabridge-*.whl")), sorted(dist.glob("metabridge-*.tar.gz"))
    assert len(wheels) == 1 and len(sdists) == 1, sorted(p.name for p in dist.iterdir())
    names = zipfile.ZipFile(wheels[0]).namelist()
    assert "metabridge/__init__.py" in names and "metabridge/py.typed" in names
    assert not any(n.startswith(("tests/", "experiments/", "docs/")) for n in names), (
        "the wheel carries non-package files"
    )
    with tarfile.open(sdists[0]) as sdist:
        assert any(n.endswith("/LICENSE") for n in sdist.getnames())

    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", str(venv)], cwd=tmp_path)
    python = venv / "bin" / "python"
    pip = [str(python), "-m", "pip", "--disable-pip-version-check", "-q", "install"]
    run([*pip, "torch==2.13.0"], cwd=tmp_path)  # the CPU build, first, as scripts/setup.sh does
    run([*pip, str(wheels[0])], cwd=tmp_path)
    version = run([str(python), "-c", "import metabridge; print(metabridge.__version__)"], cwd=tmp_path).stdout.strip()
    assert version == "1.0.0"
    snippet = tmp_path / "snippet.py"
    snippet.write_text(readme_fewshot_snippet(), encoding="utf-8")
    out = run([str(python), str(snippet)], cwd=tmp_path).stdout
    assert "maml" in out and "mtl" in out, out
