"""Multi-task benchmark loaders (Multi-Fashion-MNIST, QM9) and their registry, on fixtures made
here only: tiny IDX files served from 127.0.0.1, and a qm9pack-format CSV holding five real QM9
rows (molecules 1-5: CH4, NH3, H2O, C2H2, HCN) copied as literals."""

from __future__ import annotations

import gzip
import hashlib
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from metabridge.data.download import ChecksumError
from metabridge.data.spec import DatasetFormatError
from metabridge.multitask import MultiTaskBenchmark, MultiTaskData, TaskSpec
from metabridge.multitask.data import (
    available_mtl_benchmarks,
    load_mtl_benchmark,
    qm9,
    register_mtl_benchmark,
    unregister_mtl_benchmark,
)
from metabridge.multitask.data import multi_fashion_mnist as mfm

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "support"))
from fewshot_server import FileServer  # noqa: E402

# --------------------------------------------------------------------------- Fashion-MNIST fixtures


def idx_bytes(arr: np.ndarray) -> bytes:
    header = bytes([0, 0, 8, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    return header + arr.astype(np.uint8).tobytes()


def fixture_arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "train_images": rng.integers(0, 256, (20, 28, 28), dtype=np.uint8),
        "train_labels": (np.arange(20) % 10).astype(np.uint8),
        "test_images": rng.integers(0, 256, (6, 28, 28), dtype=np.uint8),
        "test_labels": np.array([3, 1, 4, 1, 5, 9], dtype=np.uint8),
    }


def fixture_files() -> tuple[dict[str, bytes], dict[str, tuple[str, int]]]:
    """``{filename: gz bytes}`` and the decompressed ``{filename: (sha256, size)}``."""
    files, sums = {}, {}
    for role, arr in fixture_arrays().items():
        raw = idx_bytes(arr)
        name = mfm.FASHION_MNIST_FILES[role]
        files[name] = gzip.compress(raw)
        sums[name] = (hashlib.sha256(raw).hexdigest(), len(raw))
    return files, sums


def reference_canvas(left: np.ndarray, right: np.ndarray, lo: tuple[int, int], ro: tuple[int, int]) -> np.ndarray:
    canvas = np.zeros((36, 36), dtype=np.uint8)
    canvas[lo[0] : lo[0] + 28, lo[1] : lo[1] + 28] = left
    block = canvas[ro[0] : ro[0] + 28, ro[1] : ro[1] + 28]
    canvas[ro[0] : ro[0] + 28, ro[1] : ro[1] + 28] = np.maximum(block, right)
    return canvas


@pytest.fixture
def fashion_server():
    files, _ = fixture_files()
    s = FileServer(files=dict(files)).start()
    yield s
    s.stop()


def test_multi_fashion_download_build_and_cache(fashion_server, tmp_path):
    _, sums = fixture_files()
    kw = dict(root=tmp_path, source_dir=None, base_url=fashion_server.url(""), checksums=sums, val_size=5, seed=3)
    bench = load_mtl_benchmark("multi_fashion_mnist", download=True, **kw)
    assert sorted(p for p, _ in fashion_server.requests) == sorted(mfm.FASHION_MNIST_FILES.values())
    assert bench.input_kind == "image" and [t.name for t in bench.tasks] == ["left", "right"]
    assert all(t.kind == "classification" and t.out_dim == 10 for t in bench.tasks)
    assert (len(bench.train), len(bench.val), len(bench.test)) == (15, 5, 6)
    assert bench.train.inputs.shape == (15, 1, 36, 36) and bench.train.inputs.dtype == torch.uint8
    arr = fixture_arrays()
    for split, images, labels in (
        ("train", arr["train_images"], arr["train_labels"]),
        ("val", arr["train_images"], arr["train_labels"]),
        ("test", arr["test_images"], arr["test_labels"]),
    ):
        data, prov = getattr(bench, split), bench.info["provenance"][split].numpy()
        for i, (a, b, ly, lx, ry, rx) in enumerate(prov):
            assert 0 <= ly <= 4 and 0 <= lx <= 4 and 4 <= ry <= 8 and 4 <= rx <= 8
            expected = reference_canvas(images[a], images[b], (ly, lx), (ry, rx))
            assert np.array_equal(data.inputs[i, 0].numpy(), expected), (split, i)
            assert data.targets[i].tolist() == [labels[a], labels[b]]
    # every item is left once and right once within its split; train and val share no item
    pt, pv = bench.info["provenance"]["train"], bench.info["provenance"]["val"]
    for prov in (pt, pv):
        assert sorted(prov[:, 0].tolist()) == sorted(prov[:, 1].tolist())
    assert not set(pt[:, 0].tolist()) & set(pv[:, 0].tolist())
    assert sorted(pt[:, 0].tolist() + pv[:, 0].tolist()) == list(range(20))
    # second load: from the cache, no new request, same tensors
    n = len(fashion_server.requests)
    again = load_mtl_benchmark("multi_fashion_mnist", **kw)
    assert len(fashion_server.requests) == n
    assert torch.equal(again.train.inputs, bench.train.inputs) and torch.equal(again.test.targets, bench.test.targets)
    assert Path(bench.info["cache"]).exists() and not list(Path(bench.info["cache"]).parent.glob(".*.tmp"))


def test_multi_fashion_deterministic_by_seed(tmp_path):
    files, sums = fixture_files()
    src = tmp_path / "src"
    src.mkdir()
    for name, data in files.items():
        (src / name).write_bytes(data)
    kw = dict(source_dir=src, checksums=sums, val_size=5)
    a = mfm.load_multi_fashion_mnist(tmp_path / "a", seed=7, **kw)
    b = mfm.load_multi_fashion_mnist(tmp_path / "b", seed=7, **kw)
    c = mfm.load_multi_fashion_mnist(tmp_path / "a", seed=8, **kw)
    for split in ("train", "val", "test"):
        assert torch.equal(getattr(a, split).inputs, getattr(b, split).inputs)
        assert torch.equal(a.info["provenance"][split], b.info["provenance"][split])
    assert not torch.equal(a.info["provenance"]["train"], c.info["provenance"]["train"])
    assert a.info["cache"] != c.info["cache"]
    sener = mfm.load_multi_fashion_mnist(tmp_path / "a", seed=7, layout="sener", **kw)
    assert (sener.info["provenance"]["test"][:, 2:] == torch.tensor([0, 0, 6, 6])).all()


def test_compose_pairs_pixel_exact():
    left = np.full((28, 28), 100, np.uint8)
    left[0, 0], left[10, 10] = 255, 250
    right = np.full((28, 28), 150, np.uint8)
    right[27, 27] = 7
    out = mfm.compose_pairs(
        torch.from_numpy(left)[None], torch.from_numpy(right)[None], torch.tensor([[1, 2]]), torch.tensor([[6, 8]])
    )[0, 0].numpy()
    assert out.shape == (36, 36)
    assert out[1, 2] == 255 and out[2, 3] == 100  # left's corner and a left-only pixel
    assert out[11, 12] == 250 and out[6, 8] == 150 and out[28, 29] == 150  # overlap: max of the two
    assert out[33, 35] == 7 and out[30, 30] == 150  # right's corner and a right-only pixel
    assert (out[0] == 0).all() and (out[:, :2] == 0).all() and (out[34:] == 0).all()
    assert np.array_equal(out, reference_canvas(left, right, (1, 2), (6, 8)))
    with pytest.raises(ValueError, match="right_offsets"):
        mfm.compose_pairs(
            torch.from_numpy(left)[None], torch.from_numpy(right)[None], torch.tensor([[0, 0]]), torch.tensor([[9, 0]])
        )


def test_sample_pairs_rule():
    g = torch.Generator().manual_seed(0)
    prov = mfm.sample_pairs(torch.arange(500), g, max_shift=4)
    assert prov[:, 2:4].min() == 0 and prov[:, 2:4].max() == 4
    assert prov[:, 4:6].min() == 4 and prov[:, 4:6].max() == 8
    assert torch.equal(prov[:, 0], torch.arange(500)) and torch.equal(prov[:, 1].sort().values, torch.arange(500))
    two = mfm.sample_pairs(torch.arange(50), torch.Generator().manual_seed(0), max_shift=2)
    assert two[:, 2:4].max() <= 2 and two[:, 4:6].min() >= 6
    with pytest.raises(ValueError, match="max_shift"):
        mfm.sample_pairs(torch.arange(5), g, max_shift=9)


def test_multi_fashion_missing_and_corrupt_files(fashion_server, tmp_path):
    files, sums = fixture_files()
    with pytest.raises(FileNotFoundError, match=r"apt-get install dataset-fashion-mnist.*download=True"):
        mfm.load_multi_fashion_mnist(tmp_path / "none", source_dir=tmp_path / "nowhere", checksums=sums)
    # a corrupt (not gzip) labels file served in place of the real one
    fashion_server.files["train-labels-idx1-ubyte.gz"] = b"\x1f\x8b\x08\x00garbage" + bytes(40)
    with pytest.raises(DatasetFormatError, match="not a valid gzip"):
        mfm.load_multi_fashion_mnist(
            tmp_path / "dl", source_dir=None, download=True, base_url=fashion_server.url(""), checksums=sums, val_size=5
        )
    # a valid gzip whose IDX magic is wrong, and a valid file that is not the expected one
    bad = tmp_path / "bad"
    bad.mkdir()
    for name, data in files.items():
        (bad / name).write_bytes(data)
    raw = bytearray(gzip.decompress(files["t10k-images-idx3-ubyte.gz"]))
    raw[2] = 0x0D  # float32, not uint8
    (bad / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(bytes(raw)))
    own = dict(sums, **{"t10k-images-idx3-ubyte.gz": (hashlib.sha256(bytes(raw)).hexdigest(), len(raw))})
    with pytest.raises(DatasetFormatError, match="magic number"):
        mfm.load_multi_fashion_mnist(tmp_path / "c1", source_dir=bad, checksums=own, val_size=5)
    (bad / "t10k-images-idx3-ubyte.gz").write_bytes(files["train-images-idx3-ubyte.gz"])  # parses, wrong content
    with pytest.raises(ChecksumError, match="sha256"):
        mfm.load_multi_fashion_mnist(tmp_path / "c2", source_dir=bad, checksums=sums, val_size=5)
    with pytest.raises(DatasetFormatError, match="need"):
        mfm.parse_idx(idx_bytes(np.zeros((2, 28, 28), np.uint8))[:-1], "x.idx", ndim=3)
    assert mfm.FASHION_MNIST_SHA256["train-images-idx3-ubyte.gz"][1] == 47_040_016  # real constants stay


# --------------------------------------------------------------------------- QM9 fixtures

QM9_HEADER = (
    "XYZ_file,Index,SMILES,InChi,N_atoms,Stoichiometry,Elements,XYZ_Ang,Mulliken_pop,Harmonic_Freq_cmi,"
    "RotA_GHz,RotB_GHz,RotC_GHz,Dipole_debye,Polarizability_bohr3,HOMO_au,LUMO_au,HOMO_LUMO_gap_au,R2_bohr2,"
    "ZPVE_au,InternalEnergy_0K_au,InternalEnergy_298K_au,Enthalphy_298K_au,GibbsFreeEnergy_298K_au,"
    "Heatcapacity_Cv_cal_mol_K"
)
QM9_ROWS = {  # molecules 1-5 of qm9pack's qm9_part1.csv, verbatim
    1: '"dsgdb9nsd_000001.xyz",1,"C","InChI=1S/CH4/h1H4",5,"[4,1,0,0,0]","[\'C\',\'H\',\'H\',\'H\',\'H\']","[[-0.0126981359,1.0858041578,0.0080009958],[0.002150416,-0.0060313176,0.0019761204],[1.0117308433,1.4637511618,0.0002765748],[-0.540815069,1.4475266138,-0.8766437152],[-0.5238136345,1.4379326443,0.9063972942]]","[-0.535689,0.133921,0.133922,0.133923,0.133923]","[1341.307,1341.3284,1341.365,1562.6731,1562.7453,3038.3205,3151.6034,3151.6788,3151.7078]",157.7118,157.70997,157.70699,0.,13.21,-0.3877,0.1171,0.5048,35.3641,0.044749,-40.47893,-40.476062,-40.475117,-40.498597,6.469',  # noqa: E501
    2: '"dsgdb9nsd_000002.xyz",2,"N","InChI=1S/H3N/h1H3",4,"[3,0,1,0,0]","[\'N\',\'H\',\'H\',\'H\']","[[-0.0404260543,1.0241077531,0.0625637998],[0.0172574639,0.0125452063,-0.0273771593],[0.9157893661,1.3587451948,-0.0287577581],[-0.5202777357,1.3435321258,-0.7755426124]]","[-0.707143,0.235712,0.235712,0.23572]","[1103.8733,1684.1158,1684.3072,3458.7145,3575.2414,3575.3343]",293.60975,293.54111,191.39397,1.6256,9.46,-0.257,0.0829,0.3399,26.1563,0.034358,-56.525887,-56.523026,-56.522082,-56.544961,6.316',  # noqa: E501
    3: '"dsgdb9nsd_000003.xyz",3,"O","InChI=1S/H2O/h1H2",3,"[2,0,0,1,0]","[\'O\',\'H\',\'H\']","[[-0.0343604951,0.9775395708,0.0076015923],[0.0647664923,0.0205721989,0.0015346341],[0.8717903737,1.3007924048,0.0006931336]]","[-0.589706,0.294853,0.294853]","[1671.4222,3803.6305,3907.698]",799.58812,437.90386,282.94545,1.8511,6.31,-0.2928,0.0687,0.3615,19.0002,0.021375,-76.404702,-76.401867,-76.400922,-76.422349,6.002',  # noqa: E501
    4: '"dsgdb9nsd_000004.xyz",4,"C#C","InChI=1S/C2H2/c1-2/h1-2H",4,"[2,2,0,0,0]","[\'C\',\'C\',\'H\',\'H\']","[[0.5995394918,0.,1.],[-0.5995394918,0.,1.],[-1.6616385861,0.,1.],[1.6616385861,0.,1.]]","[-0.207019,-0.207019,0.207019,0.207019]","[549.7648,549.7648,795.2713,795.2713,2078.1131,3455.8096,3557.8599]",0.,35.6100361,35.6100361,0.,16.28,-0.2845,0.0506,0.3351,59.5248,0.026841,-77.308427,-77.305527,-77.304583,-77.327429,8.574',  # noqa: E501
    5: '"dsgdb9nsd_000005.xyz",5,"C#N","InChI=1S/CHN/c1-2/h1H",3,"[1,1,1,0,0]","[\'C\',\'N\',\'H\']","[[-0.0133239314,1.1324657151,0.0082758861],[0.0023107217,-0.0191585871,0.0019287305],[-0.0278026991,2.1989492963,0.0141537903]]","[-0.049656,-0.188473,0.238128]","[799.0101,799.0101,2198.4393,3490.3686]",0.,44.593883,44.593883,2.8937,12.99,-0.3604,0.0191,0.3796,48.7476,0.016601,-93.411888,-93.40937,-93.408425,-93.431246,6.278',  # noqa: E501
}
H2O_XYZ = np.array(
    [
        [-0.0343604951, 0.9775395708, 0.0076015923],
        [0.0647664923, 0.0205721989, 0.0015346341],
        [0.8717903737, 1.3007924048, 0.0006931336],
    ]
)
HA = 27.211386246


def write_qm9(folder: Path, header: str = QM9_HEADER) -> Path:
    """Two part files, the later indices first, so reading must order the molecules by Index."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "qm9_part1.csv").write_text("\n".join([header, QM9_ROWS[4], QM9_ROWS[5]]) + "\n")
    (folder / "qm9_part2.csv").write_text("\n".join([header, QM9_ROWS[1], QM9_ROWS[2], QM9_ROWS[3]]) + "\n")
    (folder / "qm9_polarizability.csv").write_text("XYZ_file,A_xx\n")  # not a part file: ignored
    return folder


def test_qm9_units_and_atomization_energies(tmp_path):
    mols = qm9.read_qm9_csv(write_qm9(tmp_path / "csv"))
    assert mols.index.tolist() == [1, 2, 3, 4, 5]
    t = mols.targets
    assert [name for name, *_ in qm9.QM9_TARGETS] == [
        "mu",
        "alpha",
        "homo",
        "lumo",
        "r2",
        "zpve",
        "U0",
        "U",
        "H",
        "G",
        "cv",
    ]
    # CH4 (molecule 1), by hand: C + 4 H reference energies
    ch4 = {
        "mu": 0.0,
        "alpha": 13.21,
        "homo": -0.3877 * HA,
        "lumo": 0.1171 * HA,
        "r2": 35.3641,
        "zpve": 0.044749 * HA,
        "U0": (-40.47893 - (-37.846772 + 4 * -0.500273)) * HA,
        "U": (-40.476062 - (-37.845355 + 4 * -0.498857)) * HA,
        "H": (-40.475117 - (-37.844411 + 4 * -0.497912)) * HA,
        "G": (-40.498597 - (-37.861317 + 4 * -0.510927)) * HA,
        "cv": 6.469,
    }
    for k, (name, *_) in enumerate(qm9.QM9_TARGETS):
        assert t[0, k].item() == pytest.approx(ch4[name], abs=1e-9), name
    # the same atomization energies as published in kcal/mol (gdb9.sdf.csv, used by PyG targets 12-15)
    for k, kcal in zip(range(6, 10), (-395.999594, -398.643006, -401.014526, -372.471772)):
        assert t[0, k].item() == pytest.approx(kcal * 0.04336414, abs=2e-4)
    # H2O (molecule 3): O + 2 H
    assert t[2, 6].item() == pytest.approx((-76.404702 - (-75.064579 + 2 * -0.500273)) * HA, abs=1e-9)
    # HCN (molecule 5): C + N + H; lumo in eV
    assert t[4, 9].item() == pytest.approx((-93.431246 - (-37.861317 - 54.598897 - 0.510927)) * HA, abs=1e-9)
    assert t[4, 3].item() == pytest.approx(0.0191 * HA)
    assert mols.z[2, :4].tolist() == [8, 1, 1, 0] and torch.allclose(mols.pos[2, :3], torch.from_numpy(H2O_XYZ))


def test_qm9_descriptor_against_direct_computation(tmp_path):
    mols = qm9.read_qm9_csv(write_qm9(tmp_path / "csv"))
    feats = qm9.qm9_descriptor(mols.z, mols.pos)
    assert feats.shape == (5, qm9.DESCRIPTOR_DIM) == (5, 334) and feats.dtype == torch.float32
    # Coulomb matrix of H2O in bohr, by loops
    z = [8.0, 1.0, 1.0]
    r = H2O_XYZ / 0.529177210903
    m = np.array(
        [
            [0.5 * z[i] ** 2.4 if i == j else z[i] * z[j] / np.linalg.norm(r[i] - r[j]) for j in range(3)]
            for i in range(3)
        ]
    )
    ev = np.linalg.eigvalsh(m)
    ev = ev[np.argsort(-np.abs(ev))]
    expected = np.concatenate([ev, np.zeros(26)])
    np.testing.assert_allclose(feats[2, :29].numpy(), expected, rtol=1e-5, atol=1e-5)
    assert feats[2, 29:34].tolist() == [2, 0, 0, 1, 0]  # H, C, N, O, F
    # distance histograms: HH has one pair, HO two, OO none
    hist = feats[2, 34:].view(15, 20).double()
    centres = np.linspace(0.5, 5.0, 20)
    sigma = centres[1] - centres[0]

    def gauss(d: float) -> np.ndarray:
        return np.exp(-((d - centres) ** 2) / (2 * sigma**2))

    d_oh = [np.linalg.norm(H2O_XYZ[0] - H2O_XYZ[k]) for k in (1, 2)]
    d_hh = np.linalg.norm(H2O_XYZ[1] - H2O_XYZ[2])
    pairs = [f"{a}{b}" for a, b in qm9.PAIRS]
    np.testing.assert_allclose(hist[pairs.index("HH")].numpy(), gauss(d_hh), atol=1e-6)
    np.testing.assert_allclose(hist[pairs.index("HO")].numpy(), gauss(d_oh[0]) + gauss(d_oh[1]), atol=1e-6)
    assert hist[pairs.index("OO")].abs().sum() == 0 and hist[pairs.index("CC")].abs().sum() == 0
    # padding the same molecule further changes nothing
    zp = torch.zeros(1, 29, dtype=torch.long)
    zp[0, :3] = torch.tensor([8, 1, 1])
    pp = torch.zeros(1, 29, 3, dtype=torch.float64)
    pp[0, :3] = torch.from_numpy(H2O_XYZ)
    torch.testing.assert_close(qm9.coulomb_eigenvalues(zp, pp).float(), feats[2:3, :29])


def test_qm9_split_rule():
    train, val, test = qm9.qm9_split(10, seed=42, test_size=2, val_size=3)
    perm = torch.randperm(10, generator=torch.Generator().manual_seed(42))
    assert torch.equal(test, perm[:2]) and torch.equal(val, perm[2:5]) and torch.equal(train, perm[5:])
    assert sorted(torch.cat([train, val, test]).tolist()) == list(range(10))
    again = qm9.qm9_split(10, seed=42, test_size=2, val_size=3)
    assert all(torch.equal(a, b) for a, b in zip(again, (train, val, test)))
    assert not torch.equal(qm9.qm9_split(10, seed=1, test_size=2, val_size=3)[2], test)
    with pytest.raises(ValueError, match="leave at least"):
        qm9.qm9_split(5, test_size=3, val_size=2)
    big = qm9.qm9_split(130_831)
    assert [len(s) for s in big] == [110_831, 10_000, 10_000]


def test_load_qm9_benchmark_and_cache(tmp_path, monkeypatch):
    csv_dir = write_qm9(tmp_path / "csv")
    bench = load_mtl_benchmark("qm9", root=tmp_path / "cache", csv_dir=csv_dir, test_size=1, val_size=1)
    assert bench.input_kind == "vector" and (len(bench.train), len(bench.val), len(bench.test)) == (3, 1, 1)
    assert bench.train.inputs.shape == (3, 334) and bench.train.targets.shape == (3, 11)
    assert [t.unit for t in bench.tasks][:3] == ["D", "a0^3", "eV"] and bench.tasks[-1].unit == "cal/(mol K)"
    assert all(t.kind == "regression" for t in bench.tasks)
    # TaskSpec statistics and feature standardisation come from the train split
    y = bench.train.targets.double()
    for k, spec in enumerate(bench.tasks):
        assert spec.target_mean == pytest.approx(y[:, k].mean().item(), rel=1e-6)
        assert spec.target_std == pytest.approx(y[:, k].std().item(), rel=1e-5)
    assert bench.train.inputs.mean(0).abs().max() < 1e-5
    assert bench.info["feature_dim"] == 334 and bench.info["index"]["test"].numel() == 1
    all_index = torch.cat([bench.info["index"][s] for s in ("train", "val", "test")])
    assert sorted(all_index.tolist()) == [1, 2, 3, 4, 5]
    # the second load reads the cache only
    monkeypatch.setattr(qm9, "read_qm9_csv", lambda *a, **k: pytest.fail("the cache was not used"))
    again = qm9.load_qm9(tmp_path / "cache", csv_dir, test_size=1, val_size=1)
    assert torch.equal(again.train.inputs, bench.train.inputs)


def test_qm9_clear_errors(tmp_path, monkeypatch):
    bad_header = QM9_HEADER.replace("HOMO_au", "HOMO")
    with pytest.raises(DatasetFormatError, match="HOMO_au"):
        qm9.read_qm9_csv(write_qm9(tmp_path / "cols", header=bad_header))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        qm9.load_qm9(tmp_path / "c", tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"pip install 'metabridge\[qm9\]'"):
        qm9.load_qm9(tmp_path / "c", tmp_path / "empty")
    wrong = write_qm9(tmp_path / "natoms")
    text = (
        (wrong / "qm9_part1.csv")
        .read_text()
        .replace('"C#N","InChI=1S/CHN/c1-2/h1H",3,', '"C#N","InChI=1S/CHN/c1-2/h1H",4,')
    )
    (wrong / "qm9_part1.csv").write_text(text)
    with pytest.raises(DatasetFormatError, match="Index 5 has N_atoms 4"):
        qm9.read_qm9_csv(wrong)
    # the default source: an installed qm9pack's data folder, found without importing qm9pack
    fake = tmp_path / "site"
    (fake / "qm9pack").mkdir(parents=True)
    (fake / "qm9pack" / "__init__.py").write_text("raise ImportError('qm9pack must not be imported')\n")
    monkeypatch.syspath_prepend(str(fake))
    with pytest.raises(FileNotFoundError, match=r"pip install 'metabridge\[qm9\]'"):
        qm9.load_qm9(tmp_path / "c")
    write_qm9(fake / "qm9pack" / "data")
    assert qm9.qm9pack_data_dir() == fake / "qm9pack" / "data"
    assert len(qm9.load_qm9(tmp_path / "c", test_size=1, val_size=1).train) == 3


# --------------------------------------------------------------------------- registry


def test_mtl_registry():
    assert {"multi_fashion_mnist", "qm9"} <= set(available_mtl_benchmarks())
    spec = TaskSpec("t", "regression", 1)

    def split(n: int) -> MultiTaskData:
        return MultiTaskData(torch.zeros(n, 2), torch.zeros(n, 1), [spec])

    @register_mtl_benchmark("Data_Test_Toy")  # a name no other test module uses
    def load_toy(root=None, n=3):
        return MultiTaskBenchmark("data_test_toy", split(n), split(1), split(1))

    try:
        assert "data_test_toy" in available_mtl_benchmarks()
        assert len(load_mtl_benchmark("data_test_toy", n=4).train) == 4
        register_mtl_benchmark("data_test_broken", lambda root=None: 42)
        with pytest.raises(TypeError, match="not a MultiTaskBenchmark"):
            load_mtl_benchmark("data_test_broken")
    finally:
        unregister_mtl_benchmark("data_test_toy")
        unregister_mtl_benchmark("data_test_broken")
    assert "data_test_toy" not in available_mtl_benchmarks()
    with pytest.raises(ValueError, match="unknown multi-task benchmark"):
        load_mtl_benchmark("nope")
    with pytest.raises(ValueError, match="built-in"):
        unregister_mtl_benchmark("qm9")
