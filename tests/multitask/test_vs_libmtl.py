"""metabridge's weighting methods against LibMTL's (1.1.5) on the same problem: the same
state, the same batch, the same per-task gradients give the same update of the shared
parameters (and, where the two libraries train the heads the same way, of the heads).

LibMTL runs in its own virtual environment (never imported here, never installed beside
metabridge): ``~/.cache/mb-peers/venv_peer2/bin/python`` or ``$METABRIDGE_LIBMTL_PYTHON``. Its
side is ``metabridge/benchmarks/_libmtl_worker.py grad``, run by that python on problems saved
with ``torch.save`` (the model's state dict and one batch): a hard-sharing MLP 10 -> 16 -> 12
(ReLU; P = 380 shared parameters), one linear head per task, 24 examples, K = 2 or 3 regression
tasks (mean squared error), seed 0, chosen so that the tasks' gradients conflict (negative
inner products in both). Everything is float64. The error reported is the relative 2-norm
error ||ours - LibMTL|| / ||LibMTL||.

Conventions that differ, and how the comparison aligns them (on OUR side, by arguments or
state; our defaults are not changed):

* Heads. LibMTL's gradient methods compute the per-task gradients with ``losses[i].backward()``
  on the whole model, so its heads always get the gradient of sum_i L_i (weights 1) whatever
  the method; metabridge's heads get sum_i w_i L_i with the method's weights. The heads are
  compared where the two coincide (EW, UW, DWA, GLS, PCGrad, IMTL), not for MGDA, CAGrad and
  GradNorm.
* Initial states. LibMTL's UW starts at log-variance -0.5, metabridge's at 0; IMTL's scales
  start at 0 in both. The tests set both to the same non-trivial values.
* Histories. LibMTL's DWA and GradNorm read ``train_loss_buffer`` (epoch averages) and
  ``epoch``; metabridge's DWA its epoch-average buffers, GradNorm the loss at its first call.
  The tests give both the same history.
* The worker changes one thing in LibMTL: ``zero_grad_share_params`` zeroes in place, as
  ``zero_grad`` did before torch 2.0 (with torch 2's default, None, every LibMTL gradient
  method fails in ``_reset_grad``).

Not compared: RLW (the two draw their weights from different generators: LibMTL from the
global torch RNG through ``torch.distributions.Normal``, metabridge from its own seeded
generator); Nash-MTL and Aligned-MTL (not in LibMTL 1.1.5, the installed version; a later
LibMTL's Nash_MTL also needs cvxpy, which that environment does not have); FAMO (not in 1.1.5).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
from pathlib import Path

import pytest
import torch

import metabridge.benchmarks as _benchmarks
from metabridge.benchmarks._common import PEER_VENV
from metabridge.multitask.gradients import per_task_gradients
from metabridge.multitask.models.registry import build_mtl_model
from metabridge.multitask.weighting import build_weighting, weighted_backward
from metabridge.multitask.weighting.min_norm import gram_matrix, min_norm_weights

PEER = Path(os.environ.get("METABRIDGE_LIBMTL_PYTHON", str(PEER_VENV / "bin" / "python")))
WORKER = Path(_benchmarks.__file__).with_name("_libmtl_worker.py")
MARK = "@@MTLCOST "

OPTED_IN = os.environ.get("METABRIDGE_PEER_TESTS") == "1" or "METABRIDGE_LIBMTL_PYTHON" in os.environ
pytestmark = [
    pytest.mark.peers,
    pytest.mark.skipif(
        not OPTED_IN,
        reason="peer comparison, not CI: opt in with METABRIDGE_PEER_TESTS=1 (LibMTL "
        "from scripts/install_peers.sh) or METABRIDGE_LIBMTL_PYTHON=PATH",
    ),
    pytest.mark.skipif(
        not PEER.exists(),
        reason=f"LibMTL's python ({PEER}) is not installed here; set METABRIDGE_LIBMTL_PYTHON to a python with LibMTL",
    ),
]

IN_DIM, HIDDEN, OUT_DIM, BATCH, SEED = 10, (16,), 12, 24, 0

# Task orders for PCGrad (K = 3): row i is the order in which task i meets the others. LibMTL
# shuffles all K tasks, i included; i comes first here, where it is a no-op (g_i . g_i > 0).
PCGRAD_ORDERS = [[0, 2, 1], [1, 0, 2], [2, 1, 0]]

UW_S = {2: [0.3, -0.7], 3: [0.3, -0.7, 0.2]}
IMTL_S = {2: [0.4, -0.3], 3: [0.4, -0.3, 0.1]}
DWA_HISTORY = [[1.0, 0.8], [2.0, 1.9], [0.5, 0.2]]  # per task: L(t-2), L(t-1)
GRADNORM_W = [1.3, 0.5, 1.2]  # sums to K = 3
GRADNORM_L0 = [1.4, 0.9, 1.1]

#: job name -> (K, LibMTL class, weight_args, rep_grad, worker state)
JOBS: dict[str, tuple[int, str, dict, bool, dict]] = {
    "EW-2": (2, "EW", {}, False, {}),
    "EW-3": (3, "EW", {}, False, {}),
    "UW-2": (2, "UW", {}, False, {"loss_scale": UW_S[2]}),
    "UW-3": (3, "UW", {}, False, {"loss_scale": UW_S[3]}),
    "DWA-3": (3, "DWA", {"T": 2.0}, False, {"epoch": 2, "train_loss_buffer": [r + [0.0] for r in DWA_HISTORY]}),
    "GLS-3": (3, "GLS", {}, False, {}),
    "MGDA-2": (2, "MGDA", {"mgda_gn": "none"}, False, {}),
    "MGDA-3": (3, "MGDA", {"mgda_gn": "none"}, False, {}),
    "MGDA-rep-2": (2, "MGDA", {"mgda_gn": "none"}, True, {}),
    "PCGrad-2": (2, "PCGrad", {}, False, {"orders": [[0, 1], [1, 0]]}),
    "PCGrad-3": (3, "PCGrad", {}, False, {"orders": PCGRAD_ORDERS}),
    "CAGrad-3": (3, "CAGrad", {"calpha": 0.5, "rescale": 1}, False, {}),
    "CAGrad-2": (2, "CAGrad", {"calpha": 0.5, "rescale": 1}, False, {}),
    "IMTL-2": (2, "IMTL", {}, False, {"loss_scale": IMTL_S[2]}),
    "IMTL-3": (3, "IMTL", {}, False, {"loss_scale": IMTL_S[3]}),
    "GradNorm-3": (
        3,
        "GradNorm",
        {"alpha": 1.5},
        False,
        {
            "epoch": 1,
            "loss_scale": [math.log(w) for w in GRADNORM_W],
            "train_loss_buffer": [[v, v] for v in GRADNORM_L0],
        },
    ),
}


def _model(k: int):
    torch.manual_seed(SEED)
    return build_mtl_model(
        "hard_sharing",
        input_kind="vector",
        input_shape=(IN_DIM,),
        out_dims=[1] * k,
        encoder_hidden=HIDDEN,
        encoder_out_dim=OUT_DIM,
    ).double()


def _batch(k: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(SEED)
    x = torch.randn(BATCH, IN_DIM, generator=g, dtype=torch.float64)
    y = torch.randn(BATCH, k, generator=g, dtype=torch.float64)
    return x, y


def _losses(model, x, y) -> torch.Tensor:
    out = model(x)
    return ((torch.cat(out.predictions, dim=1) - y) ** 2).mean(dim=0), out


def _flat(params) -> torch.Tensor:
    return torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params])


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


@pytest.fixture(scope="module")
def libmtl(tmp_path_factory) -> dict[str, dict]:
    """Every job of :data:`JOBS` in one run of LibMTL's python: job name -> its saved gradients
    (or ``{"status": "error: ..."}``)."""
    tmp = tmp_path_factory.mktemp("libmtl")
    problems = {}
    for k in (2, 3):
        x, y = _batch(k)
        path = tmp / f"problem{k}.pt"
        torch.save(
            {
                "model_state": _model(k).state_dict(),
                "x": x,
                "y": y,
                "in_dim": IN_DIM,
                "hidden": list(HIDDEN),
                "out_dim": OUT_DIM,
                "num_tasks": k,
            },
            path,
        )
        problems[k] = str(path)
    jobs = [
        {
            "problem": problems[k],
            "out": str(tmp / f"{name}.pt"),
            "method": cls,
            "kwargs": kwargs,
            "rep_grad": rep,
            "state": state,
        }
        for name, (k, cls, kwargs, rep, state) in JOBS.items()
    ]
    proc = subprocess.run(
        [str(PEER), "-I", str(WORKER), "grad", json.dumps({"jobs": jobs})], capture_output=True, text=True, timeout=600
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(MARK)]
    if not lines:
        if "No module named 'LibMTL'" in proc.stderr:
            pytest.skip(f"{PEER} has no LibMTL")
        raise AssertionError(f"LibMTL worker failed (exit {proc.returncode}): {proc.stderr[-2000:]}")
    result = json.loads(lines[-1][len(MARK) :])
    assert result["status"] == "ok", result
    out = {}
    for name, status in zip(JOBS, result["jobs"]):
        out[name] = torch.load(tmp / f"{name}.pt") if status == "ok" else {"status": status}
    return out


def ours(k: int, name: str, setup=None, **kwargs):
    """(shared gradient, head gradients, the method, the losses) of metabridge's ``name`` from the saved state."""
    model = _model(k)
    x, y = _batch(k)
    method = build_weighting(name, k, **kwargs).double()
    if setup is not None:
        with torch.no_grad():
            setup(method)
    losses, out = _losses(model, x, y)
    weighted_backward(
        method, losses, list(model.shared_parameters()), list(model.task_parameters()), features=out.features
    )
    heads = [_flat(list(h.parameters())) for h in model.heads]
    return _flat(list(model.shared_parameters())), heads, method, losses.detach()


