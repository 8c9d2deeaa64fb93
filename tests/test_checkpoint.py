"""Atomic checkpoint writes, RNG capture/restore and clear errors for bad files."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from torch import nn

import metabridge.checkpoint as ckpt_mod
from metabridge.checkpoint import (
    CheckpointError,
    CheckpointManager,
    CheckpointNotFoundError,
    atomic_save,
    capture_rng_state,
    load_checkpoint,
    make_payload,
    preserved_rng,
    restore_rng_state,
)


def _payload(step: int, value: float) -> dict:
    model = nn.Linear(3, 2)
    with torch.no_grad():
        model.weight.fill_(value)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(torch.ones(1, 3)).sum().backward()
    opt.step()
    return make_payload(
        algorithm=model, optimizer=opt, step=step, config={"seed": 0}, task_generator=torch.Generator().manual_seed(1)
    )


def test_round_trip(tmp_path):
    path = atomic_save(_payload(3, 0.5), tmp_path / "last.pt")
    ckpt = load_checkpoint(path)
    assert ckpt["step"] == 3
    assert ckpt["config"] == {"seed": 0}
    assert torch.allclose(ckpt["algorithm"]["weight"], torch.full((2, 3), 0.5), atol=1e-2)
    assert ckpt["optimizer"]["state"][0]["exp_avg"].shape == (2, 3)
    # a directory means its last.pt
    assert load_checkpoint(tmp_path)["step"] == 3


def test_failed_write_leaves_the_old_checkpoint_intact(tmp_path, monkeypatch):
    manager = CheckpointManager(tmp_path)
    manager.save(_payload(1, 1.0))
    before = (tmp_path / "last.pt").read_bytes()

    def dies_midway(payload, f):
        f.write(b"PK\x03\x04 half a zip archive")  # some bytes reach the temp file, then the disk fills
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ckpt_mod, "_write_payload", dies_midway)
    with pytest.raises(CheckpointError, match="No space left"):
        manager.save(_payload(2, 2.0))
    monkeypatch.undo()

    assert (tmp_path / "last.pt").read_bytes() == before
    assert load_checkpoint(tmp_path / "last.pt")["step"] == 1
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp file left behind


def test_manager_keeps_previous_and_best(tmp_path):
    m = CheckpointManager(tmp_path)
    m.save(_payload(1, 1.0), is_best=True)
    m.save(_payload(2, 2.0))
    m.save(_payload(3, 3.0))
    assert load_checkpoint(m.last)["step"] == 3
    assert load_checkpoint(m.previous)["step"] == 2
    assert load_checkpoint(m.best)["step"] == 1  # hard link survives the later replacements


def test_corrupt_last_falls_back_to_previous(tmp_path):
    m = CheckpointManager(tmp_path)
    m.save(_payload(1, 1.0))
    m.save(_payload(2, 2.0))
    data = m.last.read_bytes()
    m.last.write_bytes(data[: len(data) // 3])  # truncated by a crash of the storage layer
    with pytest.raises(CheckpointError, match="corrupt or truncated") as info:
        load_checkpoint(m.last)
    assert "last.prev.pt" in str(info.value)
    with pytest.warns(
        UserWarning, match="last.pt is corrupt or truncated .* using .*last.prev.pt \\(step 1\\) instead"
    ):
        ckpt, path = m.load_latest()
    assert ckpt["step"] == 1 and path == m.previous


def test_missing_and_foreign_files_have_clear_errors(tmp_path):
    with pytest.raises(CheckpointNotFoundError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "nope.pt")
    with pytest.raises(FileNotFoundError):  # also a FileNotFoundError for callers that catch that
        load_checkpoint(tmp_path / "nope.pt")
    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_checkpoint(tmp_path / "garbage.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match="not a metabridge checkpoint"):
        load_checkpoint(tmp_path / "plain.pt")
    with pytest.raises(CheckpointNotFoundError, match="without --resume"):
        CheckpointManager(tmp_path / "empty").load_latest()


def test_rng_states_round_trip_through_a_file(tmp_path):
    g = torch.Generator().manual_seed(5)
    torch.manual_seed(1), random.seed(2), np.random.seed(3)
    state = capture_rng_state(g)
    atomic_save({"rng": state}, tmp_path / "rng.pt")
    expected = (torch.rand(3), random.random(), np.random.rand(), torch.rand(2, generator=g))
    torch.manual_seed(99), random.seed(99), np.random.seed(99), g.manual_seed(99)
    loaded = torch.load(tmp_path / "rng.pt", weights_only=True)["rng"]
    restore_rng_state(loaded, g)
    got = (torch.rand(3), random.random(), np.random.rand(), torch.rand(2, generator=g))
    assert torch.equal(got[0], expected[0]) and got[1] == expected[1] and got[2] == expected[2]
    assert torch.equal(got[3], expected[3])


def test_preserved_rng_hides_draws_inside_the_block():
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    expected = (torch.rand(2), torch.rand(2, generator=g))
    torch.manual_seed(0), g.manual_seed(0)
    with preserved_rng(g):
        torch.rand(100), torch.rand(100, generator=g), random.random(), np.random.rand()
    got = (torch.rand(2), torch.rand(2, generator=g))
    assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])
