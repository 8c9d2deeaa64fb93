"""Results page of the weighting methods' cost per training step against LibMTL 1.1.5.

Rendered from ``results/all_methods.json`` (every method, one round) and ``results/famo_imtl.json`` (FAMO and IMTL,
three rounds).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import _pagekit as kit

NAME = "multitask_cost"
READS = {"LOSSES": "losses", "PARAM_GRADS": "param grads", "FEATURE_GRADS": "feature grads"}
SAME_WORK = ("equal", "fixed", "mean", "minmax")  # one backward of a weighted sum of the losses each


def _ms(side: dict[str, Any] | None) -> str:
    if side is None:
        return "-"
    if side["status"] != "ok":
        return side["status"].replace("|", "/")
    return f"{side['ms_per_step']:.1f}"


def _ratio(value: float | None, suffix: str = "") -> str:
    return "-" if value is None else f"{value:.2f}{suffix}"


def _rows(data: dict[str, Any], k: int) -> list[dict[str, Any]]:
    return [r for r in data["rows"] if r["num_tasks"] == k]


def cost_table(data: dict[str, Any], k: int) -> str:
    """One row per method at K tasks: ours and LibMTL's ms per step, each against its equal weighting."""
    rows = []
    for r in _rows(data, k):
        rows.append(
            [
                r["method"],
                READS.get(r["needs"], r["needs"]),
                _ms(r["metabridge"]),
                _ratio(r.get("ratio_to_equal")),
                r.get("libmtl_method") or "(none)",
                _ms(r.get("libmtl")),
                _ratio(r.get("libmtl_ratio_to_ew")),
                _ratio(r.get("speedup_over_libmtl"), "x"),
            ]
        )
    headers = ["method", "reads", "ms/step", "x equal", "LibMTL", "LibMTL ms/step", "x EW", "speed-up"]
    return kit.table(headers, rows)


def _row(data: dict[str, Any], method: str, k: int) -> dict[str, Any]:
    return next(r for r in _rows(data, k) if r["method"] == method)


def _findings(full: dict[str, Any], famo: dict[str, Any]) -> str:
    ks = full["protocol"]["tasks"]
    same = [_row(full, m, ks[0])["metabridge"]["ms_per_step"] for m in SAME_WORK]
    lines = [
        f"- Rows that do the same work ({', '.join(f'`{m}`' for m in SAME_WORK)}: one backward of a weighted sum) "
        f"range over {min(same):.1f}-{max(same):.1f} ms at K = {ks[0]} in the one-round run: read ratios below about "
        "1.3 there as the same cost.",
        "- FAMO re-evaluates the losses on the same batch after the step (one extra forward): "
        + ", ".join(f"{_row(full, 'famo', k)['ratio_to_equal']:.2f}x" for k in ks)
        + f" equal at K = {' / '.join(map(str, ks))} in the one-round run; in the repeated run `famo` "
        + ", ".join(f"{_row(famo, 'famo', k)['ratio_to_equal']:.2f}x" for k in famo["protocol"]["tasks"])
        + " and `famo_next_batch` "
        + ", ".join(f"{_row(famo, 'famo_next_batch', k)['ratio_to_equal']:.2f}x" for k in famo["protocol"]["tasks"])
        + ' (`FAMO(lookahead="next_batch")`: the next step\'s losses stand for L(t+1), no extra forward, an '
        "approximation of the paper's update).",
        "- IMTL against LibMTL's in the repeated run: "
        + "; ".join(
            f"K = {k}: {_ms(_row(famo, 'imtl', k)['metabridge'])} vs {_ms(_row(famo, 'imtl', k)['libmtl'])} ms"
            for k in famo["protocol"]["tasks"]
        )
        + ".",
    ]
    grads = [r for r in _rows(full, ks[-1]) if r["gradient_method"] and r.get("speedup_over_libmtl")]
    lines.append(
        f"- Gradient methods that LibMTL also has, at K = {ks[-1]}: "
        + ", ".join(f"`{r['method']}` {r['speedup_over_libmtl']:.2f}x faster" for r in grads)
        + ". Their own cost is the K per-task gradients (K backward passes through the shared encoder); MGDA-UB "
        "reads gradients with respect to the shared features instead, while LibMTL's `rep_grad` variant still runs "
        "a backward per task through the heads."
    )
    failed = [r for r in full["rows"] if r.get("libmtl") and r["libmtl"]["status"] != "ok"]
    missing = sorted({r["method"] for r in full["rows"] if not r.get("libmtl_method")})
    lines.append(
        f"- LibMTL {full['libmtl']['libmtl']} has no counterpart of {', '.join(f'`{m}`' for m in missing)}; "
        + "; ".join(f"its {r['libmtl_method']} fails at K = {r['num_tasks']} ({r['libmtl']['status']})" for r in failed)
        + "."
    )
    return "\n".join(lines)


def _protocol(data: dict[str, Any]) -> str:
    p = data["protocol"]
    return (
        f"Protocol (from the JSON): {p['model']}; P = {p['shared_params']:,} shared parameters; batch {p['batch']}; "
        f"{p['loss']}; {p['optimizer']}; {p['threads']} thread(s), {p['device']}; each configuration in its own "
        f"process, {p['warmup']} warm-up and {p['steps']} timed steps; {p['statistic']}; {p['interleaved']}; "
        f"{p['repeats']} round(s). LibMTL {data['libmtl']['libmtl']} with torch {data['libmtl']['torch']}."
    )


def render(folder: Path) -> str:
    """The markdown of the results page, every figure from the JSON."""
    full = kit.load(folder, "all_methods.json")
    famo = kit.load(folder, "famo_imtl.json")
    parts = [
        "# Cost per training step of the weighting methods, against LibMTL",
        "Question: what does each weighting method cost per training step beside equal weighting, and beside "
        "LibMTL's implementation of the same method on the same model?",
        "One training step is the forward, the method's backward and Adam, on a hard-sharing MLP with one linear "
        "head per task. Each run ran alone.",
        kit.command("bash experiments/multitask_cost/run.sh"),
        "## Every method, one round",
        _protocol(full),
    ]
    for k in full["protocol"]["tasks"]:
        parts += [f"K = {k} tasks:", cost_table(full, k)]
    parts += [kit.machine(full["machine"]), "## FAMO and IMTL, repeated", _protocol(famo)]
    for k in famo["protocol"]["tasks"]:
        parts += [f"K = {k} tasks:", cost_table(famo, k)]
    parts += [
        kit.machine(famo["machine"]),
        "## What it shows",
        _findings(full, famo),
        kit.image(NAME, "plot.png", "ms per step per method, ours and LibMTL's"),
        kit.image(NAME, "results/famo_imtl.png", "FAMO and IMTL, repeated run"),
    ]
    return "\n\n".join(parts) + "\n"


def headline(folder: Path) -> list[dict[str, str]]:
    """README row: the gradient methods' speed-up over LibMTL's at the largest K."""
    full = kit.load(folder, "all_methods.json")
    k = full["protocol"]["tasks"][-1]
    rows = {r["method"]: r for r in _rows(full, k)}
    return [
        {
            "method": "gradient weighting methods (MGDA, PCGrad, IMTL, GradNorm) vs LibMTL",
            "paper": f"LibMTL {full['libmtl']['libmtl']}",
            "headline": f"ms per step at K = {k}: PCGrad {rows['pcgrad']['speedup_over_libmtl']:.2f}x, MGDA "
            f"{rows['mgda']['speedup_over_libmtl']:.2f}x faster than LibMTL's on the same model",
        }
    ]
