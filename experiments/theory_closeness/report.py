"""Results page of Wang et al.'s closeness of MTL and gradient-based meta-learning.

From ``results/closeness.json`` (standard parameterisation, Adam) and ``results/ntk_depth*.json``
(NTK parameterisation, plain gradient steps). ``python report.py --plot`` (with ``experiments/`` on
``PYTHONPATH``) draws ``plot_ntk.png`` from the same JSON.
"""

from __future__ import annotations

import math
import statistics
import sys
from pathlib import Path
from typing import Any

import _pagekit as kit

NAME = "theory_closeness"
PAIRS = (("mtl", "anil"), ("mtl", "maml"), ("anil", "maml"))
LABEL = {"mtl": "MTL", "anil": "ANIL", "maml": "MAML"}


def _mean_sd(row: dict[str, Any], key: str) -> str:
    """Mean ± 95% Student-t interval over seeds of ``row[key + '_per_seed']``."""
    return kit.over_seeds(row[f"{key}_per_seed"], 3)


def _mse(row: dict[str, Any], rule: str) -> str:
    return " / ".join(f"{row[f'mse_{rule}_{a}']:.2f}" for a in LABEL)


def _table(data: dict[str, Any]) -> str:
    headers = ["depth", "width"]
    for rule in ("refit", "native"):
        headers += [f"{rule} gap {LABEL[a]}–{LABEL[b]}" for a, b in PAIRS]
    headers += ["refit MSE MTL / ANIL / MAML", "native MSE MTL / ANIL / MAML"]
    rows = []
    for row in data["rows"]:
        cells = [str(row["depth"]), str(row["width"])]
        for rule in ("refit", "native"):
            cells += [_mean_sd(row, f"gap_{rule}_{a}_{b}") for a, b in PAIRS]
        rows.append(cells + [_mse(row, "refit"), _mse(row, "native")])
    return kit.table(headers, rows)


def _findings(data: dict[str, Any]) -> str:
    shallow = [r for r in data["rows"] if r["depth"] == 1]
    gaps = [r["gap_refit_mtl_anil"] for r in shallow]
    maml_gaps = [r["gap_refit_mtl_maml"] for r in shallow]
    widths = [r["width"] for r in shallow]
    deep_refit = [r["mse_refit_mtl"] for r in data["rows"] if r["depth"] > 1]
    deep_native = [r["mse_native_mtl"] for r in data["rows"] if r["depth"] > 1]
    others = [r[f"mse_native_{a}"] for r in data["rows"] if r["depth"] > 1 for a in ("anil", "maml")]
    lines = [
        f'- With one common adaptation (ridge refit of the last layer, "refit"), the MTL–ANIL gap of one-hidden-layer '
        f"networks goes {' → '.join(f'{g:.3f}' for g in gaps)} over widths {', '.join(map(str, widths))} "
        f"({gaps[0] / gaps[-1]:.0f}x from the narrowest to the widest), as Wang et al.'s wide-network result "
        f"predicts, and MTL–MAML follows ({' → '.join(f'{g:.3f}' for g in maml_gaps)}).",
        "- Deeper networks do not show it at this training length: at depth 2 and 3 the gap stops falling after the "
        "middle width, with large seed spread, and ANIL and MAML differ from each other as much as from MTL: what is "
        f"left is optimisation noise of {data['config']['steps']} steps, not a systematic MTL/GBML difference. "
        "Widths 512-1024 at depth 2 or more (`--paper`) were not run to the end.",
        f"- \"Native\" gaps compare each method's own test-time rule and mostly measure that rule: MTL's head refit "
        f"reaches MSE {min(deep_native):.2f}-{max(deep_native):.2f} on deep nets (refit MSE "
        f"{min(deep_refit):.2f}-{max(deep_refit):.2f}), while ANIL/MAML's {data['config']['eval_steps']} step of "
        f"{data['config']['inner_lr']} (Finn et al.'s rate, kept for training and test) leaves MSE "
        f"{min(others):.2f}-{max(others):.2f}.",
    ]
    return "\n".join(lines)


