"""LibMTL's side of ``metabridge bench mtl_cost`` and of ``tests/test_mtl_vs_libmtl.py``.

A standalone script, run by the python of a virtual environment where LibMTL is installed
(never by metabridge's, and it never imports metabridge): ::

    PEER_PYTHON -I _libmtl_worker.py time SPEC_JSON     # ms per training step of one method
    PEER_PYTHON -I _libmtl_worker.py grad SPEC_JSON     # one backward on a saved problem

The model is the one metabridge's ``build_mtl_model("hard_sharing", input_kind="vector", ...)``
builds with its default MLP encoder, rebuilt here in plain torch with the same layers in the
same order (``encoder.net`` = Linear, ReLU, ..., Linear, ReLU; one ``Linear(out_dim, 1)`` head
per task), so that one seed gives both libraries the same initial weights. It is wrapped as
LibMTL's own trainer wraps a model (``class MTLmodel(architecture, weighting)`` with the
``HPS`` architecture), so the weighting's ``backward`` sees what it sees in LibMTL:
``task_num``, ``device``, ``rep_grad``, ``get_share_params()``, ``zero_grad_share_params()``,
``epoch`` and ``train_loss_buffer``. One compatibility change: ``zero_grad_share_params`` zeroes
the shared gradients in place (``set_to_none=False``), as ``zero_grad`` did before torch 2.0;
with torch 2's default (None) every gradient method of LibMTL 1.1.5 fails in ``_reset_grad``.

``time``: SPEC is a JSON object with ``method`` (a LibMTL class name: EW, UW, DWA, ...),
``kwargs`` (its ``weight_args``), ``rep_grad``, ``num_tasks``, ``in_dim``, ``hidden``,
``out_dim``, ``batch``, ``seed``, ``warmup``, ``steps``, ``threads``, ``lr``, ``device``. One
training step is ``zero_grad``, forward, the K mean-squared errors, ``model.backward(losses,
**kwargs)``, ``Adam.step()``. The last stdout line starting with ``@@MTLCOST`` holds the result.

``grad``: SPEC has ``jobs``, a list of jobs (or is one job). A job has ``problem`` (a
``torch.save``d dict: ``model_state`` with metabridge's parameter names, ``x``, ``y``, ``in_dim``,
``hidden``, ``out_dim``, ``num_tasks``), ``out`` (where the gradients are saved), ``method``,
``kwargs``, ``rep_grad`` and ``state`` (optional: ``loss_scale``, ``epoch``,
``train_loss_buffer``, ``orders``: PCGrad's task orders, which replace ``random.shuffle`` in
LibMTL's PCGrad). Everything runs in float64. The result lists every job's status (a failing
job, e.g. LibMTL's CAGrad at K != 3, does not stop the others).
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time

MARK = "@@MTLCOST "


def _build(spec: dict, device: str):
    """(model mixed with the weighting, task names), as LibMTL's Trainer._prepare_model builds it."""
    import LibMTL.weighting as weightings
    import torch
    from LibMTL.architecture import HPS
    from torch import nn

    k = int(spec["num_tasks"])
    names = [f"t{i}" for i in range(k)]

    class Encoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            layers = []
            prev = int(spec["in_dim"])
            for h in (*spec["hidden"], spec["out_dim"]):
                layers += [nn.Linear(prev, int(h)), nn.ReLU()]
                prev = int(h)
            self.net = nn.Sequential(*layers)

        def forward(self, x):
            return self.net(x)

    # the encoder first, then the heads: metabridge's construction order, hence its initial weights
    encoder = Encoder()
    decoders = nn.ModuleDict({n: nn.Linear(int(spec["out_dim"]), 1) for n in names})
    weighting = getattr(weightings, spec["method"])

    class MTLmodel(HPS, weighting):
        def __init__(self) -> None:
            super().__init__(
                task_name=names,
                encoder_class=lambda: encoder,
                decoders=decoders,
                rep_grad=bool(spec.get("rep_grad", False)),
                multi_input=False,
                device=torch.device(device),
            )
            self.init_param()

        def zero_grad_share_params(self) -> None:
            # LibMTL 1.1.5 predates torch 2.0, whose zero_grad() sets the gradients to None by default:
            # its _reset_grad then writes into param.grad.data and fails on None. Zero them in place,
            # as zero_grad did when LibMTL was written.
            self.encoder.zero_grad(set_to_none=False)

    model = MTLmodel().to(device)
    model.epoch = 0
    model.train_loss_buffer = None
    return model, names


def _losses(model, names, x, y):
    import torch

    out = model(x)
    preds = torch.cat([out[n] for n in names], dim=1)
    return ((preds - y) ** 2).mean(dim=0)


def _set_history(model, spec: dict, losses) -> None:
    """The epoch and loss history the methods that read them need to run their real path:
    GradNorm reads L(0) from ``train_loss_buffer[:, 0]`` from epoch 1 on; DWA the loss ratios of
    the two previous epochs from epoch 2 on."""
    import numpy as np

    k = int(spec["num_tasks"])
    first = losses.detach().cpu().double().numpy()
    if spec["method"] == "GradNorm":
        model.epoch = 1
        model.train_loss_buffer = np.stack([first, first], axis=1)
    elif spec["method"] == "DWA":
        model.epoch = 2
        model.train_loss_buffer = np.ones((k, 3))


