"""The README's library section, run as a new user would: its Python blocks in order, its
plugin saved as a module and used from the CLI, its own-folder commands on a generated
folder (with fewer steps), and its TOML config."""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from metabridge.cli import app
from metabridge.config import ExperimentConfig

README = Path(__file__).resolve().parents[2] / "README.md"
FAST = ["--steps", "3", "--eval-every", "3", "--val-episodes", "10", "--test-episodes", "10",
        "--eval-batch-size", "10", "--meta-batch-size", "2", "--no-progress", "--device", "cpu"]


def _section() -> str:
    text = README.read_text(encoding="utf-8")
    return text[text.index("## Use it as a library"):text.index("## What is in it")]


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", _section(), flags=re.S)


def _letters(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for c in range(40):  # 40 classes: the seeded 64/16/20% split leaves >= 5 for validation and test
        d = root / f"class_{c:02d}"
        d.mkdir(parents=True)
        proto = rng.integers(0, 256, (28, 28))
        for i in range(8):
            img = np.clip(proto + rng.normal(0, 30, (28, 28)), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(d / f"{i}.png")
    return root


@pytest.fixture
def user_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("METABRIDGE_CACHE", str(tmp_path / "cache"))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    sys.modules.pop("my_plugins", None)


def test_python_blocks_run_in_order(user_dir, capsys):
    blocks = _blocks("python")
    assert len(blocks) == 5
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, str(README), "exec"), namespace)
    out = capsys.readouterr().out
    assert re.search(r"^maml \d\.\d+ ± ", out, flags=re.M) and re.search(r"^mtl \d\.\d+ ± ", out, flags=re.M)
    assert "['temperature']" in out
    for method in ("equal", "pcgrad", "nash_mtl", "inverse_loss"):
        assert re.search(rf"^{method} \[\d+\.\d+, \d+\.\d+\]$", out, flags=re.M), out
    # meta-RL: five MAML-TRPO iterations print before -> after adaptation, then returns after 0..2 updates
    its = re.findall(r"^(\d) (-\d+\.\d+) -> (-\d+\.\d+)$", out, flags=re.M)
    assert [int(i) for i, _, _ in its] == list(range(5)), out
    assert re.search(r"^\[-\d+\.\d+, -\d+\.\d+, -\d+\.\d+\]$", out, flags=re.M), out
    from metabridge.multitask.weighting import unregister_weighting

    unregister_weighting("inverse_loss")


def test_plugin_and_own_folder_from_the_cli(user_dir):
    (user_dir / "my_plugins.py").write_text(_blocks("python")[1])
    _letters(user_dir / "my_letters")
    runner = CliRunner()
    commands = [line.split()[1:] for line in _blocks("bash")[0].splitlines() if line.startswith("metabridge")]
    for cmd in commands:
        args = cmd[:cmd.index("#")] if "#" in cmd else cmd
        # the README's command, with fewer steps and episodes (a later option wins)
        args = [*args, *FAST] if args[0] == "train" else [*args, "--episodes", "10", "--no-progress"]
        r = runner.invoke(app, args)
        assert r.exit_code == 0, (args, r.output)
        if args[0] == "eval":
            assert "accuracy" in r.output and "±" in r.output
    r = runner.invoke(app, ["train", "--plugin", "my_plugins", "--algorithm", "nearest_centroid", "--model", "tiny_cnn",
                            "--task", "my_letters", "--n-way", "5", "--k-shot", "1", "--q-query", "3",
                            "--hp", "temperature=2.0", "--out", "runs/nc", *FAST])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["eval", "runs/nc", "--episodes", "10", "--no-progress"])
    assert r.exit_code == 0 and "nearest_centroid on" in r.output, r.output


def test_toml_block_is_a_valid_config():
    (toml,) = _blocks("toml")
    cfg = ExperimentConfig.from_dict(tomllib.loads(toml)).validate()
    assert cfg.algorithm == "maml" and cfg.hparams == {"inner_lr": 0.4, "eval_steps": 3}
