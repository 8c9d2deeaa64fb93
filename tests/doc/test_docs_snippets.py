"""Every ```python block of the documentation runs as written.

The blocks of one page run in order in one namespace (a page's later blocks may use what its
earlier ones defined), in an empty working directory. A block is skipped only when the line
before it is the HTML comment ``<!-- no-test -->`` (used for code that needs torchrun or a
user's own files). The registries page's plugin module is also saved as a file and trained
and evaluated from the command line with ``--plugin``, as the page says it can be.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
SKIP = "<!-- no-test -->"
BLOCK = re.compile(r"^```python\n(.*?)^```", flags=re.S | re.M)


def python_blocks(page: Path) -> list[str]:
    """The page's python blocks that are not marked to skip, in order."""
    text = page.read_text(encoding="utf-8")
    blocks = []
    for match in BLOCK.finditer(text):
        before = text[: match.start()].rstrip().splitlines()
        if before and before[-1].strip() == SKIP:
            continue
        blocks.append(match.group(1))
    return blocks


PAGES = sorted(p for p in DOCS.rglob("*.md") if "results" not in p.relative_to(DOCS).parts and python_blocks(p))


@pytest.fixture
def user_dir(tmp_path, monkeypatch):
    # one intra-op thread: the snippets' tensors are tiny, and on a shared CPU several threads
    # per process oversubscribe the cores (a meta-RL iteration then takes ten times longer)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("METABRIDGE_CACHE", str(tmp_path / "cache"))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    sys.modules.pop("my_plugins", None)
    torch.set_num_threads(threads)


def test_the_docs_have_snippets() -> None:
    names = {p.relative_to(DOCS).as_posix() for p in PAGES}
    assert {"algorithms/maml.md", "concepts/contract.md", "weighting/loss_based.md", "rl/maml_trpo.md"} <= names, names


@pytest.mark.parametrize("page", PAGES, ids=[p.relative_to(DOCS).as_posix() for p in PAGES])
def test_page_snippets_run(page: Path, user_dir) -> None:
    namespace: dict = {"__name__": "docs_snippet"}
    for block in python_blocks(page):
        exec(compile(block, str(page), "exec"), namespace)


def test_skip_marker_is_honoured(tmp_path) -> None:
    page = tmp_path / "p.md"
    page.write_text(f"text\n\n```python\nx = 1\n```\n\n{SKIP}\n```python\nraise SystemExit\n```\n")
    assert python_blocks(page) == ["x = 1\n"]


def _letters(root: Path, classes: int = 40, per_class: int = 6) -> Path:
    rng = np.random.default_rng(0)
    from PIL import Image

    for c in range(classes):  # 40 classes: the seeded 64/16/20% split leaves >= 5 for validation and test
        folder = root / f"class_{c:02d}"
        folder.mkdir(parents=True)
        proto = rng.integers(0, 256, (28, 28))
        for i in range(per_class):
            img = np.clip(proto + rng.normal(0, 30, (28, 28)), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(folder / f"{i}.png")
    return root


def test_registries_plugin_trains_and_evaluates_from_the_cli(user_dir) -> None:
    from cli_runner import run_cli

    (plugin,) = [b for b in python_blocks(DOCS / "concepts" / "registries.md") if "register_algorithm" in b]
    (user_dir / "my_plugins.py").write_text(plugin)
    _letters(user_dir / "my_letters")
    fast = "--steps 3 --eval-every 3 --val-episodes 10 --test-episodes 10 --eval-batch-size 10 --meta-batch-size 2"
    train = "train --plugin my_plugins --algorithm nearest_centroid --model tiny_cnn --task my_letters --n-way 5"
    r = run_cli(
        [
            *train.split(),
            *"--k-shot 1 --q-query 3 --hp temperature=2.0 --out runs/nc".split(),
            *fast.split(),
            "--no-progress",
            "--device",
            "cpu",
        ]
    )
    assert r.exit_code == 0, r.output
    r = run_cli(["eval", "runs/nc", "--episodes", "10", "--no-progress"])
    assert r.exit_code == 0 and "nearest_centroid" in r.output and "±" in r.output, r.output