# ------------------------------------------------------------ width scaling over seeds
def _slope(widths: list[int], gaps: list[float]) -> float:
    """Least-squares slope of log(gap) against log(width)."""
    lx, ly = [math.log(w) for w in widths], [math.log(max(g, 1e-300)) for g in gaps]
    mx, my = statistics.fmean(lx), statistics.fmean(ly)
    return sum((a - mx) * (b - my) for a, b in zip(lx, ly)) / sum((a - mx) ** 2 for a in lx)


def _depth_rows(rows: list[dict[str, Any]], depth: int) -> list[dict[str, Any]]:
    return sorted((r for r in rows if r["depth"] == depth), key=lambda r: r["width"])


def _seed_slopes(rows: list[dict[str, Any]], key: str) -> list[float]:
    """One slope per seed, over the widths of ``rows`` (one depth)."""
    widths = [r["width"] for r in rows]
    n = len(rows[0][f"{key}_per_seed"])
    return [_slope(widths, [r[f"{key}_per_seed"][i] for r in rows]) for i in range(n)]


def _outcome(gaps: list[float], slope: float) -> str:
    """The conclusion one seed supports: its log-log slope is negative and its widest gap below its narrowest."""
    return "falls" if slope < 0 and gaps[-1] < gaps[0] else "does not fall"


def _monotone(per_seed: dict[int, list[float]]) -> str:
    """Which seeds fall at every width step."""
    seeds = [s for s, g in per_seed.items() if all(b < a for a, b in zip(g, g[1:]))]
    who = f"seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}" if seeds else "no seed"
    return f"lower at every width step for {who}"


def _per_seed(outcomes: dict[int, str], noun: str = "gap") -> str:
    """The per-seed outcomes in words: one phrase when all agree, else where they flip."""
    if len(set(outcomes.values())) == 1:
        return f"every seed's {noun} {next(iter(outcomes.values()))} ({kit.flips(outcomes)})"
    return "per seed the outcome " + kit.flips(outcomes)


def _verdict(slopes: list[float]) -> str:
    from metabridge.stats import mean_t_interval95

    r = mean_t_interval95(slopes)
    if r.mean + r.ci95 < 0:
        return "falls (slope interval below 0)"
    if r.mean - r.ci95 > 0:
        return "grows (slope interval above 0)"
    return "no trend shown (slope interval covers 0)"


def _scaling_lines(rows: list[dict[str, Any]], seeds: list[int], key: str, label: str, noun: str = "gap") -> list[str]:
    lines = []
    for depth in sorted({r["depth"] for r in rows}):
        dr = _depth_rows(rows, depth)
        slopes = _seed_slopes(dr, key)
        per_seed = {s: [r[f"{key}_per_seed"][i] for r in dr] for i, s in enumerate(seeds)}
        outcomes = {s: _outcome(per_seed[s], slopes[i]) for i, s in enumerate(seeds)}
        lines.append(
            f"- depth {depth}, {label}, widths {dr[0]['width']} → {dr[-1]['width']}: "
            f"{kit.over_seeds(dr[0][f'{key}_per_seed'], 3)} → {kit.over_seeds(dr[-1][f'{key}_per_seed'], 4)}; "
            f"slope of log {noun} vs log width {kit.over_seeds(slopes, 2)}: **{_verdict(slopes)}**; "
            f"{_per_seed(outcomes, noun)}; {_monotone(per_seed)}."
        )
    return lines


