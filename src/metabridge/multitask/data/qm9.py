"""QM9 with the 11 regression targets of the Nash-MTL benchmark, on a fixed-size molecular descriptor.

Data: QM9 (Ramakrishnan et al., "Quantum chemistry structures and properties of 134 kilo
molecules", Sci. Data 2014; B3LYP/6-31G(2df,p)), the 130,831 molecules that remain after the
3,054 that failed the consistency check, as shipped in the CSV files of the PyPI package
``qm9pack`` (``qm9pack/data/qm9_part{1,2,3}.csv``; install with ``pip install 'metabridge[qm9]'``).
The CSVs are read with the standard ``csv`` module (``qm9pack`` itself, which imports pandas, is
never imported) and the molecules are ordered by their QM9 ``Index``.

Targets, in the order of Nash-MTL (Navon et al. 2022, ``experiments/quantum_chemistry``:
PyTorch Geometric's QM9 columns ``[0, 1, 2, 3, 5, 6, 12, 13, 14, 15, 11]``):

====  ======  =======================================  ==============
 k    name    from the qm9pack column                  unit
====  ======  =======================================  ==============
 0    mu      Dipole_debye                             D
 1    alpha   Polarizability_bohr3                     a0^3
 2    homo    HOMO_au x 27.211386246                   eV
 3    lumo    LUMO_au x 27.211386246                   eV
 4    r2      R2_bohr2                                 a0^2
 5    zpve    ZPVE_au x 27.211386246                   eV
 6    U0      (InternalEnergy_0K_au - sum atomref)     eV (atomization energy)
 7    U       (InternalEnergy_298K_au - sum atomref)   eV
 8    H       (Enthalphy_298K_au - sum atomref)        eV
 9    G       (GibbsFreeEnergy_298K_au - sum atomref)  eV
 10   cv      Heatcapacity_Cv_cal_mol_K                cal/(mol K)
====  ======  =======================================  ==============

An atomization energy is the molecule's total energy minus the sum of its atoms' reference
energies (QM9's ``atomref`` table, :data:`ATOMREF_HARTREE`), converted from Hartree to eV; this is
what PyG's targets 12-15 hold (there in kcal/mol x 0.04336414). Nash-MTL reports the MAE of homo,
lumo, zpve, U0, U, H and G in meV (``info["nash_mtl_mev_tasks"]``); here every metric is in the
unit above.

Split (Nash-MTL's rule): ``perm = torch.randperm(N, generator=torch.Generator().manual_seed(seed))``
(``seed=42`` by default), test = the molecules ``perm[:10000]``, val = ``perm[10000:20000]``, train
= ``perm[20000:]`` (110,831). Nash-MTL draws its permutation with PyG's ``dataset.shuffle()`` from
the global RNG seeded 42 *after* initialising its model, so the rule and sizes are the same but
the molecules in each split are not the very same ones.

Descriptor (``DESCRIPTOR_DIM = 334`` float32 values per molecule, computed in batches in torch,
molecules padded to 29 atoms):

* ``[0:29]`` sorted Coulomb-matrix eigenvalues (Rupp et al., PRL 108, 058301, 2012): with
  positions in bohr, ``M_ii = 0.5 Z_i^2.4``, ``M_ij = Z_i Z_j / |R_i - R_j|``; the eigenvalues of
  the zero-padded 29x29 matrix sorted by decreasing absolute value (padding gives trailing zeros);
* ``[29:34]`` element counts (H, C, N, O, F);
* ``[34:334]`` for each of the 15 unordered element pairs (HH, HC, HN, HO, HF, CC, CN, CO, CF, NN,
  NO, NF, OO, OF, FF, in that order), a Gaussian-smeared histogram of the interatomic distances
  (each unordered atom pair once): 20 centres ``linspace(0.5, 5.0, 20)`` Angstrom, width sigma =
  the centre spacing (0.2368 A), contribution ``exp(-(d - mu)^2 / (2 sigma^2))``.

The raw descriptor and targets are computed once and cached (float32, atomic write) in
``ROOT/qm9/``; at load time features are standardised with the *train* split's mean and std
(constant features keep std 1; ``info["feature_mean"]``/``info["feature_std"]``) and each task's
``TaskSpec`` gets the train split's target mean and std.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from metabridge.atomic import atomic_open
from metabridge.data.cache import load_versioned
from metabridge.data.spec import DatasetFormatError

from ..tasks import MultiTaskBenchmark, MultiTaskData, TaskSpec
from . import mtl_cache_root
from ._qm9_csv import csv_files, read_csv_file, strip_list

__all__ = [
    "ATOMREF_HARTREE",
    "DESCRIPTOR_DIM",
    "ELEMENTS",
    "HARTREE_TO_EV",
    "MAX_ATOMS",
    "QM9_TARGETS",
    "QM9Molecules",
    "coulomb_eigenvalues",
    "distance_histograms",
    "element_counts",
    "load_qm9",
    "qm9_descriptor",
    "qm9_split",
    "qm9pack_data_dir",
    "read_qm9_csv",
]

HARTREE_TO_EV = 27.211386246
BOHR_PER_ANGSTROM = 1.0 / 0.529177210903
ELEMENTS = ("H", "C", "N", "O", "F")
ATOMIC_NUMBER = {"H": 1, "C": 6, "N": 7, "O": 8, "F": 9}
MAX_ATOMS = 29
HIST_BINS = 20
HIST_RANGE = (0.5, 5.0)
PAIRS = tuple((a, b) for i, a in enumerate(ELEMENTS) for b in ELEMENTS[i:])
DESCRIPTOR_DIM = MAX_ATOMS + len(ELEMENTS) + len(PAIRS) * HIST_BINS
CACHE_VERSION = 1

# QM9 atomref (Hartree): reference energies of the free atoms for U0, U (298.15 K), H and G.
ATOMREF_HARTREE: dict[str, dict[str, float]] = {
    "U0": {"H": -0.500273, "C": -37.846772, "N": -54.583861, "O": -75.064579, "F": -99.718730},
    "U": {"H": -0.498857, "C": -37.845355, "N": -54.582445, "O": -75.063162, "F": -99.717314},
    "H": {"H": -0.497912, "C": -37.844411, "N": -54.581501, "O": -75.062219, "F": -99.716370},
    "G": {"H": -0.510927, "C": -37.861317, "N": -54.598897, "O": -75.079532, "F": -99.733544},
}

# (name, qm9pack column, unit, conversion: factor or atomref key)
QM9_TARGETS: tuple[tuple[str, str, str, float | str], ...] = (
    ("mu", "Dipole_debye", "D", 1.0),
    ("alpha", "Polarizability_bohr3", "a0^3", 1.0),
    ("homo", "HOMO_au", "eV", HARTREE_TO_EV),
    ("lumo", "LUMO_au", "eV", HARTREE_TO_EV),
    ("r2", "R2_bohr2", "a0^2", 1.0),
    ("zpve", "ZPVE_au", "eV", HARTREE_TO_EV),
    ("U0", "InternalEnergy_0K_au", "eV", "U0"),
    ("U", "InternalEnergy_298K_au", "eV", "U"),
    ("H", "Enthalphy_298K_au", "eV", "H"),
    ("G", "GibbsFreeEnergy_298K_au", "eV", "G"),
    ("cv", "Heatcapacity_Cv_cal_mol_K", "cal/(mol K)", 1.0),
)
STRUCTURE_COLUMNS = ("Index", "N_atoms", "Elements", "XYZ_Ang")
REQUIRED_COLUMNS = STRUCTURE_COLUMNS + tuple(t[1] for t in QM9_TARGETS)
NASH_MTL_MEV_TASKS = ("homo", "lumo", "zpve", "U0", "U", "H", "G")


# --------------------------------------------------------------------------- reading


def qm9pack_data_dir() -> Path:
    """The ``data`` folder of the installed ``qm9pack`` (found without importing it)."""
    spec = importlib.util.find_spec("qm9pack")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for loc in locations:
        data = Path(loc) / "data"
        if any(data.glob("qm9_part*.csv")):
            return data
    where = f" (qm9pack found at {locations[0]}, but without data/qm9_part*.csv)" if locations else ""
    raise FileNotFoundError(
        f"QM9 not found{where}: install its CSV files with `pip install 'metabridge[qm9]'` (the PyPI package "
        f"qm9pack), or pass csv_dir= a folder holding qm9_part1.csv, qm9_part2.csv, qm9_part3.csv."
    )


@dataclass
class QM9Molecules:
    """Parsed molecules, ordered by QM9 index: atomic numbers ``z`` int64 ``[N, 29]`` (0 = padding),
    positions ``pos`` float64 ``[N, 29, 3]`` in Angstrom, ``targets`` float64 ``[N, 11]`` in the units
    of :data:`QM9_TARGETS`, ``index`` int64 ``[N]`` (QM9's molecule number)."""

    index: Tensor
    z: Tensor
    pos: Tensor
    targets: Tensor

    def __len__(self) -> int:
        return int(self.index.shape[0])


def read_qm9_csv(csv_dir: str | os.PathLike[str]) -> QM9Molecules:
    """Parse every ``qm9_part*.csv`` of ``csv_dir`` into :class:`QM9Molecules` (targets converted).

    Raises :class:`DatasetFormatError` for missing columns, malformed numbers, a molecule whose
    element list or coordinates disagree with ``N_atoms``, an unknown element, more than 29
    atoms, or a repeated ``Index``.
    """
    files = csv_files(Path(csv_dir))
    index: list[int] = []
    natoms: list[int] = []
    elements: list[str] = []
    xyz: list[str] = []
    values: list[list[str]] = []
    for path in files:
        i, n, e, x, v = read_csv_file(path, REQUIRED_COLUMNS)
        index += i
        natoms += n
        elements += e
        xyz += x
        values += v
    where = ", ".join(str(p) for p in files)
    if not index:
        raise DatasetFormatError(f"{where}: no molecules.")
    n_atoms = torch.tensor(natoms, dtype=torch.long)
    if int(n_atoms.min()) < 1 or int(n_atoms.max()) > MAX_ATOMS:
        raise DatasetFormatError(
            f"{where}: N_atoms must be in 1..{MAX_ATOMS} (found {int(n_atoms.min())}..{int(n_atoms.max())})."
        )
    for k, (elem, coord_text, count) in enumerate(zip(elements, xyz, natoms)):
        if elem.count(",") != count - 1 or coord_text.count(",") != 3 * count - 1:
            raise DatasetFormatError(
                f"{where}: molecule Index {index[k]} has N_atoms {count} but "
                f"{elem.count(',') + 1} elements and {coord_text.count(',') + 1} coordinates "
                f"(expected {count} and {3 * count})."
            )
    symbols = strip_list(",".join(elements)).replace(" ", "").split(",")
    unknown = sorted(set(symbols) - set(ATOMIC_NUMBER))
    if unknown:
        raise DatasetFormatError(f"{where}: unknown element(s) {unknown}; QM9 has only {', '.join(ELEMENTS)}.")
    try:
        coords = np.array(strip_list(",".join(xyz)).split(","), dtype=np.float64)
        raw = np.array(values, dtype=np.float64)
    except ValueError as e:
        raise DatasetFormatError(f"{where}: a coordinate or property is not a number ({e}).") from e
    z_flat = torch.tensor([ATOMIC_NUMBER[s] for s in symbols], dtype=torch.long)
    # pad: atom a of molecule m goes to slot a of row m
    mol = torch.repeat_interleave(torch.arange(len(index)), n_atoms)
    slot = torch.arange(mol.numel()) - (torch.cumsum(n_atoms, 0) - n_atoms)[mol]
    z = torch.zeros(len(index), MAX_ATOMS, dtype=torch.long)
    pos = torch.zeros(len(index), MAX_ATOMS, 3, dtype=torch.float64)
    z[mol, slot] = z_flat
    pos[mol, slot] = torch.from_numpy(coords).view(-1, 3)
    targets = _convert_targets(torch.from_numpy(raw), element_counts(z).double())
    idx = torch.tensor(index, dtype=torch.long)
    order = torch.argsort(idx)
    idx = idx[order]
    if idx.numel() > 1 and bool((idx[1:] == idx[:-1]).any()):
        dup = int(idx[1:][idx[1:] == idx[:-1]][0])
        raise DatasetFormatError(f"{where}: molecule Index {dup} appears more than once.")
    return QM9Molecules(index=idx, z=z[order], pos=pos[order], targets=targets[order])


def _convert_targets(raw: Tensor, counts: Tensor) -> Tensor:
    """Raw CSV values ``[N, 11]`` (float64, columns of :data:`QM9_TARGETS`) -> targets in their units."""
    out = torch.empty_like(raw)
    for k, (_, _, _, conv) in enumerate(QM9_TARGETS):
        if isinstance(conv, str):
            ref = torch.tensor([ATOMREF_HARTREE[conv][e] for e in ELEMENTS], dtype=torch.float64)
            out[:, k] = (raw[:, k] - counts @ ref) * HARTREE_TO_EV
        else:
            out[:, k] = raw[:, k] * conv
    return out


# --------------------------------------------------------------------------- descriptor


def element_counts(z: Tensor) -> Tensor:
    """``[N, 5]`` counts of H, C, N, O, F atoms from padded atomic numbers ``z`` ``[N, A]``."""
    numbers = torch.tensor([ATOMIC_NUMBER[e] for e in ELEMENTS], device=z.device)
    return (z.unsqueeze(-1) == numbers).sum(1).to(torch.float32)


def coulomb_eigenvalues(z: Tensor, pos: Tensor, *, size: int | None = None) -> Tensor:
    """``[N, size]`` Coulomb-matrix eigenvalues (positions in Angstrom, converted to bohr), sorted by
    decreasing absolute value, zero-padded to ``size`` (default ``z.shape[1]``) values.

    ``z`` ``[N, A]`` int (0 = padding atom), ``pos`` ``[N, A, 3]``. Padding atoms contribute zero rows
    and columns, whose zero eigenvalues sort last, so trimming the padding first gives the same result.
    """
    n, a = z.shape
    size = a if size is None else size
    zf = z.to(torch.float64)
    r = pos.to(torch.float64) * BOHR_PER_ANGSTROM
    d = torch.cdist(r, r)
    eye = torch.eye(a, dtype=torch.bool, device=z.device)
    m = zf.unsqueeze(2) * zf.unsqueeze(1) / torch.where(eye, torch.ones_like(d), d).clamp_min(1e-8)
    m = torch.where(eye, 0.5 * zf.pow(2.4).unsqueeze(2).expand(-1, a, a), m)
    valid = z > 0
    m = m * (valid.unsqueeze(2) & valid.unsqueeze(1))
    ev = torch.linalg.eigvalsh(m)
    ev = torch.gather(ev, 1, ev.abs().argsort(dim=1, descending=True, stable=True))
    if size >= a:
        return torch.cat([ev, ev.new_zeros(n, size - a)], dim=1)
    return ev[:, :size]


def _pair_table() -> tuple[Tensor, Tensor]:
    species = torch.full((10,), -1, dtype=torch.long)  # atomic number -> 0..4
    for i, e in enumerate(ELEMENTS):
        species[ATOMIC_NUMBER[e]] = i
    pair_of = torch.full((len(ELEMENTS), len(ELEMENTS)), len(PAIRS), dtype=torch.long)  # 15 = "no pair"
    for p, (e1, e2) in enumerate(PAIRS):
        i, j = ELEMENTS.index(e1), ELEMENTS.index(e2)
        pair_of[i, j] = pair_of[j, i] = p
    return species, pair_of


def distance_histograms(
    z: Tensor, pos: Tensor, *, bins: int = HIST_BINS, d_range: tuple[float, float] = HIST_RANGE
) -> Tensor:
    """``[N, 15 * bins]`` Gaussian-smeared interatomic-distance histograms per element pair
    (pair order :data:`PAIRS`; each unordered atom pair once; distances in Angstrom; float32).

    Entry ``(p, k)`` is ``sum over atom pairs i < j of type p of exp(-(d_ij - c_k)^2 / (2 sigma^2))``
    with centres ``c = linspace(*d_range, bins)`` and ``sigma`` their spacing.
    """
    n, a = z.shape
    centres = torch.linspace(d_range[0], d_range[1], bins, dtype=torch.float64)
    sigma = float(centres[1] - centres[0]) if bins > 1 else 1.0
    species, pair_of = _pair_table()
    iu, ju = torch.triu_indices(a, a, offset=1)
    zi, zj = z[:, iu], z[:, ju]  # [N, P]
    ptype = pair_of[species[zi].clamp_min(0), species[zj].clamp_min(0)]
    ptype = torch.where((zi > 0) & (zj > 0), ptype, torch.full_like(ptype, len(PAIRS)))
    d = (pos[:, iu].to(torch.float64) - pos[:, ju].to(torch.float64)).norm(dim=-1).to(torch.float32)  # [N, P]
    g = d.unsqueeze(-1) - centres.to(torch.float32)  # [N, P, bins], in place from here on (this is the hot loop)
    g.square_().mul_(-0.5 / sigma**2).exp_()
    onehot = torch.zeros(n, ptype.shape[1], len(PAIRS) + 1).scatter_(2, ptype.unsqueeze(-1), 1.0)[..., : len(PAIRS)]
    return torch.bmm(onehot.transpose(1, 2), g).reshape(n, len(PAIRS) * bins)


def qm9_descriptor(z: Tensor, pos: Tensor, *, chunk: int = 8192) -> Tensor:
    """The float32 ``[N, 334]`` descriptor of the module docstring.

    Molecules are processed in groups of equal atom count (padding trimmed: the eigenvalue
    problem and the pair list shrink from 29 atoms to the group's size), in chunks of ``chunk``.
    Each row of ``z`` must list its atoms first and its padding (0) after, as :func:`read_qm9_csv` does.
    """
    valid = z > 0
    if z.shape[1] > 1 and bool((valid[:, 1:] & ~valid[:, :-1]).any()):
        raise ValueError("qm9_descriptor: padding (z == 0) must come after a molecule's atoms in every row.")
    n_atoms = valid.sum(1)
    out = torch.zeros(z.shape[0], DESCRIPTOR_DIM, dtype=torch.float32)
    for k in torch.unique(n_atoms).tolist():
        rows = (n_atoms == k).nonzero().flatten()
        for s in range(0, rows.numel(), chunk):
            r = rows[s : s + chunk]
            zc, pc = z[r, :k], pos[r, :k]
            out[r] = torch.cat(
                [
                    coulomb_eigenvalues(zc, pc, size=MAX_ATOMS).to(torch.float32),
                    element_counts(zc),
                    distance_histograms(zc, pc),
                ],
                dim=1,
            )
    return out


# --------------------------------------------------------------------------- split and loading


def qm9_split(
    n: int, *, seed: int = 42, test_size: int = 10_000, val_size: int = 10_000
) -> tuple[Tensor, Tensor, Tensor]:
    """``(train, val, test)`` row indices: ``perm = randperm(n)`` from a generator seeded ``seed``;
    test = ``perm[:test_size]``, val = ``perm[test_size:test_size + val_size]``, train = the rest."""
    if test_size < 1 or val_size < 1 or test_size + val_size >= n:
        raise ValueError(
            f"qm9_split: test_size ({test_size}) and val_size ({val_size}) must be >= 1 and leave "
            f"at least one training molecule out of {n}."
        )
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(int(seed)))
    return perm[test_size + val_size :], perm[test_size : test_size + val_size], perm[:test_size]


