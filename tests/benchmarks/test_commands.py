"""The benchmark and theory commands are plain functions whose docstrings document every
option (the CLI's --help comes from them), and each benchmark runs at toy sizes."""

from __future__ import annotations

import importlib
import inspect
import json
import pkgutil

import pytest

import metabridge.benchmarks
from metabridge.cli import _split_docstring

BENCHMARKS = sorted(m.name for m in pkgutil.iter_modules(metabridge.benchmarks.__path__) if not m.name.startswith("_"))
COMMANDS = [f"metabridge.benchmarks.{name}:main" for name in BENCHMARKS] + [
    "metabridge.theory.commands:linreg", "metabridge.theory.commands:closeness"]


def _load(spec: str):
    module, attr = spec.split(":")
    return getattr(importlib.import_module(module), attr)


def test_the_moved_harnesses_are_benchmarks() -> None:
    assert {"compare", "heads", "memory_steps", "mtl_heads", "peers", "sampling", "sinusoid",
            "torch_compile"} <= set(BENCHMARKS)


@pytest.mark.parametrize("spec", COMMANDS)
def test_every_command_documents_every_parameter(spec: str) -> None:
    fn = _load(spec)
    summary, helps = _split_docstring(fn.__doc__)
    params = inspect.signature(fn).parameters
    assert summary, f"{spec}: no command help"
    assert set(helps) == set(params), f"{spec}: Args documents {sorted(helps)}, signature has {sorted(params)}"
    for name, p in params.items():
        assert p.default is not inspect.Parameter.empty, f"{spec}: {name} has no default"
        assert "typer" not in type(p.default).__module__, f"{spec}: {name} defaults to a typer object"
    assert "typer" not in inspect.getsource(inspect.getmodule(fn)), f"{spec}: imports typer"


def test_mtl_heads_runs_at_toy_size(tmp_path, capsys) -> None:
    from metabridge.benchmarks.mtl_heads import main

    res = main(dims="8,16", tasks=2, per_task=10, classes=10, repeats=1, results_dir=str(tmp_path))
    assert [r["dim"] for r in res["rows"]] == [8, 16]
    assert json.loads((tmp_path / "mtl_heads.json").read_text())["rows"][0]["bmm_s"] > 0
    assert "one bmm" in capsys.readouterr().out
    with pytest.raises(ValueError, match="multiple of 5"):
        main(per_task=7, results_dir=str(tmp_path))


def test_heads_runs_at_toy_size(tmp_path) -> None:
    pytest.importorskip("sklearn")
    import torch

    from metabridge.benchmarks.heads import main

    threads = torch.get_num_threads()
    try:
        res = main(threads=1, repeats=1, tasks=2, dims="8", results_dir=str(tmp_path))
    finally:
        torch.set_num_threads(threads)
    assert set(res["seconds_per_meta_batch"]) == {"D=8"}
    assert (tmp_path / "heads.json").exists()
    with pytest.raises(ValueError, match="--dims"):
        main(dims="8,x", results_dir=str(tmp_path))


@pytest.mark.parametrize("spec, kwargs, message", [
    ("metabridge.benchmarks.memory_steps:main", {"inner_steps": "1,0"}, "--inner-steps"),
    ("metabridge.benchmarks.memory_steps:main", {"libs": " , "}, "--libs is empty"),
    ("metabridge.benchmarks.torch_compile:main", {"repeats": 0}, "--repeats"),
])
def test_bad_options_are_refused_before_anything_runs(spec, kwargs, message, tmp_path) -> None:
    with pytest.raises(ValueError, match=message):
        _load(spec)(results_dir=str(tmp_path / "never"), **kwargs)
    assert not (tmp_path / "never").exists()


def _no_learn2learn(lib: str) -> str | None:
    """``_peer_impls.available`` as in a venv without learn2learn (higher and TorchOpt too)."""
    return f"{lib} is not importable (ModuleNotFoundError); build the peer venv with ../shared/peers/install.sh"


def test_peers_skips_an_absent_peer_and_refuses_it_when_named(tmp_path, capsys, monkeypatch) -> None:
    from metabridge.benchmarks import peers

    monkeypatch.setattr(peers, "available", _no_learn2learn)
    assert peers.resolve_libs("metabridge,metabridge:t1") == (["metabridge", "metabridge:t1"], [])
    with pytest.raises(ValueError, match="unknown library"):
        peers.resolve_libs("metabridge,tensorflow")
    libs, skipped = peers.resolve_libs("auto,metabridge:closed-bn")
    assert libs == ["metabridge", "metabridge:closed-bn"] and len(skipped) == 3
    with pytest.raises(ValueError, match="only metabridge variants"):
        peers.resolve_libs("auto,higher")
    with pytest.raises(ValueError, match="learn2learn is not importable.*install.sh"):
        peers.main(libs="metabridge,learn2learn", peer_site="none", out=str(tmp_path / "never" / "p.json"))
    assert not (tmp_path / "never").exists()
    res = peers.main(methods="anil", shots="1", meta_batch=2, repeats=1, warmup=0, inner_steps=1, queries=1,
                     memory=False, flops=False, peer_site="none", out=str(tmp_path / "p.json"))
    out = capsys.readouterr().out
    assert "skipped: learn2learn is not importable" in out and "install.sh" in out
    assert res["protocol"]["libs"] == ["metabridge"] and len(res["protocol"]["skipped"]) == 3
    assert json.loads((tmp_path / "p.json").read_text())["rows"][0]["median_s"]["metabridge"] > 0


def test_sampling_runs_at_toy_size_and_skips_learn2learn(tmp_path, capsys, monkeypatch) -> None:
    from metabridge.benchmarks import sampling

    monkeypatch.setattr(sampling, "available", _no_learn2learn)
    monkeypatch.setattr(sampling, "DATASETS", {"tiny": (8, 20, 8, 1)})
    with pytest.raises(ValueError, match="learn2learn is not importable"):
        sampling.main(libs="learn2learn", peer_site="none", out=str(tmp_path / "never.json"))
    with pytest.raises(ValueError, match="--libs"):
        sampling.main(libs="torchmeta", peer_site="none", out=str(tmp_path / "never.json"))
    res = sampling.main(batch_sizes="1,2", seconds=0.05, peer_site="none", out=str(tmp_path / "s.json"))
    assert "skipped: learn2learn is not importable" in capsys.readouterr().out
    assert [(r["library"], r["episodes_per_call"]) for r in res["rows"]] == [("metabridge", 1), ("metabridge", 2)]
    assert all(r["episodes_per_s"] > 0 for r in res["rows"]) and not (tmp_path / "never.json").exists()