def _ok(res: dict) -> dict:
    assert "status" not in res, res.get("status")
    return res


def test_the_problem_has_conflicting_gradients() -> None:
    """Otherwise PCGrad, MGDA and CAGrad would be tested on their trivial path only."""
    for k in (2, 3):
        model = _model(k)
        losses, _ = _losses(model, *_batch(k))
        gram = gram_matrix(per_task_gradients(losses, list(model.shared_parameters())))
        assert (gram < 0).any(), f"K={k}: no conflicting pair"


def test_the_same_losses_from_the_same_state(libmtl) -> None:
    for k in (2, 3):
        _, _, _, losses = ours(k, "equal")
        assert rel(losses, _ok(libmtl[f"EW-{k}"])["losses"]) < 1e-14


@pytest.mark.parametrize("k", [2, 3])
def test_equal_weighting_is_libmtls_ew(libmtl, k) -> None:
    """LibMTL's EW sums the losses (its docstring says 1/K; the code is ``losses.sum()``), which is
    metabridge's ``"equal"`` (reduction="sum"); metabridge's ``"mean"`` is 1/K of it."""
    shared, heads, _, _ = ours(k, "equal")
    res = _ok(libmtl[f"EW-{k}"])
    assert rel(shared, res["shared_grad"]) < 1e-12
    for a, b in zip(heads, res["head_grads"]):
        assert rel(a, b) < 1e-12


