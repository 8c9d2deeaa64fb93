"""Wang et al. (2021) Sec. 3: MTL and ANIL share one formulation; Sec. 4 experiment plumbing."""

from __future__ import annotations

import json

import pytest
import torch

from metabridge.models.mlp import MLP
from metabridge.tasks.sinusoid import SinusoidFamily
from metabridge.theory.closeness import (
    ClosenessSettings,
    anil_body_gradient,
    anil_heads,
    anil_implicit_term,
    closeness_experiment,
    linear_head_grad,
    mtl_body_gradient,
)

F64 = torch.float64


@pytest.fixture()
def setup():
    torch.manual_seed(0)
    model = MLP(1, 1, hidden=(6, 6)).double()
    batch = SinusoidFamily().sample(3, 5, 20, torch.Generator().manual_seed(1)).to("cpu", F64)
    return model, batch


def _close(a: list[torch.Tensor], b: list[torch.Tensor], tol: float = 1e-12) -> bool:
    return all(torch.allclose(x, y, atol=tol, rtol=0) for x, y in zip(a, b))


def test_linear_head_grad_matches_autograd(setup) -> None:
    model, batch = setup
    feats = model.body(batch.support_x).detach()
    w = torch.randn(3, 6, 1, dtype=F64, requires_grad=True)
    b = torch.randn(3, 1, dtype=F64, requires_grad=True)
    loss = (((feats @ w + b[:, None]) - batch.support_y) ** 2).mean(dim=(1, 2)).sum()
    gw, gb = torch.autograd.grad(loss, (w, b))
    cw, cb = linear_head_grad(feats, batch.support_y, w.detach(), b.detach())
    assert torch.allclose(gw, cw, atol=1e-12) and torch.allclose(gb, cb, atol=1e-12)


@pytest.mark.parametrize("steps", [1, 3])
def test_first_order_anil_equals_mtl_at_adapted_heads(setup, steps: int) -> None:
    """(C4) without J: MTL's body gradient (library MTL) == first-order ANIL's (library ANIL)."""
    model, batch = setup
    w, b = anil_heads(model, batch, 0.05, steps)
    g_mtl = mtl_body_gradient(model, w, b, batch)
    g_fo = anil_body_gradient(model, batch, 0.05, steps, first_order=True)
    assert _close(g_mtl, g_fo)
    # and the heads matter: MTL at the un-adapted head gives a different gradient
    w0 = model.head.weight.T.detach().expand(3, 6, 1)
    b0 = model.head.bias.detach().expand(3, 1)
    assert not _close(mtl_body_gradient(model, w0, b0, batch), g_fo, tol=1e-6)


def test_second_order_anil_is_mtl_plus_implicit_term(setup) -> None:
    """(C4): g_ANIL = g_MTL(W_i = phi_i) + (1/T) sum_i J_i^T v_i, for one inner step."""
    model, batch = setup
    alpha = 0.05
    w, b = anil_heads(model, batch, alpha, 1)
    g_mtl = mtl_body_gradient(model, w, b, batch)
    g_so = anil_body_gradient(model, batch, alpha, 1, first_order=False)
    implicit = anil_implicit_term(model, batch, alpha)
    assert _close([m + i for m, i in zip(g_mtl, implicit)], g_so)
    assert max(float(i.abs().max()) for i in implicit) > 1e-4  # the term is not trivially zero


def test_envelope_theorem_optimal_heads(setup) -> None:
    """With heads at their per-task least-squares optimum, total derivative == MTL's partial derivative."""
    model, batch = setup
    lam = 1e-3  # a small ridge on W keeps the inner problem well posed (dead ReLUs); it has no theta in it
    fq = model.body(batch.query_x)
    design = torch.cat([fq, torch.ones_like(fq[..., :1])], -1)  # [T, Q, D+1]
    n = design.shape[1]
    reg = torch.diag(torch.tensor([lam] * fq.shape[-1] + [0.0], dtype=F64))
    gram = design.transpose(1, 2) @ design / n + reg
    sol = torch.linalg.solve(gram, design.transpose(1, 2) @ batch.query_y / n)  # differentiable in theta
    w_all, b_all = sol[:, :-1], sol[:, -1]
    total = ((design @ sol - batch.query_y) ** 2).mean() + lam * (w_all**2).sum() / 3
    g_total = list(torch.autograd.grad(total, list(model.body.parameters())))
    w_star, b_star = w_all.detach(), b_all.detach()
    gw, gb = linear_head_grad(fq.detach(), batch.query_y, w_star, b_star)
    assert torch.allclose(gw, -2 * lam * w_star, atol=1e-10) and float(gb.abs().max()) < 1e-10  # stationary
    assert _close(g_total, mtl_body_gradient(model, w_star, b_star, batch), tol=1e-10)