def load_ntk(folder: Path) -> dict[str, Any] | None:
    """The NTK-parameterisation parts (``results/ntk_depth*.json``, one per depth) merged into one result (rows of
    every part; the parts share every other setting), or None."""
    parts = sorted((folder / "results").glob("ntk_depth*.json"))
    if not parts:
        return None
    datas = [kit.load(folder, p.name) for p in parts]
    merged = dict(datas[0])
    merged["rows"] = [r for d in datas for r in d["rows"]]
    merged["seconds"] = sum(d["seconds"] for d in datas)
    depths = sorted({x for d in datas for x in d["config"]["depths"]})
    widths = sorted({x for d in datas for x in d["config"]["widths"]})
    merged["config"] = {**datas[0]["config"], "depths": depths, "widths": widths}
    return merged


def _ntk_table(data: dict[str, Any]) -> str:
    headers = ["depth", "width", "refit gap MTL–ANIL", "refit gap MTL–MAML", "native gap MTL–ANIL"]
    headers += ["feature movement MTL / ANIL / MAML", "refit MSE MTL / ANIL / MAML"]
    rows = []
    for row in sorted(data["rows"], key=lambda r: (r["depth"], r["width"])):
        cells = [str(row["depth"]), str(row["width"])]
        cells += [kit.over_seeds(row[f"{k}_per_seed"], 4) for k in ("gap_refit_mtl_anil", "gap_refit_mtl_maml")]
        cells.append(kit.over_seeds(row["gap_native_mtl_anil_per_seed"], 3))
        cells.append(" / ".join(f"{row[f'featmove_{a}']:.3f}" for a in LABEL))
        rows.append(cells + [_mse(row, "refit")])
    return kit.table(headers, rows)


def _lazy_cost(data: dict[str, Any]) -> str:
    """What the kernel-regime closeness comes with: the common refit's test MSE at the narrowest and widest width."""
    lines = []
    for depth in sorted({r["depth"] for r in data["rows"]}):
        dr = _depth_rows(data["rows"], depth)
        mses = " / ".join(
            f"{LABEL[a]} {kit.over_seeds(dr[0][f'mse_refit_{a}_per_seed'], 2)} → "
            f"{kit.over_seeds(dr[-1][f'mse_refit_{a}_per_seed'], 2)}"
            for a in ("mtl", "anil")
        )
        lines.append(f"- depth {depth}, refit test MSE, width {dr[0]['width']} → {dr[-1]['width']}: {mses}")
    return (
        "In the kernel regime the three bodies stay near their common initialisation, so a common refit of the last "
        "layer on their features gives nearly the same predictor: in the lazy limit the features move like "
        "width^(-1/2) and a squared prediction gap like width^(-1) (log-log slope -1). The closeness then comes with "
        "less feature learning; the refit's test MSE (mean y² = "
        f"{data['target_mean_square']:.2f}) shows what the wider, lazier networks still learn:\n" + "\n".join(lines)
    )


def _answer(data: dict[str, Any]) -> str:
    """One phrase per depth: the refit gaps' verdicts, from the per-seed slopes."""
    out = []
    for depth in sorted({r["depth"] for r in data["rows"]}):
        dr = _depth_rows(data["rows"], depth)
        verdicts = [
            f"{label} refit gap {_verdict(_seed_slopes(dr, key)).split(' (')[0]}"
            for key, label in (("gap_refit_mtl_anil", "MTL–ANIL"), ("gap_refit_mtl_maml", "MTL–MAML"))
        ]
        out.append(f"depth {depth} (widths {dr[0]['width']} → {dr[-1]['width']}): " + ", ".join(verdicts))
    return "**Answer, from the fits below:** " + "; ".join(out) + "."