@pytest.mark.parametrize("k", [2, 3])
def test_uncertainty_weighting_is_libmtls_uw(libmtl, k) -> None:
    """Both minimise sum_i 0.5 exp(-s_i) L_i + 0.5 s_i; LibMTL initialises s = -0.5, metabridge s = 0:
    both are set to the same s. The gradient w.r.t. s agrees too."""
    s = torch.tensor(UW_S[k], dtype=torch.float64)
    shared, heads, method, _ = ours(k, "uw", setup=lambda m: m.log_vars.copy_(s))
    res = _ok(libmtl[f"UW-{k}"])
    assert rel(shared, res["shared_grad"]) < 1e-12
    for a, b in zip(heads, res["head_grads"]):
        assert rel(a, b) < 1e-12
    assert rel(method.log_vars.grad, res["loss_scale_grad"]) < 1e-12


def test_dwa_is_libmtls_dwa(libmtl) -> None:
    """The same two epoch averages give both w = K softmax((L(t-1) / L(t-2)) / T), T = 2 (LibMTL
    at ``epoch = 2`` reads ``train_loss_buffer[:, 1] / train_loss_buffer[:, 0]``)."""
    hist = torch.tensor(DWA_HISTORY, dtype=torch.float64)

    def setup(m) -> None:
        m.previous_avg.copy_(hist[:, 0])
        m.last_avg.copy_(hist[:, 1])
        m.epochs_done.fill_(2)

    shared, heads, _, _ = ours(3, "dwa", setup=setup)
    res = _ok(libmtl["DWA-3"])
    assert rel(shared, res["shared_grad"]) < 1e-12
    for a, b in zip(heads, res["head_grads"]):
        assert rel(a, b) < 1e-12


