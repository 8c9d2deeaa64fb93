"""Results page of the speed and memory of MAML / first-order MAML / ANIL against the peer libraries (higher,
TorchOpt, learn2learn), rendered from ``results/*.json``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import _pagekit as kit

NAME = "speed_vs_peers"
METHODS = {"maml": "MAML", "fomaml": "first-order MAML", "anil": "ANIL"}
PARTS = [
    (
        "higher_torchopt",
        "metabridge against higher and TorchOpt, 1-shot and 5-shot",
        "--libs metabridge metabridge:t1 higher torchopt --no-allocator",
        "`metabridge:t1` is metabridge with `task_threads=1` (no parallel task chunks: less memory). The allocator "
        "tuning was not applied to the peers in this run.",
    ),
    (
        "higher_torchopt_allocator_tuned",
        "The same, with the allocator tuning applied to every library",
        "--libs metabridge higher torchopt",
        "The allocator tuning (`metabridge.device.tune_cpu_allocator`: glibc keeps freed memory in the heap instead of "
        "handing every block above 32 MiB back to the OS) is applied to every library in the process and in the "
        "memory subprocesses.",
    ),
    (
        "with_learn2learn_1shot",
        "With learn2learn, the second-order path reworked, 1-shot",
        "--shots 1 --libs metabridge metabridge:c1 higher torchopt learn2learn",
        "learn2learn 0.2.0 as its docs write it (`l2l.algorithms.MAML(model, lr=0.4, first_order=...)`, `clone()` + "
        "`adapt()` per task; ANIL wraps only the head). `metabridge:c1` is metabridge with one task per grouped chunk "
        "(`ExecutionOptions(task_chunk=1)`), the default being four 1-shot tasks per chunk.",
    ),
    (
        "with_learn2learn_maml_5shot",
        "With learn2learn, MAML at 5-shot",
        "--methods maml --shots 5 --libs metabridge metabridge:c1 higher torchopt learn2learn",
        "At 5-shot the four-task chunks buy nothing, so the automatic chunk follows the episode (about 20 support "
        "images per chunk: 5-way 1-shot 4 tasks, 5-shot 1): the 5-shot default is the `:c1` configuration.",
    ),
    (
        "closed_form_batch_norm_1shot",
        "Closed-form batch-norm double backward, 1-shot",
        "--shots 1 --libs metabridge metabridge:aten-bn higher torchopt learn2learn",
        "In this run the `metabridge` column had the closed form (`models/batch_norm.py`: five per-channel reductions "
        "and five multiply-adds instead of ATen's composite) in all three methods and `:aten-bn` ATen's. "
        '`ExecutionOptions(batch_norm="auto")` takes the closed form only where batch norm is differentiated twice '
        "(second-order MAML), so first-order MAML and ANIL default to the `:aten-bn` column.",
    ),
]


def _peers(row: dict[str, Any]) -> list[str]:
    return [lib for lib in row["median_s"] if not lib.startswith("metabridge")]


def _table(data: dict[str, Any]) -> str:
    libs = list(data["rows"][0]["median_s"])
    rows = []
    for r in data["rows"]:
        peers = _peers(r)
        fastest = min(r["median_s"][p] for p in peers) if peers else None
        speed = "—" if fastest is None else f"{fastest / r['median_s']['metabridge']:.2f}x"
        floor = "—" if r.get("floor_fraction") is None else f"{100 * r['floor_fraction']:.0f}%"
        grads = r.get("grad_rel_err", {})
        worst = max((grads[p] for p in peers if p in grads), default=None)
        rows.append(
            [
                METHODS.get(r["method"], r["method"]),
                str(r["shots"]),
                *[f"{r['median_s'][lib]:.2f}" for lib in libs],
                speed,
                floor,
                " / ".join(f"{r['peak_mib'][lib]:.0f}" for lib in libs if lib in r.get("peak_mib", {})),
                "—" if worst is None else f"{worst:.1e}",
            ]
        )
    headers = [
        "method",
        "K",
        *[f"`{lib}` s" for lib in libs],
        "vs fastest peer",
        "share of FLOP floor",
        "peak MiB " + " / ".join(libs),
        "max rel. grad. difference",
    ]
    return kit.table(headers, rows)


def _protocol(data: dict[str, Any]) -> str:
    p = data["protocol"]
    text = (
        f"{p['n_way']}-way, {p['queries']} queries per class, {p['inner_steps']} inner steps of "
        f"{p['inner_lr']}, meta-batch {p['meta_batch']}, {p['model']} on {'x'.join(map(str, p['input'][1:]))} "
        f"inputs; {p['statistic']} of {p['repeats']} {'interleaved ' if p.get('interleaved') else ''}repeats "
        f"after {p['warmup']} warm-up. Matmul rate measured in this run: {data['matmul_gflops']:.0f} GFLOP/s."
    )
    if p.get("peer_versions"):
        text += " Peers: " + ", ".join(f"{k} {v.split(' ')[0]}" for k, v in p["peer_versions"].items()) + "."
    return text


def _variants(data: dict[str, Any]) -> str:
    row = data["rows"][0]
    rows = [
        [f"`{lib}`", f"{row['median_s'][lib]:.3f}", f"{row['ratio'][lib]:.2f}x", f"{row['peak_mib'][lib]:.0f}"]
        for lib in row["median_s"]
    ]
    return kit.table(["configuration", "s / meta-iteration", "x `metabridge`", "peak MiB"], rows)


def render(folder: Path) -> str:
    """The markdown of the results page, every figure from the JSON."""
    out = [
        "# Speed and memory of one meta-iteration against higher, TorchOpt and learn2learn",
        "Question: how long does one meta-iteration of MAML, first-order MAML and ANIL take in metabridge and in "
        "the peer libraries on the same tasks and initial weights, how much memory does it use, and do the "
        "meta-gradients agree?",
        "Protocol: Conv-4 (64 filters), 28x28 inputs, 5-way, 15 queries per class, 5 inner steps of 0.4, "
        "meta-batch 32, the same initial weights and tasks for every library; median of interleaved repeats; peak "
        "memory per configuration in a fresh process. \"vs fastest peer\" = the fastest peer's time / metabridge's; "
        '"share of FLOP floor" = (counted FLOPs / the measured matmul rate) / metabridge\'s time. The peers are '
        "installed by `scripts/install_peers.sh`; every part: `bash experiments/speed_vs_peers/run.sh`.",
    ]
    for name, title, args, note in PARTS:
        data = kit.load(folder, f"{name}.json")
        out += [
            f"## {title}",
            kit.command(f"metabridge bench peers {args} --out runs/experiments/peers_{name}"),
            _protocol(data),
            _table(data),
            note,
            kit.machine(data.get("machine")),
        ]
        if data.get("memory_note"):
            out.append(f"Note stored with the run: {data['memory_note']}.")
    variants = kit.load(folder, "execution_variants_maml_1shot.json")
    out += [
        "## metabridge's execution variants, MAML 1-shot, meta-batch 8",
        kit.command(
            "metabridge bench peers --methods maml --shots 1 --meta-batch 8 --repeats 3 --libs metabridge "
            "metabridge:t1 metabridge:all metabridge:all-cl metabridge:all-im2col metabridge:loop "
            "metabridge:vmap torchopt --out runs/experiments/peers_execution_variants"
        ),
        _variants(variants),
        kit.machine(variants.get("machine")),
        "What it says: metabridge's default is the fastest configuration measured and faster than every peer, at "
        "the price of memory (parallel task chunks); `task_threads=1` / `task_chunk=1` trade the time back for "
        "memory. The meta-gradients of all libraries agree to float64 rounding. The share of the FLOP floor stays "
        "far below what a compiler could reach: convolutions on these small shapes and memory-bound element-wise "
        "operators take the rest, and `torch.compile` does not support the `create_graph` backward that "
        "second-order MAML needs (the `torch_compile` page).",
        "No stored result (measured once by hand, not kept as JSON; rerun to see them): the effect of the "
        "allocator tuning and of channels-last weights on an MTL step and on ProtoNet's test episodes, the "
        "`torch.profiler` breakdowns of one chunk of four 1-shot MAML tasks, and MTL's per-task heads as one "
        "batched matmul against a loop over tasks (`metabridge bench mtl_heads`).",
        kit.image(NAME, "plot.png", "seconds per meta-iteration, closed-form batch norm run"),
    ]
    return "\n\n".join(out) + "\n"


def headline(folder: Path) -> list[dict[str, str]]:
    """README row: second-order MAML's speed against the fastest peer, latest run."""
    data = kit.load(folder, "closed_form_batch_norm_1shot.json")
    row = next(r for r in data["rows"] if r["method"] == "maml")
    fastest = min(row["median_s"][p] for p in _peers(row))
    worst = max(row["grad_rel_err"][p] for p in _peers(row))
    return [
        {
            "order": 5,
            "method": "MAML speed against higher / TorchOpt / learn2learn",
            "paper": "Finn et al. 2017",
            "headline": f"5-way 1-shot meta-iteration {fastest / row['median_s']['metabridge']:.2f}x the fastest "
            f"peer, gradients equal to {worst:.0e}",
        }
    ]