def _fingerprint(files: list[Path]) -> list[tuple[str, int, str]]:
    """(name, size, sha256 of the first and last MiB) of each CSV: a cheap content key for the cache."""
    out = []
    for p in files:
        size = p.stat().st_size
        h = hashlib.sha256()
        with open(p, "rb") as f:
            h.update(f.read(1 << 20))
            if size > 2 << 20:
                f.seek(size - (1 << 20))
            h.update(f.read(1 << 20))
        out.append((p.name, size, h.hexdigest()))
    return out


def _read_cache(path: Path) -> dict | None:
    return load_versioned(path, CACHE_VERSION, mmap=False)


def _mean_std(x: Tensor, chunk: int = 8192) -> tuple[Tensor, Tensor]:
    """Column mean and (unbiased; 1 for a single row) standard deviation of float ``x`` ``[n, d]``:
    two passes, float32 partial sums over row chunks accumulated in float64."""
    n = x.shape[0]
    zero = torch.zeros(x.shape[1], dtype=torch.float64)
    mean = sum((x[s : s + chunk].sum(0).double() for s in range(0, n, chunk)), zero) / n
    if n < 2:
        return mean, torch.ones_like(mean)
    m32 = mean.to(x.dtype)
    var = sum(((x[s : s + chunk] - m32).square_().sum(0).double() for s in range(0, n, chunk)), zero)
    return mean, (var / (n - 1)).sqrt()