def test_scale_invariant_is_libmtls_gls_up_to_its_scale(libmtl) -> None:
    """LibMTL's GLS minimises the geometric mean GM = (prod_i L_i)^(1/K), whose gradient is
    (GM / K) sum_i grad L_i / L_i: metabridge's ``"scale_invariant"`` (sum_i log L_i) times GM / K.
    The same direction; with Adam, nearly the same trajectory."""
    shared, heads, _, losses = ours(3, "scale_invariant")
    res = _ok(libmtl["GLS-3"])
    scale = float(losses.prod() ** (1 / 3)) / 3
    assert rel(scale * shared, res["shared_grad"]) < 1e-12
    for a, b in zip(heads, res["head_grads"]):
        assert rel(scale * a, b) < 1e-12


def test_mgda_two_tasks_is_libmtls_mgda(libmtl) -> None:
    """K = 2, ``mgda_gn='none'`` (both libraries' default): the closed form. LibMTL clips gamma to
    0.999 / 0.001 where metabridge's closed form gives 1 / 0 (one gradient inside the other's
    half-space beyond its projection); this problem's solution is interior, where both are exact.
    Heads: LibMTL's get weights 1, metabridge's the min-norm weights (not compared)."""
    shared, _, method, _ = ours(2, "mgda", normalization="none")
    res = _ok(libmtl["MGDA-2"])
    alpha = res["returned"]
    assert 0.01 < float(alpha[0]) < 0.99, "the test needs an interior solution"
    assert rel(shared, res["shared_grad"]) < 1e-10


def test_mgda_three_tasks_agrees_with_libmtls_frank_wolfe(libmtl) -> None:
    """K = 3: LibMTL runs Frank-Wolfe (Sener & Koltun's Alg. 2) until the weights move by less
    than 1e-5 in l1 norm (at most 250 iterations, else it returns None and fails); metabridge's
    solver runs to a duality gap of 1e-10. They agree to LibMTL's stopping tolerance."""
    shared, _, _, _ = ours(3, "mgda", normalization="none")
    res = _ok(libmtl["MGDA-3"])
    assert rel(shared, res["shared_grad"]) < 1e-4