def _standard_short(folder: Path) -> list[str]:
    """The standard parameterisation with Adam at the NTK sweep's training length (feature movement beside it)."""
    path = folder / "results" / "standard_300steps.json"
    if not path.exists():
        return []
    data = kit.load(folder, path.name)
    c = data["config"]
    return [
        f"Standard parameterisation with Adam (lr {c['outer_lr']}) at the same training length ({c['steps']} "
        f"steps), widths {c['widths']}, depths {c['depths']}: how far its features move, and its gaps.",
        _ntk_table(data),
        "\n".join(
            _scaling_lines(data["rows"], list(c["seeds"]), "gap_refit_mtl_anil", "MTL–ANIL")
            + _scaling_lines(data["rows"], list(c["seeds"]), "featmove_mtl", "MTL", "feature movement")
            + _scaling_lines(data["rows"], list(c["seeds"]), "featmove_anil", "ANIL", "feature movement")
        ),
        f"Sweep time: {data['seconds'] / 60:.1f} min.",
    ]


def _ntk_section(folder: Path, standard: dict[str, Any]) -> list[str]:
    data = load_ntk(folder)
    if data is None:
        return []
    c = data["config"]
    seeds = list(c["seeds"])
    parts = [
        "## In the kernel regime: NTK parameterisation, plain gradient steps",
        "Wang et al.'s statement is about networks in the kernel (NTK) regime, where training barely moves the "
        "hidden features. PyTorch's default layers trained with Adam are far from it at these widths: their features "
        "move by several times their initial norm (the standard-parameterisation table at the end of this section, "
        "same training length), against a fraction of it in the NTK parameterisation. Here the same "
        f"comparison uses the NTK parameterisation (weights N(0, 1), each layer's forward scaled by 1/sqrt(fan_in); "
        f"`metabridge.theory.ntk`) and plain gradient steps of {c['outer_lr']} ({c['steps']} steps, "
        f"{c['meta_batch']} tasks per step) for every algorithm, widths {c['widths']}, depths {c['depths']}, seeds "
        f"{seeds}, the same tasks and test set. Gaps: mean ± 95% Student-t interval over seeds. Feature movement: "
        "‖φ_trained − φ_init‖ / ‖φ_init‖ of the body's features on the test queries (mean over seeds), the direct "
        "measure of how far from the kernel regime a run was.",
        _answer(data),
        _ntk_table(data),
        f"Sweep time of these parts: {data['seconds'] / 60:.1f} min. " + kit.machine(data.get("machine")),
        "Does the gap fall with width? Common refit of the last layer (the comparison Wang et al.'s analysis makes):",
        "\n".join(
            _scaling_lines(data["rows"], seeds, "gap_refit_mtl_anil", "MTL–ANIL")
            + _scaling_lines(data["rows"], seeds, "gap_refit_mtl_maml", "MTL–MAML")
        ),
        _lazy_cost(data),
        "How lazy the NTK runs were (feature movement against width):",
        "\n".join(
            _scaling_lines(data["rows"], seeds, "featmove_mtl", "MTL", "feature movement")
            + _scaling_lines(data["rows"], seeds, "featmove_anil", "ANIL", "feature movement")
        ),
        f"The same fit on the standard-parameterisation sweep above (Adam, widths {standard['config']['widths']}):",
        "\n".join(
            _scaling_lines(standard["rows"], list(standard["config"]["seeds"]), "gap_refit_mtl_anil", "MTL–ANIL")
        ),
        "Native adaptation (MTL's head refit against ANIL's one inner step) in the NTK parameterisation:",
        "\n".join(_scaling_lines(data["rows"], seeds, "gap_native_mtl_anil", "native MTL–ANIL")),
        *_standard_short(folder),
        kit.image(
            NAME, "plot_ntk.png", "refit gap and feature movement against width, NTK and standard parameterisation"
        ),
    ]
    return parts