def run_time(spec: dict) -> dict:
    import torch

    threads = int(spec["threads"])
    if threads > 0:
        torch.set_num_threads(threads)
    device = spec.get("device", "cpu")
    torch.manual_seed(int(spec["seed"]))
    model, names = _build(spec, device)
    g = torch.Generator().manual_seed(int(spec["seed"]))
    x = torch.randn(int(spec["batch"]), int(spec["in_dim"]), generator=g).to(device)
    y = torch.randn(int(spec["batch"]), int(spec["num_tasks"]), generator=g).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=float(spec["lr"]))
    kwargs = dict(spec.get("kwargs", {}))
    with torch.no_grad():
        _set_history(model, spec, _losses(model, names, x, y))
    shared = sum(p.numel() for p in model.get_share_params())

    def sync() -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    def step() -> None:
        opt.zero_grad()
        losses = _losses(model, names, x, y)
        model.backward(losses, **kwargs)
        opt.step()

    times = []
    for i in range(int(spec["warmup"]) + int(spec["steps"])):
        sync()
        t0 = time.perf_counter()
        step()
        sync()
        if i >= int(spec["warmup"]):
            times.append(time.perf_counter() - t0)
    return {
        "status": "ok",
        "ms_per_step": 1e3 * statistics.median(times),
        "steps_ms": [1e3 * t for t in times],
        "shared_params": shared,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "libmtl": _libmtl_version(),
    }


def _libmtl_version() -> str:
    try:
        from importlib.metadata import version

        return version("LibMTL")
    except Exception:  # noqa: BLE001 - only a label
        return "unknown"


class _FixedOrders:
    """Stands in for the ``random`` module inside LibMTL's PCGrad: ``shuffle`` writes the next
    prescribed order into the list (deterministic task orders)."""

    def __init__(self, orders: list[list[int]]) -> None:
        self._orders = iter(orders)

    def shuffle(self, seq: list) -> None:
        seq[:] = list(next(self._orders))


def _grad_job(job: dict) -> None:
    import numpy as np
    import torch

    problem = torch.load(job["problem"])
    spec = {**job, **{k: problem[k] for k in ("in_dim", "hidden", "out_dim", "num_tasks")}}
    model, names = _build(spec, "cpu")
    state = {}
    for key, value in problem["model_state"].items():
        if key.startswith("heads."):
            _, idx, rest = key.split(".", 2)
            key = f"decoders.t{idx}.{rest}"
        state[key] = value.double()
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [m for m in missing if not m.startswith("loss_scale")]
    if missing or unexpected:
        raise RuntimeError(f"state dict mismatch: missing {missing}, unexpected {unexpected}")
    extra = job.get("state", {})
    if "loss_scale" in extra:
        with torch.no_grad():
            model.loss_scale.copy_(torch.tensor(extra["loss_scale"]))
    if "epoch" in extra:
        model.epoch = int(extra["epoch"])
    if "train_loss_buffer" in extra:
        model.train_loss_buffer = np.asarray(extra["train_loss_buffer"], dtype=np.float64)
    pcgrad_module = sys.modules.get("LibMTL.weighting.PCGrad")
    saved_random = getattr(pcgrad_module, "random", None)
    if "orders" in extra:
        pcgrad_module.random = _FixedOrders(extra["orders"])
    try:
        x, y = problem["x"].double(), problem["y"].double()
        model.zero_grad()
        losses = _losses(model, names, x, y)
        returned = model.backward(losses, **job.get("kwargs", {}))
    finally:
        if pcgrad_module is not None:
            pcgrad_module.random = saved_random

    def flat(params) -> torch.Tensor:
        return torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params])

    out = {
        "shared_grad": flat(list(model.get_share_params())),
        "head_grads": [flat(list(model.decoders[n].parameters())) for n in names],
        "losses": losses.detach(),
        "returned": None if returned is None else torch.as_tensor(np.asarray(returned, dtype=np.float64)),
    }
    if hasattr(model, "loss_scale"):
        out["loss_scale_grad"] = None if model.loss_scale.grad is None else model.loss_scale.grad.clone()
    torch.save(out, job["out"])


def run_grad(spec: dict) -> dict:
    """Every job of ``spec["jobs"]`` (or ``spec`` itself, one job); a failing job is reported, not fatal."""
    import torch

    torch.set_default_dtype(torch.float64)  # LibMTL allocates its gradient buffers in the default dtype
    statuses = []
    for job in spec.get("jobs", [spec]):
        try:
            _grad_job(job)
            statuses.append("ok")
        except Exception as exc:  # noqa: BLE001 - reported per job
            last = str(exc).strip().splitlines()
            statuses.append(f"error: {type(exc).__name__}: {last[-1] if last else ''}")
    return {"status": "ok", "jobs": statuses, "libmtl": _libmtl_version(), "torch": torch.__version__}


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[1] not in ("time", "grad"):
        sys.stderr.write("usage: PEER_PYTHON -I _libmtl_worker.py {time|grad} SPEC_JSON\n")
        return 2
    spec = json.loads(argv[2])
    try:
        result = run_time(spec) if argv[1] == "time" else run_grad(spec)
    except Exception as exc:  # noqa: BLE001 - reported to the caller, which records it
        import traceback

        traceback.print_exc()
        last = str(exc).strip().splitlines()
        result = {"status": f"error: {type(exc).__name__}: {last[-1] if last else ''}"}
    print(MARK + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    # run as a script: never let the directory of this file (metabridge's benchmarks) shadow a module
    # (``-I`` already keeps it off sys.path; this covers a run without it)
    _here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _here]
    sys.exit(main(sys.argv))