def test_libmtls_rep_grad_mgda_solves_on_batch_summed_feature_gradients(libmtl) -> None:
    """A difference of convention, not of arithmetic: LibMTL's MGDA with ``rep_grad=True`` (its
    MGDA-UB) sums each task's gradient w.r.t. the representation over the batch before the
    min-norm solve ([K, D]), and back-propagates sum_i alpha_i dL_i/dz with the full [K, B, D]
    gradients; metabridge's ``"mgda_ub"`` solves on the full [K, B*D] gradients (Sener & Koltun's
    Sec. 3.3 and their code). LibMTL's update is reproduced exactly by metabridge's solver on the
    batch-summed Gram matrix (with LibMTL's 0.999 / 0.001 at the boundary, which this problem
    reaches); metabridge's own update differs."""
    k = 2
    res = _ok(libmtl["MGDA-rep-2"])
    model = _model(k)
    losses, out = _losses(model, *_batch(k))
    fg = per_task_gradients(losses, [out.features])  # [K, B*D]
    summed = fg.view(k, BATCH, OUT_DIM).sum(dim=1)
    alpha = min_norm_weights(gram_matrix(summed)).to(fg.dtype)
    # LibMTL's two-task rule at the boundary: 0.999 / 0.001 where the exact minimiser is 1 / 0
    # (here the batch-summed gradient of task 1 lies beyond its projection on task 0's: alpha = (0, 1))
    alpha = torch.where(
        alpha == 0, torch.full_like(alpha, 0.001), torch.where(alpha == 1, torch.full_like(alpha, 0.999), alpha)
    )
    assert torch.allclose(alpha, res["returned"], rtol=0, atol=1e-12)
    torch.autograd.backward(
        out.features, grad_tensors=(alpha @ fg).view_as(out.features), inputs=list(model.shared_parameters())
    )
    emulated = _flat(list(model.shared_parameters()))
    assert rel(emulated, res["shared_grad"]) < 1e-10
    shared_ub, _, _, _ = ours(k, "mgda_ub", normalization="none")
    assert rel(shared_ub, res["shared_grad"]) > 1e-6  # the conventions do give different updates here


@pytest.mark.parametrize("k", [2, 3])
def test_pcgrad_with_the_same_task_orders_is_libmtls_pcgrad(libmtl, k) -> None:
    """With the same task orders (LibMTL's ``random.shuffle`` replaced by fixed orders in its
    worker, metabridge's ``_orders`` by the same orders without i): the same projections, the sum
    of the projected gradients, heads with weights 1 in both. (LibMTL's inner loop also visits
    j = i, a projection on g_i itself; put first, as here, it is a no-op; metabridge skips it.)"""
    orders = {2: [[0, 1], [1, 0]], 3: PCGRAD_ORDERS}[k]
    ours_orders = torch.tensor([[j for j in row if j != i] for i, row in enumerate(orders)])

    def setup(m) -> None:
        m._orders = lambda n: ours_orders

    shared, heads, method, _ = ours(k, "pcgrad", setup=setup)
    res = _ok(libmtl[f"PCGrad-{k}"])
    assert rel(shared, res["shared_grad"]) < 1e-10
    for a, b in zip(heads, res["head_grads"]):
        assert rel(a, b) < 1e-12
    projected = method.last_projection_weights
    assert not torch.allclose(projected, torch.ones_like(projected)), "no projection happened"


def test_cagrad_three_tasks_agrees_with_libmtls_slsqp(libmtl, monkeypatch) -> None:
    """c = 0.5, rescale = 1 in both. LibMTL solves the dual min_w w^T M g0 + c ||g0|| ||G^T w|| with
    scipy's SLSQP at its default tolerance (ftol 1e-6, absolute: at this problem's gradient scale,
    F ~ 0.05, it stops with the weights ~4e-3 off) and adds 1e-8 inside two square roots;
    metabridge runs projected gradient to 1e-10 (SLSQP with ftol 1e-15 gives metabridge's weights
    to 8 digits). So: (1) metabridge's dual value is no worse than LibMTL's and the updates agree
    to SLSQP's tolerance; (2) given LibMTL's own dual weights, metabridge's CAGrad assembles
    LibMTL's update to 1e-6 (the 1e-8's). Heads: LibMTL weights 1, metabridge the CAGrad weights
    (not compared)."""
    from metabridge.multitask.weighting import cagrad as cagrad_module

    res = _ok(libmtl["CAGrad-3"])
    shared, _, _, _ = ours(3, "cagrad", c=0.5, rescale=1)
    assert rel(shared, res["shared_grad"]) < 1e-2

    model = _model(3)
    losses, _ = _losses(model, *_batch(3))
    gram = gram_matrix(per_task_gradients(losses, list(model.shared_parameters())))
    g0 = torch.full((3,), 1 / 3, dtype=torch.float64)
    r = 0.5 * gram.mean().sqrt()

    def dual(w: torch.Tensor) -> float:
        return float(w @ gram @ g0 + r * (w @ gram @ w).sqrt())

    w_ours = cagrad_module.cagrad_dual_weights(gram, 0.5)
    w_lib = res["returned"]
    assert dual(w_ours) <= dual(w_lib) + 1e-12
    assert (dual(w_lib) - dual(w_ours)) / dual(w_ours) < 1e-4

    monkeypatch.setattr(cagrad_module, "cagrad_dual_weights", lambda gram, c, **kw: w_lib.to(gram))
    assembled, _, _, _ = ours(3, "cagrad", c=0.5, rescale=1)
    assert rel(assembled, res["shared_grad"]) < 1e-6


