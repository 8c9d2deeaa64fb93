"""Results page of the prepared GPU check, rendered from ``results/*.json``; says "not measured" while the folder
holds no result."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import _pagekit as kit

PARTS = {
    "tests": "the CUDA tests (skipped on a CPU machine) and the device-path tests",
    "layouts": "grouped vs per-task Conv-4, channels-last, `cudnn.benchmark`: the CPU-measured choices re-timed "
    "(`scripts/gpu_layouts.py`)",
    "peers": "`bench peers --device cuda`: MAML / first-order MAML / ANIL against the peer libraries",
    "cost": "`bench cost --device cuda`: the MTL-vs-MAML cost table on Conv-4 at 28 px and ResNet-12 at 84 px",
    "compare": "a short `compare` (MTL, MAML, ProtoNet; 30 s of training each) on glyphs",
}


def _summary(data: dict[str, Any]) -> str:
    rows = [
        [name, PARTS.get(name, ""), "passed" if r["passed"] else f"failed (rc {r['rc']})", f"{r['seconds']:.0f}"]
        for name, r in data.items()
    ]
    return kit.table(["part", "what", "result", "seconds"], rows)


def _layouts(data: dict[str, Any]) -> str:
    rows = [
        [f"MAML `{lib}`", setting, f"{1000 * s:.1f}"]
        for lib, cells in data["maml_1shot_meta_batch32_s"].items()
        for setting, s in cells.items()
    ]
    rows += [
        ["MTL step, 880 images", setting, f"{1000 * s:.1f}"] for setting, s in data["conv4_880_images_step_s"].items()
    ]
    return (
        kit.table(["workload", "setting", "ms (median)"], rows)
        + f"\n\nDevice: {data['device']}, torch {data['torch']}."
    )


def render(folder: Path) -> str:
    """The markdown of the results page: the check's figures from its JSON, or "not measured" without them."""
    results = folder / "results"
    out = [
        "# The prepared GPU check",
        "Question: do the CUDA paths work, and do the layout and execution choices measured on the CPU (grouped "
        "task chunks, channels-last weights, the closed-form batch norm) still hold on a GPU?",
        "Protocol: `scripts/gpu_check.sh` runs five parts under per-part time limits that add up to under 8 "
        "minutes on one GPU:",
        kit.table(["part", "what"], [[k, v] for k, v in PARTS.items()]),
        kit.command("bash scripts/gpu_check.sh   # writes experiments/gpu_check/results/"),
    ]
    if not (results / "summary.json").is_file():
        out.append(
            "**Not measured**: no result of this check is stored yet, so every CUDA figure is still "
            "unmeasured. The script has been checked to parse, to fit its budget and to stop with exit "
            "code 3 on a machine without CUDA (`tests/scripts/test_gpu_check.py`)."
        )
        return "\n\n".join(out) + "\n"
    out += ["## Parts", _summary(kit.load(folder, "summary.json"))]
    if (results / "layouts_cuda.json").is_file():
        out += ["## Layouts on the GPU", _layouts(kit.load(folder, "layouts_cuda.json"))]
    others = sorted(p.name for p in results.glob("*.json") if p.name not in {"summary.json", "layouts_cuda.json"})
    if others:
        out.append("Further results of the check (the benches' JSON): " + ", ".join(f"`{n}`" for n in others) + ".")
    return "\n\n".join(out) + "\n"
