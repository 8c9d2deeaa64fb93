"""learn2learn's meta-gradients equal metabridge's (MAML, first-order MAML, ANIL; float64).

A peer comparison, not CI: opt in with ``METABRIDGE_PEER_TESTS=1``. learn2learn 0.2.0 does
not build from its sdist on Python 3.11; ``scripts/install_peers.sh`` builds it into
``~/.cache/metabridge/peers/venv``, whose ``site-packages`` is appended to ``sys.path`` here
(``_peer_impls.use_peer_site``; ``$METABRIDGE_PEER_SITE`` names another one). The
learn2learn side is ``_peer_impls.learn2learn_step``, the one ``metabridge bench peers`` times.
"""

from __future__ import annotations

import os

import pytest
import torch

from metabridge.benchmarks import _peer_impls

OPTED_IN = os.environ.get("METABRIDGE_PEER_TESTS") == "1"
WHY = "not opted in"
if OPTED_IN:
    _peer_impls.use_peer_site(os.environ.get(_peer_impls.PEER_SITE_ENV, "auto"))
    WHY = _peer_impls.available("learn2learn") or ""

pytestmark = [
    pytest.mark.peers,
    pytest.mark.skipif(
        not OPTED_IN,
        reason="peer comparison, not CI: opt in with METABRIDGE_PEER_TESTS=1 "
        "(learn2learn from scripts/install_peers.sh)",
    ),
    pytest.mark.skipif(OPTED_IN and bool(WHY), reason=WHY),
]


def _meta_gradient(lib: str, method: str, shots: int) -> torch.Tensor:
    """``lib``'s float64 meta-gradient on 2 tasks of 5-way ``shots``-shot, 3 queries, 2 inner steps."""
    model, batch = _peer_impls.make_problem(shots, 2, 3, "cpu", torch.float64, seed=3)
    step, params = _peer_impls.build_step(lib, model, batch, method, _peer_impls.INNER_LR, 2)
    step()
    return _peer_impls.flat_grad(params)


@pytest.mark.parametrize("method", _peer_impls.METHODS)
def test_learn2learn_meta_gradient_equals_metabridges(method: str) -> None:
    ours = _meta_gradient("metabridge", method, 1)
    theirs = _meta_gradient("learn2learn", method, 1)
    assert ours.norm() > 0
    assert float((theirs - ours).norm() / ours.norm()) < 1e-12


def test_first_order_and_anil_differ_from_maml_in_learn2learn_too() -> None:
    """The three methods are three different gradients (the flags reach learn2learn)."""
    maml, fomaml, anil = (_meta_gradient("learn2learn", m, 1) for m in _peer_impls.METHODS)
    assert float((maml - fomaml).norm() / maml.norm()) > 1e-4
    assert float((maml - anil).norm() / maml.norm()) > 1e-4


def test_learn2learn_taskset_draws_5_way_5_shot_15_query_episodes() -> None:
    from metabridge.benchmarks._common import synthetic_dataset
    from metabridge.benchmarks.sampling import learn2learn_draw

    ((xs, ys, xq, yq),) = learn2learn_draw(synthetic_dataset(12, 20, 8, 1))(1)
    assert xs.shape == (25, 1, 8, 8) and xq.shape == (75, 1, 8, 8) and xs.dtype == torch.float32
    assert 0 <= float(xs.min()) and float(xs.max()) <= 1
    assert sorted(ys.tolist()) == sorted(list(range(5)) * 5) and sorted(yq.tolist()) == sorted(list(range(5)) * 15)