def test_libmtls_cagrad_works_for_three_tasks_only(libmtl) -> None:
    """LibMTL 1.1.5's CAGrad objective is ``x.reshape(1, 3).dot(A).dot(b.reshape(3, 1))``: any K
    other than 3 fails (a LibMTL bug; metabridge's CAGrad takes any K)."""
    assert "cannot reshape" in libmtl["CAGrad-2"].get("status", "")
    ours(2, "cagrad")  # runs


@pytest.mark.parametrize("k", [2, 3])
def test_imtl_is_libmtls_imtl(libmtl, k) -> None:
    """Both are the hybrid IMTL: IMTL-G's closed form on the gradients of e^{s_i} L_i (LibMTL with
    ``torch.inverse``, metabridge with ``torch.linalg.solve`` on the Gram matrix); the heads get
    e^{s_i} dL_i in both (LibMTL: the gradient of e^s L - s), and s gets e^{s_i} L_i - 1 in both.
    s is set to the same non-zero values."""
    s = torch.tensor(IMTL_S[k], dtype=torch.float64)
    shared, heads, method, _ = ours(k, "imtl", setup=lambda m: m.s.copy_(s))
    res = _ok(libmtl[f"IMTL-{k}"])
    assert rel(shared, res["shared_grad"]) < 1e-10
    for a, b in zip(heads, res["head_grads"]):
        assert rel(a, b) < 1e-12
    assert rel(method.s.grad, res["loss_scale_grad"]) < 1e-12


def test_gradnorm_with_the_same_weights_is_libmtls_gradnorm(libmtl) -> None:
    """The shared update is sum_i w_i g_i in both, with the current weights (LibMTL: K softmax of
    its logits; set to log w so that K softmax = w, as sum w = K) and the same L_i(0) (LibMTL's
    ``train_loss_buffer[:, 0]`` at epoch 1, metabridge's ``initial_losses``). How the weights then
    move differs by design: LibMTL back-propagates L_grad into its logits, stepped by the model's
    optimiser; metabridge steps w itself with its own Adam (lr 0.025), clamps and renormalises.
    Heads: LibMTL weights 1, metabridge w (not compared)."""
    w = torch.tensor(GRADNORM_W, dtype=torch.float64)
    l0 = torch.tensor(GRADNORM_L0, dtype=torch.float64)

    def setup(m) -> None:
        m.task_weights.copy_(w)
        m.initial_losses.copy_(l0)

    shared, _, _, _ = ours(3, "gradnorm", setup=setup)
    res = _ok(libmtl["GradNorm-3"])
    assert rel(shared, res["shared_grad"]) < 1e-12
    assert res["loss_scale_grad"] is not None and res["loss_scale_grad"].abs().sum() > 0  # L_grad reached the logits


@pytest.mark.skip(
    reason="RLW: LibMTL draws from the global torch RNG (torch.distributions.Normal), metabridge from "
    "its own seeded generator; with given weights RLW is linear scalarisation (see EW)"
)
def test_rlw() -> None:
    pass


@pytest.mark.skip(
    reason="Nash-MTL and Aligned-MTL are not in LibMTL 1.1.5 (the installed version); a later "
    "LibMTL's Nash_MTL also needs cvxpy, which that environment does not have"
)
def test_nash_mtl_and_aligned_mtl() -> None:
    pass
