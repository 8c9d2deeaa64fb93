"""Every benchmark command is a typed config (``CONFIG``, a ``CommandConfig`` whose field
descriptions are the --help texts) plus ``run(config)``, and each one runs at toy sizes."""

from __future__ import annotations

import importlib
import inspect
import json
import pkgutil
from pathlib import Path

import pytest
import torch

import metabridge.benchmarks
from metabridge.config import CommandConfig

BENCHMARKS = sorted(m.name for m in pkgutil.iter_modules(metabridge.benchmarks.__path__) if not m.name.startswith("_"))


def test_the_moved_harnesses_are_benchmarks() -> None:
    assert {
        "compare",
        "cost",
        "ddp",
        "heads",
        "memory_steps",
        "mtl_cost",
        "mtl_heads",
        "peers",
        "rl_sampler",
        "sampling",
        "sinusoid",
        "torch_compile",
    } <= set(BENCHMARKS)


@pytest.mark.parametrize("name", BENCHMARKS)
def test_every_benchmark_is_a_typed_config_and_a_run_function(name: str) -> None:
    module = importlib.import_module(f"metabridge.benchmarks.{name}")
    config = module.CONFIG
    assert issubclass(config, CommandConfig), f"{name}: CONFIG is not a CommandConfig"
    assert not hasattr(module, "main"), f"{name}: the string-typed main is gone"
    params = list(inspect.signature(module.run).parameters.values())
    assert len(params) == 1 and params[0].annotation in (config.__name__, config), f"{name}: run(config) expected"
    assert config.__doc__ and module.run.__doc__, f"{name}: no command help"
    for field, info in config.model_fields.items():
        assert info.description, f"{name}: {field} has no description (its --help text)"
        assert info.annotation is not str or field not in ("methods", "libs", "shots", "tasks", "dims"), (
            f"{name}: {field} is a comma-separated string"
        )
    default_out = config.model_fields["out"].default
    assert Path(default_out).parts[0] == "runs", f"{name}: results go under runs/, not {default_out}"
    assert "typer" not in inspect.getsource(module), f"{name}: imports typer"
    assert "csv_options" not in inspect.getsource(module), f"{name}: parses comma-separated strings"


@pytest.mark.parametrize(
    "name, bad",
    [
        ("heads", {"dims": [8, 0]}),
        ("mtl_heads", {"per_task": 7}),
        ("mtl_heads", {"classes": 4}),
        ("memory_steps", {"inner_steps": [1, 0]}),
        ("memory_steps", {"libs": ["metabridge", "jax"]}),
        ("torch_compile", {"repeats": 0}),
        ("ddp", {"nproc": 3}),
        ("ddp", {"algorithm": "mamll"}),
        ("rl_sampler", {"hidden": []}),
        ("sampling", {"libs": ["auto", "metabridge"]}),
        ("peers", {"libs": ["metabridge", "tensorflow"]}),
        ("peers", {"methods": ["reptile"]}),
    ],
)
def test_bad_settings_are_refused_when_the_config_is_built(name: str, bad: dict) -> None:
    config = importlib.import_module(f"metabridge.benchmarks.{name}").CONFIG
    with pytest.raises(ValueError, match="|".join(bad)):
        config(**bad)


def test_mtl_heads_runs_at_toy_size(tmp_path, capsys) -> None:
    from metabridge.benchmarks.mtl_heads import MtlHeadsConfig, run

    res = run(MtlHeadsConfig(dims=[8, 16], tasks=2, per_task=10, classes=10, repeats=1, out=tmp_path))
    assert [r["dim"] for r in res["rows"]] == [8, 16]
    assert json.loads((tmp_path / "mtl_heads.json").read_text())["rows"][0]["bmm_s"] > 0
    assert json.loads((tmp_path / "config.json").read_text())["dims"] == [8, 16]
    assert "one bmm" in capsys.readouterr().out
    with pytest.raises(ValueError, match="multiple of 5"):
        MtlHeadsConfig(per_task=7)


def test_heads_runs_at_toy_size(tmp_path) -> None:
    pytest.importorskip("sklearn")
    from metabridge.benchmarks.heads import HeadsConfig, run

    threads = torch.get_num_threads()
    res = run(HeadsConfig(threads=1, repeats=1, tasks=2, dims=[8], out=tmp_path))
    assert torch.get_num_threads() == threads  # the run's thread count does not outlive it
    assert set(res["seconds_per_meta_batch"]) == {"D=8"}
    assert res["machine"]["torch_threads"] == 1 and (tmp_path / "heads.json").exists()


def test_torch_compile_refuses_bad_settings_before_anything_runs(tmp_path) -> None:
    from metabridge.benchmarks.torch_compile import TorchCompileConfig

    with pytest.raises(ValueError, match="repeats"):
        TorchCompileConfig(repeats=0, out=tmp_path / "never")
    assert not (tmp_path / "never").exists()


