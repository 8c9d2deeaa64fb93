"""Results page of the main job (`metabridge compare` with its defaults, seeds 0, 1, 2), rendered from
``results/seed*.json``; the former wall-clock protocol from ``results/mtl_maml_protonet_200s.json``."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import _pagekit as kit

from metabridge.benchmarks.compare import verdict, verdict_key

NAME = "fewshot_glyphs_main_job"
WALL_CLOCK = "mtl_maml_protonet_200s.json"
COSINE = "cosine_schedule_seed0_curves.json"
#: The default command run alone on the machine (nothing else running, its default threads), for its wall time.
ALONE = "alone_default_command.json"
SHOTS = ("1", "5")


def seed_runs(folder: Path) -> dict[int, dict[str, Any]]:
    """``{seed: compare.json}`` of every ``results/seed<N>.json``, by seed."""
    found = {}
    for path in (folder / "results").glob("seed*.json"):
        match = re.fullmatch(r"seed(\d+)\.json", path.name)
        if match:
            found[int(match.group(1))] = kit.load(folder, path.name)
    return dict(sorted(found.items()))


def _short(method: str) -> str:
    return kit.LABELS.get(method, method).split(" (")[0]


def _protocol(data: dict[str, Any]) -> str:
    s, cfg = data["settings"], data["methods"]["mtl"]["config"]
    return (
        f"Protocol: `metabridge compare` with its defaults. {s['n_way']}-way {s['k_shot']}-shot glyph training episodes "
        f"with {s['q_query']} queries, meta-batch {s['meta_batch_size']}, {s['model']}; **{s['budget_steps']} training "
        f"steps per method** (a step budget: the accuracies do not depend on the machine's speed or load), the "
        f"{s['recipe']} recipe of Wang et al.'s MTL code (augmentation `{cfg['augment']}` for every method; MTL's "
        f"head initialisation `{cfg['hparams'].get('head_init')}` and per-task forward `"
        f"{cfg['hparams'].get('train_forward')}`) with the `{cfg['lr_schedule']}` schedule (the recipe's x"
        f"{cfg['plateau_factor']} learning-rate cut, placed after 80% of the budget instead of at a validation "
        f"plateau, so that every method ends annealed), no early stopping; validation every {s['eval_every_steps']} "
        "steps on "
        f"{s['val_episodes']} fixed episodes; best-validation weights tested on the same {s['test_episodes']} fixed "
        f"episodes per shot ({' and '.join(map(str, s['test_shots']))}-shot, "
        f"{' and '.join(map(str, s['test_queries']))} queries). MAML: one inner step of 0.4 in training, three at "
        "test, Adam 1e-3; MTL: RAdam 1e-3; ProtoNet: Adam 1e-3. Time to MAML's accuracy: training seconds (and "
        "steps) until validation first reaches MAML's final validation accuracy minus its CI; sooner or later is "
        "decided in steps, the budget's unit, at the validations' resolution (a lead of one validation interval or "
        "less is 'as soon as'). Settled: converged by the project's rule (over the last third of the budget the "
        "validation trend gains at most the final CI and the last third's mean is at most a CI above the middle "
        "third's) or annealed: trained to the last step of the budget under the annealing schedule."
    )


def _accuracy_table(runs: dict[int, dict[str, Any]]) -> str:
    methods = list(next(iter(runs.values()))["methods"])
    rows = []
    for m in methods:
        cells = [_short(m)]
        for shot in SHOTS:
            tests = [r["methods"][m]["test"][shot] for r in runs.values()]
            cells.append(kit.over_seeds([t["mean"] for t in tests], 2, 100))
            cells.append("; ".join(kit.pm(100 * t["mean"], 100 * t["ci95"]) for t in tests))
        cells.append(kit.over_seeds([r["methods"][m]["train_seconds"] for r in runs.values()], 0))
        cells.append(kit.over_seeds([r["methods"][m]["peak_memory_mb"] for r in runs.values()], 0))
        rows.append(cells)
    headers = ["method"]
    for shot in SHOTS:
        headers += [f"{shot}-shot test % over seeds", f"{shot}-shot per seed (episode CI)"]
    return kit.table(headers + ["train s over seeds", "peak MB over seeds"], rows)


def _verdict_rows(runs: dict[int, dict[str, Any]]) -> list[list[str]]:
    rows = []
    for seed, data in runs.items():
        v = verdict(data)
        cells = [str(seed)]
        for shot in SHOTS:
            tied = v["tied_with_best"][shot]
            cells.append(_short(v["best"][shot]) + (f" (tied: {', '.join(map(_short, tied))})" if tied else ""))
        cells += [v["mtl_vs_reference"][shot] for shot in SHOTS]
        ratio = {"same": "as soon as (within one validation interval)"}.get(
            v["mtl_to_reference"], v["mtl_to_reference"]
        )
        if v["time_ratio"] is not None:
            ratio += f" ({kit.num(v['time_ratio'])}x by seconds, {kit.num(v['step_ratio'])}x by steps)"
        cells.append(ratio)
        cells.append(", ".join(f"{_short(m)} {s}" for m, s in v["settled"].items()))
        cells.append(kit.num(data["total_seconds"] / 60, 1))
        rows.append(cells)
    return rows


def _same_protocol(runs: dict[int, dict[str, Any]]) -> bool:
    """Every seed trained every method with the same configuration but for its seed and folder."""

    def strip(data: dict[str, Any]) -> dict[str, Any]:
        return {
            m: {k: v for k, v in r["config"].items() if k not in ("seed", "out_dir")}
            for m, r in data["methods"].items()
        }

    first = strip(next(iter(runs.values())))
    return all(strip(d) == first for d in runs.values())


def _agreement(runs: dict[int, dict[str, Any]]) -> str:
    verdicts = {seed: verdict(d) for seed, d in runs.items()}
    parts = {
        "most accurate at 1-shot": {s: _short(v["best"]["1"]) for s, v in verdicts.items()},
        "most accurate at 5-shot": {s: _short(v["best"]["5"]) for s, v in verdicts.items()},
        "MTL against MAML's 1-shot CI": {s: v["mtl_vs_reference"]["1"] for s, v in verdicts.items()},
        "MTL against MAML's 5-shot CI": {s: v["mtl_vs_reference"]["5"] for s, v in verdicts.items()},
        "MTL to MAML's accuracy": {s: v["mtl_to_reference"] for s, v in verdicts.items()},
        "every method settled": {s: all(x != "open" for x in v["settled"].values()) for s, v in verdicts.items()},
    }
    lines = [f"- {name}: {kit.flips(outcome)}." for name, outcome in parts.items()]
    same = len({verdict_key(v) for v in verdicts.values()}) == 1
    head = f"The verdict is **{'the same' if same else 'not the same'}** for seeds {', '.join(map(str, runs))}" + (
        " (the digits differ; the answers do not)." if same else ": where it flips is listed below."
    )
    return head + "\n\n" + "\n".join(lines)


def _alone_section(folder: Path) -> str:
    if not (folder / "results" / ALONE).exists():
        return (
            "Wall time alone on the machine: not measured yet (the seeds above shared the machine with other runs, "
            "one thread each, so their minutes are not the command's)."
        )
    data = kit.load(folder, ALONE)
    v = verdict(data)
    runs = seed_runs(folder)
    twin = runs.get(data["settings"]["seed"])
    same = twin is not None and verdict_key(v) == verdict_key(verdict(twin))
    return (
        f"## Wall time of the default command\n\n`metabridge compare` with no options, alone on the machine "
        f"(`results/{ALONE}`, seed {data['settings']['seed']}, {data['machine'].get('torch_threads', '?')} torch threads): "
        f"**{data['total_seconds'] / 60:.1f} minutes** from start to verdict; per method "
        + ", ".join(f"{_short(m)} {r['seconds_per_iteration']:.2f} s a step" for m, r in data["methods"].items())
        + f". Its verdict is {'the same as' if same else '**not** the same as'} that of seed "
        f"{data['settings']['seed']} above (which ran one thread under load)."
    )


def _machines(runs: dict[int, dict[str, Any]]) -> str:
    lines = {kit.machine(d.get("machine")) for d in runs.values()}
    if len(lines) == 1:
        return f"Every seed ran on one machine: {lines.pop()}"
    return "The seeds ran on different machines: " + " / ".join(sorted(lines))


def _wall_clock_section(folder: Path) -> str:
    path = folder / "results" / WALL_CLOCK
    if not path.exists():
        return ""
    data = kit.load(folder, WALL_CLOCK)
    steps = ", ".join(f"{_short(m)} {r['steps']}" for m, r in data["methods"].items())
    return (
        "## Why a step budget\n\nThe main job used to give every method "
        f"{data['settings']['budget_seconds']:.0f} s of training; on the run kept in `results/{WALL_CLOCK}` that "
        f"bought {steps} steps, and another day's load buys other step counts and so other accuracies. A step budget "
        "fixes the work; training seconds stay a measured column."
    )


def _cosine_section(folder: Path, runs: dict[int, dict[str, Any]]) -> str:
    if not (folder / "results" / COSINE).exists():
        return ""
    cosine = kit.load(folder, COSINE)
    steps = cosine["methods"]["mtl"]["config"]["steps"]
    mid = [p["step"] for p in cosine["methods"]["mtl"]["curve"] if p["step"] <= steps // 2][-1]
    rows = []
    for m, r in cosine["methods"].items():
        step = runs.get(0, {}).get("methods", {}).get(m)
        at = [p for p in r["curve"] if p["step"] <= mid][-1]
        cells = [_short(m), kit.pm(100 * at["val_mean"], 100 * at["val_ci95"], 1)]
        cells += [kit.pm(100 * r["curve"][-1]["val_mean"], 100 * r["curve"][-1]["val_ci95"], 1)]
        last = step["curve"][-1] if step else None
        cells.append(kit.pm(100 * last["val_mean"], 100 * last["val_ci95"], 1) if last else "—")
        rows.append(cells)
    return (
        "## Why the step schedule rather than a cosine\n\nSeed 0 of the same protocol with a cosine schedule over the "
        f"{steps} steps (`--lr-schedule cosine`; MTL and MAML trained, the run then stopped; their validation curves are "
        f"kept in `results/{COSINE}`): the cosine halves the rate by mid-budget, and MTL, whose per-class heads are "
        "each updated only when their class is drawn, stalls below MAML; the official recipe's single x0.1 cut placed "
        "after 80% of the budget keeps the full rate until then.\n\n"
        + kit.table(
            [
                "method",
                f"validation % at step {mid}, cosine",
                f"at step {steps}, cosine",
                "at the last step, step schedule (seed 0)",
            ],
            rows,
        )
    )


def render(folder: Path) -> str:
    """The markdown of the results page, every figure from the JSON."""
    runs = seed_runs(folder)
    parts = ["# Few-shot glyphs, the main job: MTL, MAML and ProtoNet at an equal step budget, over seeds"]
    parts.append(
        "Question: under the seed paper's training recipe and one step budget, which of MTL (Wang et al.), MAML and "
        "ProtoNet is the most accurate on held-out alphabets at 1-shot and at 5-shot, is MTL within MAML's "
        "confidence interval, how much sooner does MTL reach MAML's accuracy, and does the answer survive another "
        "seed?"
    )
    if not runs:
        return "\n\n".join(parts + ["No seed has run yet: `bash experiments/fewshot_glyphs_main_job/run.sh`."]) + "\n"
    last = runs[max(runs)]
    parts += [
        _protocol(last),
        kit.command("bash experiments/fewshot_glyphs_main_job/run.sh   # metabridge compare --seed N, N = 0, 1, 2"),
        "## Verdict per seed",
        kit.table(
            [
                "seed",
                "most accurate 1-shot",
                "most accurate 5-shot",
                "MTL vs MAML's CI, 1-shot",
                "MTL vs MAML's CI, 5-shot",
                "MTL to MAML's accuracy (MAML's time / MTL's)",
                "settled",
                "minutes in all",
            ],
            _verdict_rows(runs),
        ),
        _agreement(runs),
        "Identical per-method training configurations across seeds (seed and folder aside): "
        + ("yes." if _same_protocol(runs) else "**no**: the seeds are not one protocol."),
        "## Accuracy over seeds",
        "Mean ± 95% Student-t interval over seeds, beside each seed's own 95% interval over its test episodes.",
        _accuracy_table(runs),
        _machines(runs),
        _alone_section(folder),
        kit.image(
            NAME, "plot.png", "validation accuracy against training steps for every seed, test accuracy as stars"
        ),
    ]
    extra = [section for section in (_cosine_section(folder, runs), _wall_clock_section(folder)) if section]
    return "\n\n".join(parts + extra) + "\n"


def headline(folder: Path) -> list[dict[str, str]]:
    """README row: the main job's test accuracy of each method over seeds."""
    runs = seed_runs(folder)
    if not runs:
        return []
    first = next(iter(runs.values()))
    figures = "; ".join(
        f"{_short(m)} "
        + " / ".join(kit.over_seeds([r["methods"][m]["test"][s]["mean"] for r in runs.values()], 1, 100) for s in SHOTS)
        for m in first["methods"]
    )
    return [
        {
            "order": 0,
            "method": "MTL, MAML, ProtoNet (main job)",
            "paper": "Wang et al. 2021; Finn et al. 2017; Snell et al. 2017",
            "headline": f"glyphs 5-way 1-shot / 5-shot test %, {first['settings']['budget_steps']} steps each: {figures}",
        }
    ]