def test_closeness_experiment_runs_and_reports_every_pair() -> None:
    cfg = ClosenessSettings(
        widths=(8,), depths=(1,), train_tasks=5, steps=3, meta_batch=2, k_shot=5, q_query=5, test_tasks=6
    )
    res = closeness_experiment(cfg)
    (row,) = res["rows"]
    for mode in ("native", "refit"):
        for pair in ("mtl_anil", "mtl_maml", "anil_maml"):
            assert row[f"gap_{mode}_{pair}"] >= 0.0
    assert all(
        v == v and v < float("inf") for k, v in row.items() if k.startswith(("gap", "mse")) and isinstance(v, float)
    )
    # ANIL and MAML start from the same body and see the same batches: after 3 small
    # steps their refit predictions are far closer to each other than to the targets
    assert row["gap_refit_anil_maml"] < 0.1 * row["mse_refit_anil"] / res["target_mean_square"]


def test_closeness_command_writes_results_and_restores_threads(tmp_path, capsys) -> None:
    from metabridge.theory.commands import ClosenessConfig as ClosenessCommand
    from metabridge.theory.commands import run_closeness

    before = torch.get_num_threads()
    config = ClosenessCommand(
        out=tmp_path,
        widths=[8],
        depths=[1],
        steps=2,
        train_tasks=4,
        meta_batch=2,
        k_shot=5,
        q_query=5,
        test_tasks=4,
        threads=1 if before > 1 else 2,
    )
    res = run_closeness(config)
    assert torch.get_num_threads() == before
    assert [(r["depth"], r["width"]) for r in res["rows"]] == [(1, 8)]
    assert (tmp_path / "theory_closeness.json").exists() and (tmp_path / "theory_closeness.png").exists()
    assert json.loads((tmp_path / "config.json").read_text())["widths"] == [8]
    assert "normalised prediction gap" in capsys.readouterr().out


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"meta_batch": 9, "train_tasks": 4}, "--meta-batch 9 exceeds --train-tasks 4"),
        ({"widths": [8, 0]}, "widths.1: must be > 0"),
        ({"seeds": ["a"]}, "seeds.0"),
        ({"inner_lr": 0.0}, "inner_lr: must be > 0"),
        ({"threads": 0}, "threads: must be > 0"),
    ],
)
def test_closeness_settings_refuse_bad_values_in_one_line_naming_the_field(kwargs, message) -> None:
    from pydantic import ValidationError

    from metabridge.config import describe_validation_error
    from metabridge.theory.commands import ClosenessConfig as ClosenessCommand

    with pytest.raises(ValidationError) as err:
        ClosenessCommand(**kwargs)
    text = describe_validation_error(err.value)
    assert message in text and "\n" not in text


def test_cli_theory_closeness_spelling(tmp_path) -> None:
    from cli_runner import run_cli

    res = run_cli(
        [
            "theory",
            "closeness",
            "--out",
            str(tmp_path),
            "--widths",
            "8",
            "--depths",
            "1",
            "--steps",
            "2",
            "--train-tasks",
            "4",
            "--meta-batch",
            "2",
            "--k-shot",
            "5",
            "--q-query",
            "5",
            "--test-tasks",
            "4",
            "--seeds",
            "0",
            "--threads",
            "1",
        ]
    )
    assert res.exit_code == 0, res.output
    assert [(r["depth"], r["width"]) for r in json.loads((tmp_path / "theory_closeness.json").read_text())["rows"]] == [
        (1, 8)
    ]