def _no_learn2learn(lib: str) -> str | None:
    """``_peer_impls.available`` as in a venv without learn2learn (higher and TorchOpt too)."""
    return f"{lib} is not importable (ModuleNotFoundError); build the peer venv with scripts/install_peers.sh"


def test_peers_skips_an_absent_peer_and_refuses_it_when_named(tmp_path, capsys, monkeypatch) -> None:
    from metabridge.benchmarks import peers
    from metabridge.benchmarks.peers import PeersConfig, run

    monkeypatch.setattr(peers, "available", _no_learn2learn)
    assert peers.resolve_libs(["metabridge", "metabridge:t1"]) == (["metabridge", "metabridge:t1"], [])
    with pytest.raises(ValueError, match="unknown library"):
        peers.resolve_libs(["metabridge", "tensorflow"])
    libs, skipped = peers.resolve_libs(["auto", "metabridge:closed-bn"])
    assert libs == ["metabridge", "metabridge:closed-bn"] and len(skipped) == 3
    with pytest.raises(ValueError, match="only metabridge variants"):
        peers.resolve_libs(["auto", "higher"])
    with pytest.raises(ValueError, match="learn2learn is not importable.*install_peers.sh"):
        run(PeersConfig(libs=["metabridge", "learn2learn"], peer_site="none", out=tmp_path / "never"))
    assert not (tmp_path / "never").exists()
    threads = torch.get_num_threads()
    res = run(
        PeersConfig(
            methods=["anil"],
            shots=[1],
            meta_batch=2,
            repeats=1,
            warmup=0,
            inner_steps=1,
            queries=1,
            memory=False,
            flops=False,
            allocator=False,
            peer_site="none",
            out=tmp_path,
        )
    )
    assert torch.get_num_threads() == threads
    out = capsys.readouterr().out
    assert "skipped: learn2learn is not importable" in out and "install_peers.sh" in out
    assert res["protocol"]["libs"] == ["metabridge"] and len(res["protocol"]["skipped"]) == 3
    assert json.loads((tmp_path / "peers_cpu.json").read_text())["rows"][0]["median_s"]["metabridge"] > 0


def test_peak_memory_of_one_meta_iteration_is_measured_in_a_fresh_process() -> None:
    from metabridge.benchmarks._peer_impls import measure_peak_memory

    res = measure_peak_memory("metabridge", "fomaml", 1, 1, 1, "cpu", timeout=120)
    if Path("/proc/self/clear_refs").exists():
        assert res["peak_mib"] > 0 and "fresh process" in res["how"], res
    broken = measure_peak_memory("metabridge", "reptile", 1, 1, 1, "cpu", timeout=120)
    assert "unknown method 'reptile'" in broken["error"]


def test_sampling_runs_at_toy_size_and_skips_learn2learn(tmp_path, capsys, monkeypatch) -> None:
    from metabridge.benchmarks import sampling
    from metabridge.benchmarks.sampling import SamplingConfig, run

    monkeypatch.setattr(sampling, "available", _no_learn2learn)
    monkeypatch.setattr(sampling, "DATASETS", {"tiny": (8, 20, 8, 1)})
    with pytest.raises(ValueError, match="learn2learn is not importable"):
        run(SamplingConfig(libs=["learn2learn"], peer_site="none", out=tmp_path / "never"))
    with pytest.raises(ValueError, match="libs"):
        SamplingConfig(libs=["torchmeta"])
    res = run(SamplingConfig(batch_sizes=[1, 2], seconds=0.05, peer_site="none", out=tmp_path / "s"))
    assert "skipped: learn2learn is not importable" in capsys.readouterr().out
    assert [(r["library"], r["episodes_per_call"]) for r in res["rows"]] == [("metabridge", 1), ("metabridge", 2)]
    assert all(r["episodes_per_s"] > 0 for r in res["rows"]) and not (tmp_path / "never").exists()
    assert (tmp_path / "s" / "sampling_cpu.json").exists() and (tmp_path / "s" / "config.json").exists()


def test_rl_sampler_runs_at_toy_size(tmp_path, capsys) -> None:
    from metabridge.benchmarks.rl_sampler import RlSamplerConfig, run

    threads = torch.get_num_threads()
    res = run(RlSamplerConfig(env="navigation-2d", tasks=2, rollouts=2, horizon=5, hidden=[8], repeats=1, out=tmp_path))
    assert torch.get_num_threads() == threads and res["threads"] == 1
    assert res["env_steps"] == 2 * 2 * 5 and res["raw_steps_per_s"] > 0
    assert json.loads((tmp_path / "navigation_2d.json").read_text())["hidden"] == [8]
    assert (tmp_path / "navigation_2d.png").exists() and "overhead" in capsys.readouterr().out
    with pytest.raises(ValueError, match="did you mean 'navigation-2d'"):
        run(RlSamplerConfig(env="navigation", out=tmp_path / "never"))
    assert not (tmp_path / "never").exists()
