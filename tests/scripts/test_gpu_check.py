"""The prepared GPU check (scripts/gpu_check.sh): fits its 8-minute budget by construction, writes into the
gpu_check experiment's results folder, and on a machine without CUDA it says so and exits 3 instead of failing
half-way."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "gpu_check.sh"


def test_part_limits_fit_eight_minutes():
    text = SCRIPT.read_text()
    limits = [int(m) for m in re.findall(r"^part \w+ (\d+) ", text, flags=re.M)]
    assert len(limits) == 5 and sum(limits) + 10 * len(limits) <= 480  # + each part's kill grace
    assert subprocess.run(["bash", "-n", str(SCRIPT)]).returncode == 0


def test_results_go_to_the_gpu_check_experiment():
    text = SCRIPT.read_text()
    assert "OUT_DIR=${OUT:-experiments/gpu_check/results}" in text
    assert "bench/results" not in text and "../shared" not in text
    layouts = (ROOT / "scripts" / "gpu_layouts.py").read_text()
    assert 'default="experiments/gpu_check/results/layouts_cuda.json"' in layouts
    assert (ROOT / "experiments" / "gpu_check" / "report.py").is_file()


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA machine runs the real check")
def test_without_cuda_it_exits_3_with_a_message(tmp_path):
    done = subprocess.run(
        ["bash", str(SCRIPT)],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PY": sys.executable, "OUT": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 3 and "no CUDA device" in done.stdout
    assert not list(tmp_path.rglob("*.json"))