def render(folder: Path) -> str:
    """The markdown of the results page, every figure from the JSON."""
    data = kit.load(folder, "closeness.json")
    c = data["config"]
    parts = [
        "# Wang et al.'s closeness of MTL and gradient-based meta-learning",
        f"Question ({data['reference']}): as networks get wider, do MTL (one head per training task), ANIL and MAML "
        "trained on the same tasks make the same predictions on unseen tasks?",
        f"Protocol (from the JSON): MLPs of widths {c['widths']} and depths {c['depths']} trained on the same "
        f"{c['train_tasks']} sinusoid tasks, {c['k_shot']}-shot, {c['k_query']} queries, {c['steps']} Adam steps "
        f"(lr {c['outer_lr']}, {c['meta_batch']} tasks per step) per algorithm; ANIL/MAML inner step "
        f"{c['inner_lr']} x {c['inner_steps']}; {c['test_tasks']} unseen test tasks; seeds {c['seeds']}. Gap = "
        f"{data['gap_definition']} (mean ± 95% Student-t interval over seeds); MSE on the test queries (mean y² = "
        f'{data["target_mean_square"]:.2f}). "Refit": every method adapted by the same ridge refit of the last '
        f"layer (λ = {c['ridge_lambda']}); \"native\": each method's own rule (MTL's head refit, ANIL/MAML's "
        f"{c['eval_steps']} inner step(s)). The MTL gradient and the ANIL meta-gradient are written in the same "
        "terms and tested equal (`tests/theory`).",
        kit.command("bash experiments/theory_closeness/run.sh"),
        _table(data),
        kit.machine(data.get("machine")) + f" Sweep time: {data['seconds'] / 60:.1f} min.",
        "What it shows:",
        _findings(data),
        kit.image(NAME, "plot.png", "gaps between MTL, ANIL and MAML by width and depth"),
        *_ntk_section(folder, data),
    ]
    return "\n\n".join(parts) + "\n"


def plot_ntk(folder: Path) -> Path:
    """``plot_ntk.png``: refit MTL–ANIL gap (mean and t-interval over seeds) and feature movement against width."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from metabridge.stats import mean_t_interval95

    ntk, standard = load_ntk(folder), kit.load(folder, "closeness.json")
    short_path = folder / "results" / "standard_300steps.json"
    short = kit.load(folder, short_path.name) if short_path.exists() else None
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for data, style, tag in ((ntk, "-o", "NTK, SGD"), (standard, "--s", "standard, Adam")):
        if data is None:
            continue
        for depth in sorted({r["depth"] for r in data["rows"]}):
            dr = _depth_rows(data["rows"], depth)
            for ax, key in zip(axes[:2], ("gap_refit_mtl_anil", "gap_refit_mtl_maml")):
                cis = [mean_t_interval95(r[f"{key}_per_seed"]) for r in dr]
                ax.errorbar(
                    [r["width"] for r in dr],
                    [c.mean for c in cis],
                    yerr=[c.ci95 for c in cis],
                    fmt=style,
                    capsize=3,
                    label=f"{tag}, depth {depth}",
                    color=f"C{depth - 1}",
                )
    for data, line, tag in ((ntk, "-", "NTK, SGD"), (short, "--", "standard, Adam")):
        for depth in sorted({r["depth"] for r in data["rows"]}) if data else []:
            dr = _depth_rows(data["rows"], depth)  # type: ignore[index]
            for algo, mark in (("mtl", "o"), ("anil", "^")):
                axes[2].plot(
                    [r["width"] for r in dr],
                    [r[f"featmove_{algo}"] for r in dr],
                    line + mark,
                    color=f"C{depth - 1}",
                    label=f"{tag}, {LABEL[algo]}, depth {depth}",
                )
    for ax, title in zip(axes, ("refit gap MTL–ANIL", "refit gap MTL–MAML", "feature movement ‖φ_T − φ_0‖ / ‖φ_0‖")):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("width")
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=6)
    fig.suptitle("MTL vs GBML by width: mean ± 95% t-interval over seeds", fontsize=9)
    fig.tight_layout()
    path = folder / "plot_ntk.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


if __name__ == "__main__" and sys.argv[1:] == ["--plot"]:
    print(f"wrote {plot_ntk(Path(__file__).resolve().parent)}")
