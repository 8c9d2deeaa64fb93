"""bfloat16 autocast for the first-order embedding methods (MTL, ProtoNet, MetaOptNet).

Under ``torch.autocast("cpu", dtype=torch.bfloat16)`` (what the trainer uses on any device
when ``amp="bf16"``) the backbone must run in bfloat16 and every head and solver in float32 /
float64; the loss must stay close to the float32 loss and its gradient must reach the body.
"""

from __future__ import annotations

import pytest
import torch

from metabridge.algorithms import embedding, metaoptnet, mtl, protonet
from metabridge.algorithms.registry import ALGORITHMS, build_algorithm
from metabridge.data.class_dataset import ClassDataset
from metabridge.heads import svm as svm_mod
from metabridge.tasks.episodes import EpisodeSampler

CASES = {"protonet": {}, "mtl": {}, "metaoptnet-svm": {"head": "svm"}, "metaoptnet-ridge": {"head": "ridge"}}


def _batch(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(8).repeat_interleave(6)
    # class-dependent images, so the loss is not at chance and bfloat16 error is measured on signal
    base = torch.randint(0, 256, (8, 1, 16, 16), generator=g)
    noise = torch.randint(-40, 41, (len(labels), 1, 16, 16), generator=g)
    images = (base[labels] + noise).clamp(0, 255).to(torch.uint8)
    data = ClassDataset(images, labels, [str(c) for c in range(8)], name="amp")
    return EpisodeSampler(data, 4, 2, 3).sample(2, torch.Generator().manual_seed(seed))


def _algorithm(case: str):
    torch.manual_seed(0)
    name = case.split("-")[0]
    return build_algorithm(
        name,
        model="conv4",
        n_way=4,
        in_channels=1,
        image_size=16,
        num_train_classes=8,
        model_kwargs={"hidden": 16},
        **CASES[case],
    ).train()


def _loss_and_grads(algo, batch, amp: bool):
    algo.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
        loss = algo.meta_loss(batch)
    loss.backward()
    grads = [p.grad for p in algo.backbone.parameters()]
    return loss.detach(), grads


def test_the_flag_is_set_on_the_three_first_order_embedding_methods_only() -> None:
    assert protonet.ProtoNet.supports_autocast and mtl.MTL.supports_autocast and metaoptnet.MetaOptNet.supports_autocast
    assert not ALGORITHMS["maml"].supports_autocast and not ALGORITHMS["reptile"].supports_autocast


@pytest.mark.parametrize("case", list(CASES))
def test_bf16_body_full_precision_head_close_loss_and_gradients(case: str, monkeypatch) -> None:
    batch = _batch()
    algo = _algorithm(case)
    state = {k: v.clone() for k, v in algo.state_dict().items()}
    ref_loss, ref_grads = _loss_and_grads(algo, batch, amp=False)
    algo.load_state_dict(state)  # the same running statistics for the second forward

    body_out: list[torch.dtype] = []
    algo.backbone.register_forward_hook(lambda m, i, o: body_out.append(o.dtype))
    head_inputs: list[tuple] = []

    def spy(module, name):
        original = getattr(module, name)

        def wrapped(*args, **kwargs):
            tensors = [a for a in args if isinstance(a, torch.Tensor) and a.is_floating_point()]
            head_inputs.append((name, {t.dtype for t in tensors}, torch.is_autocast_enabled("cpu")))
            out = original(*args, **kwargs)
            if isinstance(out, torch.Tensor):
                head_inputs.append((name + " output", {out.dtype}, None))
            return out

        monkeypatch.setattr(module, name, wrapped)

    spy(protonet, "prototype_logits")
    spy(metaoptnet, "metaoptnet_svm_logits")
    spy(metaoptnet, "r2d2_logits")
    spy(svm_mod, "_ipm_cs_dual")
    spy(mtl.MTL, "_head_loss")

    loss, grads = _loss_and_grads(algo, batch, amp=True)
    assert body_out and set(body_out) == {torch.bfloat16}, "the backbone did not run in bfloat16"
    assert head_inputs, "no head was seen"
    for name, dtypes, autocast_on in head_inputs:
        if name == "_ipm_cs_dual":
            assert dtypes == {torch.float64}, (name, dtypes)  # the SVM's solver dtype
        else:
            assert dtypes == {torch.float32}, (name, dtypes)
        assert not autocast_on, f"{name} ran under autocast"
    if case == "metaoptnet-svm":
        assert any(n == "_ipm_cs_dual" for n, _, _ in head_inputs)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    assert abs(float(loss) - float(ref_loss)) <= 5e-2 * abs(float(ref_loss)), (float(loss), float(ref_loss))
    for g, _ref in zip(grads, ref_grads):
        assert g is not None and g.dtype == torch.float32 and torch.isfinite(g).all()
    flat, ref_flat = torch.cat([g.flatten() for g in grads]), torch.cat([g.flatten() for g in ref_grads])
    cos = torch.nn.functional.cosine_similarity(flat, ref_flat, dim=0)
    assert cos > 0.9, f"the bfloat16 gradient points elsewhere (cosine {float(cos):.3f})"


def test_mtl_refit_under_autocast_runs_in_full_precision() -> None:
    batch = _batch(1)
    algo = _algorithm("mtl").eval()
    with torch.no_grad():
        ref = algo.predict(batch)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = algo.predict(batch)
    assert out.dtype == torch.float32
    assert (out.argmax(-1) == ref.argmax(-1)).float().mean() >= 0.8


def test_autocast_off_is_a_no_op_outside_autocast() -> None:
    x = torch.ones(2)
    with embedding.autocast_off(x):
        assert not torch.is_autocast_enabled("cpu")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        with embedding.autocast_off(x):
            assert not torch.is_autocast_enabled("cpu")
        assert torch.is_autocast_enabled("cpu")
    assert embedding.head_features(x.bfloat16()).dtype == torch.float32
    assert embedding.head_features(x.double()).dtype == torch.float64
