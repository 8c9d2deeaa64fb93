"""The claims page (``docs/claims.md``): every claim of the three seed documents, the paper's figure, ours from the
experiments' JSON, the protocol difference and a verdict computed by a stated rule.

``render(root)`` is called by ``docs/gen_results.py`` with ``experiments/`` on ``sys.path`` (so ``import _pagekit``
works); ``root`` is the experiments folder (the repository's by default). Every seed file a part holds
(``results/<part>_seed<N>.json``, or ``results/seed<N>.json`` for the main job) is picked up; a part without seed
files counts its single JSON as one seed.
"""

from __future__ import annotations

from pathlib import Path

from . import gao, lecture, wang
from .common import VERDICTS, Claim, Row, link

__all__ = ["VERDICTS", "collect", "render"]

EXPERIMENTS = Path(__file__).resolve().parents[1]
SOURCES = {
    "W": "Wang, Zhao & Li (ICML 2021), *Bridging Multi-Task Learning and Meta-Learning*",
    "L": "CS330 lecture 2, *Multi-task & meta-learning basics*",
    "G": "Gao & Sener (NeurIPS 2020), *Modeling and optimization trade-off in meta-learning*",
}
INTRO = """\
# Claims of the seed papers, tested

Every claim of the three seed documents, what the paper gives for it, what we measured, how our protocol differs,
and a verdict. The seed texts are the abstracts of the two papers and an excerpt of the lecture notes: they hold the
claims and their wording but not the papers' tables, so "the paper's figure" is what that text says. Every figure of
ours on this page is read from the experiments' JSON (`experiments/<name>/results/`) by `experiments/_claims/` when
`python docs/gen_results.py` writes the page; each verdict is computed from those figures by the rule printed beside it.

Verdicts: **reproduced**, **partly**, **not reproduced**, **not testable here**. Several seeds: a rule is applied to
each seed and seeds that disagree give *partly*; figures over several seeds are the mean ± the 95% Student-t
interval over seeds, and one seed shows the run's own 95% interval and says "1 seed". A claim with several rows is
*reproduced* or *not reproduced* when all its tested rows say so and *partly* when they differ, except a claim that
something happens *sometimes* (marked "any row"), where the strongest row decides. Rows that are not testable do not
count."""


def collect(root: Path | None = None) -> list[Claim]:
    """Every claim with its rows, computed from the JSON under ``root`` (the experiments folder)."""
    root = root or EXPERIMENTS
    return [*wang.claims(root), *lecture.claims(root), *gao.claims(root)]


def _summary(claims: list[Claim]) -> str:
    lines = ["| claim | seed document | verdict | rows |", "|---|---|---|---|"]
    for c in claims:
        rows = "; ".join(f"{r.title}: {r.verdict}" for r in c.rows)
        lines.append(f"| {c.key}: {c.claim} | {c.source} | **{c.verdict}** | {rows} |")
    return "\n".join(lines)


def _row(index: int, row: Row) -> str:
    ours = "\n".join(f"    - {line}" for line in row.ours)
    return "\n".join(
        [
            f"#### {index}. {row.title}: {row.verdict}",
            "",
            f"- Paper: {row.paper}",
            f"- Ours: {row.command}; {row.seeds}; results page {link(row.experiment)}.",
            ours,
            f"- Protocol difference: {row.difference}",
            f"- Rule: {row.rule}",
            f"- Verdict: **{row.verdict}** ({row.why}).",
        ]
    )


def _claim(claim: Claim) -> str:
    how = " (any row)" if claim.combine == "any" else ""
    parts = [
        f"### {claim.key}: {claim.claim}",
        f"> {claim.quote}\n>\n> — seed text, {claim.where}",
        f"Verdict{how}: **{claim.verdict}**.",
    ]
    parts += [_row(i, r) for i, r in enumerate(claim.rows, start=1)]
    return "\n\n".join(parts)


def render(root: Path | None = None) -> str:
    """The markdown of ``docs/claims.md``."""
    claims = collect(root)
    out = [INTRO, "## Summary", _summary(claims)]
    for prefix, title in SOURCES.items():
        out.append(f"## {title}")
        out += [_claim(c) for c in claims if c.key.startswith(prefix)]
    return "\n\n".join(out) + "\n"