def load_qm9(
    root: str | os.PathLike[str] | None = None,
    csv_dir: str | os.PathLike[str] | None = None,
    *,
    seed: int = 42,
    test_size: int = 10_000,
    val_size: int = 10_000,
) -> MultiTaskBenchmark:
    """QM9, 11 regression tasks (Nash-MTL's), descriptor inputs ``[N, 334]``; see the module docstring.

    Args:
        root: cache folder (default ``$METABRIDGE_CACHE``, else ``~/.cache/metabridge``); the
            descriptor cache goes to ``root/qm9/``.
        csv_dir: folder of ``qm9_part*.csv`` (default: the installed ``qm9pack``'s data folder;
            ``pip install 'metabridge[qm9]'``).
        seed, test_size, val_size: the split rule (:func:`qm9_split`).
    """
    source = Path(csv_dir).expanduser() if csv_dir is not None else qm9pack_data_dir()
    files = csv_files(source)
    base = mtl_cache_root(root) / "qm9"
    key = json.dumps(
        {"v": CACHE_VERSION, "bins": HIST_BINS, "range": HIST_RANGE, "atoms": MAX_ATOMS, "files": _fingerprint(files)}
    )
    cache = base / f"qm9_descriptor_{hashlib.sha256(key.encode()).hexdigest()[:16]}.pt"
    d = _read_cache(cache)
    if d is None:
        mols = read_qm9_csv(source)
        d = {
            "version": CACHE_VERSION,
            "features": qm9_descriptor(mols.z, mols.pos),
            "targets": mols.targets.to(torch.float32),
            "index": mols.index,
            "source": str(source),
        }
        base.mkdir(parents=True, exist_ok=True)
        with atomic_open(cache, "wb") as f:
            torch.save(d, f)
    features, targets, index = d["features"], d["targets"], d["index"]
    train, val, test = qm9_split(len(index), seed=seed, test_size=test_size, val_size=val_size)
    rows = {"train": train, "val": val, "test": test}
    inputs = {s: features[r] for s, r in rows.items()}  # copies, standardised in place below
    f_mean, f_std = _mean_std(inputs["train"])
    f_std = torch.where(f_std > 1e-6, f_std, torch.ones_like(f_std))
    for x in inputs.values():
        x.sub_(f_mean.to(torch.float32)).div_(f_std.to(torch.float32))
    t_mean, t_std = _mean_std(targets[train])
    tasks = [
        TaskSpec(
            name,
            "regression",
            1,
            target_mean=float(t_mean[k]),
            target_std=float(t_std[k]) if float(t_std[k]) > 0 else 1.0,
            unit=unit,
        )
        for k, (name, _, unit, _) in enumerate(QM9_TARGETS)
    ]
    splits = {s: MultiTaskData(inputs[s], targets[r], tasks, name=f"qm9/{s}") for s, r in rows.items()}
    info = {
        "cache": str(cache),
        "source": str(source),
        "seed": int(seed),
        "num_molecules": len(index),
        "feature_dim": int(features.shape[1]),
        "feature_mean": f_mean.to(torch.float32),
        "feature_std": f_std.to(torch.float32),
        "nash_mtl_mev_tasks": list(NASH_MTL_MEV_TASKS),
        "index": {"train": index[train], "val": index[val], "test": index[test]},
        "descriptor": "sorted Coulomb eigenvalues (29) + element counts H,C,N,O,F (5) + Gaussian-smeared "
        "distance histograms per element pair (15 x 20 bins, 0.5-5 A)",
        "reference": "Ramakrishnan et al. 2014 (QM9); Navon et al. 2022 (Nash-MTL targets and split rule)",
    }
    return MultiTaskBenchmark("qm9", splits["train"], splits["val"], splits["test"], input_kind="vector", info=info)
