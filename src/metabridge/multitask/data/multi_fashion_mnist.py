"""Multi-Fashion-MNIST: two Fashion-MNIST items on one 36x36 canvas; tasks ``left`` and ``right``.

The construction is Sener & Koltun's MultiMNIST ("Multi-Task Learning as Multi-Objective
Optimization", NeurIPS 2018) applied to Fashion-MNIST (Xiao et al. 2017), as in Lin et al.'s
Pareto MTL benchmark ("Pareto Multi-Task Learning", NeurIPS 2019): one item at the top-left,
one at the bottom-right, overlapping pixels combined by their maximum. Task ``left`` is the
class (0-9) of the top-left item, task ``right`` that of the bottom-right item.

Placement (``layout="shifted"``, the default; canvas 36, item 28, so the slack is 8 px):

* the left item's 28x28 block has its top-left corner at ``(dy_l, dx_l)``, each drawn
  uniformly from ``{0, ..., max_shift}`` (it sits in the top-left corner, shifted up to
  ``max_shift`` px towards the centre, independently along each axis);
* the right item's block has its top-left corner at ``(8 - dy_r, 8 - dx_r)``, ``dy_r`` and
  ``dx_r`` uniform in ``{0, ..., max_shift}`` (bottom-right corner, shifted towards the centre);
* ``canvas = max(left placed on zeros, right placed on zeros)`` pixel-wise.

With ``max_shift=4`` the corners are in ``{0..4}`` and ``{4..8}``: the right block is displaced
by 0-8 px per axis (mean 4) from the left one, so the blocks always overlap (20-28 px per axis).
``layout="sener"`` is the fixed placement of Sener & Koltun's released loader
(``multi_mnist_loader.py``: left at (0, 0), right at (6, 6), 22 px overlap, no shifts; that loader
then resizes to 28x28, which is not done here: images stay 36x36 as in Lin et al.'s data).

Pairing and splits (all from one ``torch.Generator`` seeded with ``seed``, in this order):

1. ``perm = randperm(60000)`` of the train file's items; the *last* ``val_size`` (10,000) items
   of ``perm`` form the validation pool, the first 50,000 the training pool, so no Fashion-MNIST
   item appears in both splits;
2. for train, then val, then test (the 10,000 t10k items in file order): each item of the pool
   is the left item of exactly one pair and, through ``pool[randperm(len(pool))]``, the right
   item of exactly one pair (an item may rarely be paired with itself); then
   ``randint(0, max_shift + 1, (n, 4))`` gives ``(dy_l, dx_l, dy_r, dx_r)`` (not drawn for
   ``layout="sener"``).

So train has 50,000 pairs, val 10,000 and test 10,000. ``info["provenance"][split]`` is an int64
``[N, 6]`` tensor ``(left index, right index, left row, left col, right row, right col)`` (indices
into the train file for train/val, into t10k for test; row/col = the block's top-left corner).

Sources, in order: the Debian/Ubuntu package ``dataset-fashion-mnist``
(``/usr/share/datasets/fashion-mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz``), else
``ROOT/multi_fashion_mnist/raw/``, where ``download=True`` fetches the four ``.gz`` files from the
official host. Debian recompressed the ``.gz`` files, so what is verified is the sha256 and size of
the *decompressed* IDX content (the same whichever copy). The built uint8 canvases ``[N, 1, 36, 36]``
and int64 targets ``[N, 2]`` are cached (atomically) in ``ROOT/multi_fashion_mnist/`` under a name
keyed by every setting, and memory-mapped on later loads.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from metabridge.atomic import atomic_open
from metabridge.data.cache import load_versioned
from metabridge.data.download import ChecksumError, RemoteFile, ensure_file
from metabridge.data.spec import DatasetFormatError

from ..tasks import MultiTaskBenchmark, MultiTaskData, TaskSpec
from . import mtl_cache_root

__all__ = [
    "CANVAS",
    "CLASS_NAMES",
    "DEBIAN_DIR",
    "FASHION_MNIST_FILES",
    "FASHION_MNIST_SHA256",
    "OFFICIAL_URL",
    "build_multi_fashion_mnist",
    "compose_pairs",
    "load_multi_fashion_mnist",
    "parse_idx",
    "read_idx_gz",
    "sample_pairs",
]

CANVAS = 36
ITEM = 28
CACHE_VERSION = 1
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
OFFICIAL_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
CLASS_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")

# role -> file name
FASHION_MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}
# file name -> (sha256, size in bytes) of the DECOMPRESSED IDX content (upstream and Debian agree).
FASHION_MNIST_SHA256: dict[str, tuple[str, int]] = {
    "train-images-idx3-ubyte.gz": ("c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888", 47_040_016),
    "train-labels-idx1-ubyte.gz": ("bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9", 60_008),
    "t10k-images-idx3-ubyte.gz": ("5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b", 7_840_016),
    "t10k-labels-idx1-ubyte.gz": ("0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34", 10_008),
}

Layout = Literal["shifted", "sener"]
SENER_OFFSETS = ((0, 0), (6, 6))


# --------------------------------------------------------------------------- IDX files


def parse_idx(data: bytes, source: str, *, ndim: int) -> Tensor:
    """The uint8 array stored in IDX bytes ``data`` (images: ``ndim=3``, labels: ``ndim=1``).

    Checks the magic number (``00 00 08 ndim``: unsigned bytes, ``ndim`` dimensions) and that the
    length is exactly the header plus the product of the dimensions; raises
    :class:`DatasetFormatError` naming ``source`` otherwise.
    """
    fix = (
        f"{source} is not a valid IDX file; delete it and get it again "
        f"(see metabridge.multitask.data.multi_fashion_mnist)."
    )
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DatasetFormatError(f"{source}: {len(data)} bytes, shorter than the {header}-byte IDX header. {fix}")
    magic = data[:4]
    if magic[0] != 0 or magic[1] != 0 or magic[2] != 0x08 or magic[3] != ndim:
        raise DatasetFormatError(
            f"{source}: magic number {magic.hex()}, expected 000008{ndim:02x} (uint8, {ndim}-d IDX). {fix}"
        )
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    expected = header + int(np.prod(dims, dtype=np.int64))
    if len(data) != expected:
        raise DatasetFormatError(f"{source}: dimensions {dims} need {expected} bytes, the file has {len(data)}. {fix}")
    arr = np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)
    return torch.from_numpy(arr.copy())


def read_idx_gz(path: str | os.PathLike[str], *, ndim: int, checksum: tuple[str, int] | None) -> Tensor:
    """Decompress and parse one ``.gz`` IDX file; verify the decompressed ``(sha256, size)`` if given.

    A file that is not gzip, or whose IDX header is wrong, raises :class:`DatasetFormatError`; one
    that parses but differs from ``checksum`` raises :class:`ChecksumError`.
    """
    path = Path(path)
    try:
        data = gzip.decompress(path.read_bytes())
    except (gzip.BadGzipFile, EOFError, zlib.error) as e:
        raise DatasetFormatError(
            f"{path} is not a valid gzip file ({type(e).__name__}: {e}): corrupt or truncated. "
            f"Delete it and get it again."
        ) from e
    tensor = parse_idx(data, str(path), ndim=ndim)
    if checksum is not None:
        sha, size = checksum
        actual = hashlib.sha256(data).hexdigest()
        if len(data) != size or actual != sha.lower():
            raise ChecksumError(
                f"{path} decompresses to {len(data)} bytes with sha256 {actual}; the Fashion-MNIST file "
                f"{path.name} decompresses to {size} bytes with sha256 {sha}. It is not the official file: "
                f"delete it and get it again (apt-get install dataset-fashion-mnist, or download=True)."
            )
    return tensor


# --------------------------------------------------------------------------- composition


def compose_pairs(
    left: Tensor, right: Tensor, left_offsets: Tensor, right_offsets: Tensor, *, canvas: int = CANVAS, chunk: int = 8192
) -> Tensor:
    """Put ``left[i]`` and ``right[i]`` on a ``canvas x canvas`` zero image, combined by max.

    ``left``/``right`` are uint8 ``[N, h, w]``; ``*_offsets`` int ``[N, 2]`` are the (row, col) of
    each item's top-left corner, in ``[0, canvas - h] x [0, canvas - w]``. Vectorised over the
    batch (advanced-index scatter), in chunks of ``chunk`` images. Returns uint8 ``[N, 1, canvas, canvas]``.
    """
    if left.shape != right.shape or left.dim() != 3:
        raise ValueError(
            f"compose_pairs: left and right must both be [N, h, w] (got {tuple(left.shape)} and {tuple(right.shape)})."
        )
    n, h, w = left.shape
    lo, ro = left_offsets.long(), right_offsets.long()
    for name, off in (("left_offsets", lo), ("right_offsets", ro)):
        if off.shape != (n, 2):
            raise ValueError(f"compose_pairs: {name} must be [N={n}, 2] (got {tuple(off.shape)}).")
        if n and (off.min() < 0 or off[:, 0].max() > canvas - h or off[:, 1].max() > canvas - w):
            raise ValueError(f"compose_pairs: {name} must lie in [0, {canvas - h}] x [0, {canvas - w}].")
    out = torch.zeros(n, 1, canvas, canvas, dtype=left.dtype)
    rows = torch.arange(h).view(1, h, 1)
    cols = torch.arange(w).view(1, 1, w)
    for s in range(0, n, chunk):
        e = min(n, s + chunk)
        b = torch.arange(e - s).view(-1, 1, 1)
        a = torch.zeros(e - s, canvas, canvas, dtype=left.dtype)
        c = torch.zeros_like(a)
        a[b, lo[s:e, 0].view(-1, 1, 1) + rows, lo[s:e, 1].view(-1, 1, 1) + cols] = left[s:e]
        c[b, ro[s:e, 0].view(-1, 1, 1) + rows, ro[s:e, 1].view(-1, 1, 1) + cols] = right[s:e]
        out[s:e, 0] = torch.maximum(a, c)
    return out


def sample_pairs(
    pool: Tensor,
    generator: torch.Generator,
    *,
    max_shift: int = 4,
    layout: Layout = "shifted",
    canvas: int = CANVAS,
    item: int = ITEM,
) -> Tensor:
    """Pairs over the item indices ``pool``: int64 ``[n, 6]`` rows ``(left, right, ly, lx, ry, rx)``.

    Item ``pool[i]`` is the left item of pair ``i``; the right items are ``pool[randperm(n)]``;
    offsets follow the module docstring's rule (two draws from ``generator``: the permutation,
    then ``randint(0, max_shift + 1, (n, 4))``; only the first for ``layout="sener"``).
    """
    slack = canvas - item
    if layout not in ("shifted", "sener"):
        raise ValueError(f"layout must be 'shifted' or 'sener' (got {layout!r}).")
    if not 0 <= max_shift <= slack:
        raise ValueError(
            f"max_shift must be in [0, {slack}] for a {canvas}-px canvas and {item}-px items (got {max_shift})."
        )
    pool = pool.long()
    n = pool.numel()
    right = pool[torch.randperm(n, generator=generator)]
    if layout == "shifted":
        shifts = torch.randint(0, max_shift + 1, (n, 4), generator=generator)
        lo, ro = shifts[:, :2], slack - shifts[:, 2:]
    else:
        (ly, lx), (ry, rx) = SENER_OFFSETS
        lo = torch.tensor([ly, lx]).expand(n, 2)
        ro = torch.tensor([ry, rx]).expand(n, 2)
    return torch.cat([pool.view(-1, 1), right.view(-1, 1), lo, ro], dim=1)


def build_multi_fashion_mnist(
    train_images: Tensor,
    train_labels: Tensor,
    test_images: Tensor,
    test_labels: Tensor,
    *,
    seed: int = 0,
    max_shift: int = 4,
    layout: Layout = "shifted",
    val_size: int = 10_000,
) -> dict[str, tuple[Tensor, Tensor, Tensor]]:
    """``{split: (inputs uint8 [N,1,36,36], targets int64 [N,2], provenance int64 [N,6])}`` from the
    Fashion-MNIST arrays, by the pairing and split rule of the module docstring."""
    for images, labels, what in ((train_images, train_labels, "train"), (test_images, test_labels, "test")):
        if images.dim() != 3 or images.shape[0] != labels.shape[0]:
            raise DatasetFormatError(
                f"Fashion-MNIST {what}: {tuple(images.shape)} images but {labels.shape[0]} labels."
            )
        if labels.numel() and int(labels.max()) >= len(CLASS_NAMES):
            raise DatasetFormatError(f"Fashion-MNIST {what}: label {int(labels.max())} out of range 0-9.")
    n_train = train_images.shape[0]
    if not 0 < val_size < n_train:
        raise ValueError(
            f"val_size must be in [1, {n_train - 1}] (the train file has {n_train} items; got {val_size})."
        )
    g = torch.Generator().manual_seed(int(seed))
    perm = torch.randperm(n_train, generator=g)
    pools = {
        "train": (perm[: n_train - val_size], train_images, train_labels),
        "val": (perm[n_train - val_size :], train_images, train_labels),
        "test": (torch.arange(test_images.shape[0]), test_images, test_labels),
    }
    out = {}
    for split, (pool, images, labels) in pools.items():
        prov = sample_pairs(pool, g, max_shift=max_shift, layout=layout, item=images.shape[-1])
        inputs = compose_pairs(images[prov[:, 0]], images[prov[:, 1]], prov[:, 2:4], prov[:, 4:6])
        targets = torch.stack([labels[prov[:, 0]], labels[prov[:, 1]]], dim=1).long()
        out[split] = (inputs, targets, prov)
    return out


# --------------------------------------------------------------------------- loading


def _locate(filename: str, source_dir: Path | None, raw_dir: Path, download: bool, base_url: str) -> Path | None:
    """The file in ``source_dir``, else in ``raw_dir`` (downloaded there when allowed), else None."""
    if source_dir is not None and (source_dir / filename).is_file():
        return source_dir / filename
    remote = RemoteFile(
        filename,
        (base_url.rstrip("/") + "/" + filename,),
        unverified_ok=True,
        note="(the decompressed content is verified by the loader)",
    )
    if (raw_dir / filename).exists() or download:
        return ensure_file(remote, raw_dir, download=download, what="Fashion-MNIST")
    return None


def _missing_message(missing: list[str], source_dir: Path | None, raw_dir: Path, base_url: str) -> str:
    where = f" (looked in {source_dir} and {raw_dir})" if source_dir is not None else f" (looked in {raw_dir})"
    return (
        f"Fashion-MNIST files not found: {', '.join(missing)}{where}. Either install the Debian/Ubuntu package "
        f"with `sudo apt-get install dataset-fashion-mnist` (files in {DEBIAN_DIR}), or call "
        f"load_multi_fashion_mnist(download=True) (--benchmark-kwargs '{{\"download\": true}}') to fetch them from "
        f"{base_url} into {raw_dir}, or place the four .gz files there yourself."
    )


def _cache_name(seed: int, max_shift: int, layout: str, val_size: int, checksums: Mapping[str, tuple[str, int]]) -> str:
    key = json.dumps(
        {
            "v": CACHE_VERSION,
            "seed": seed,
            "max_shift": max_shift if layout == "shifted" else None,
            "layout": layout,
            "val_size": val_size,
            "sources": sorted((k, v[0]) for k, v in checksums.items()),
        },
        sort_keys=True,
    )
    return f"multi_fashion_mnist_{hashlib.sha256(key.encode()).hexdigest()[:16]}.pt"


def _read_cache(path: Path) -> dict | None:
    return load_versioned(path, CACHE_VERSION, mmap=True)


def _build_cache(
    base: Path,
    cache: Path,
    *,
    source_dir: str | os.PathLike[str] | None,
    download: bool,
    base_url: str,
    checksums: Mapping[str, tuple[str, int]],
    seed: int,
    max_shift: int,
    layout: Layout,
    val_size: int,
) -> dict:
    """Read the four Fashion-MNIST files, build the pairs and write them to ``cache`` (the cache's
    contents, read back memory-mapped when possible)."""
    sources: dict[str, str] = {}
    raw_dir = base / "raw"
    src = None if source_dir is None else Path(source_dir).expanduser()
    paths = {role: _locate(name, src, raw_dir, download, base_url) for role, name in FASHION_MNIST_FILES.items()}
    missing = [FASHION_MNIST_FILES[r] for r, p in paths.items() if p is None]
    if missing:
        raise FileNotFoundError(_missing_message(missing, src, raw_dir, base_url))
    arrays = {}
    for role, path in paths.items():
        assert path is not None
        name = FASHION_MNIST_FILES[role]
        arrays[role] = read_idx_gz(path, ndim=3 if role.endswith("images") else 1, checksum=checksums.get(name))
        sources[name] = str(path)
    built = build_multi_fashion_mnist(
        arrays["train_images"],
        arrays["train_labels"],
        arrays["test_images"],
        arrays["test_labels"],
        seed=seed,
        max_shift=max_shift,
        layout=layout,
        val_size=val_size,
    )
    payload: dict = {"version": CACHE_VERSION, "sources": sources}
    for split, (x, y, prov) in built.items():
        payload[f"{split}_inputs"], payload[f"{split}_targets"], payload[f"{split}_provenance"] = x, y, prov
    base.mkdir(parents=True, exist_ok=True)
    with atomic_open(cache, "wb") as f:
        torch.save(payload, f)
    return _read_cache(cache) or payload


def load_multi_fashion_mnist(
    root: str | os.PathLike[str] | None = None,
    *,
    download: bool = False,
    source_dir: str | os.PathLike[str] | None = DEBIAN_DIR,
    base_url: str = OFFICIAL_URL,
    checksums: Mapping[str, tuple[str, int]] | None = None,
    seed: int = 0,
    max_shift: int = 4,
    layout: Layout = "shifted",
    val_size: int = 10_000,
) -> MultiTaskBenchmark:
    """Multi-Fashion-MNIST (tasks ``left``, ``right``; 50k/10k/10k pairs), built once and cached.

    Args:
        root: cache folder (default ``$METABRIDGE_CACHE``, else ``~/.cache/metabridge``); the cache
            and downloads go to ``root/multi_fashion_mnist/``.
        download: fetch missing ``.gz`` files from ``base_url`` into ``root/multi_fashion_mnist/raw``.
        source_dir: where the Debian package puts the files (``None``: do not look there).
        base_url: the host to download from (default: the official Fashion-MNIST S3 site).
        checksums: file name -> ``(sha256, size)`` of the decompressed content (default: the real
            Fashion-MNIST values, :data:`FASHION_MNIST_SHA256`).
        seed, max_shift, layout, val_size: the pairing, placement and split (module docstring).
    """
    base = mtl_cache_root(root) / "multi_fashion_mnist"
    checksums = dict(FASHION_MNIST_SHA256 if checksums is None else checksums)
    cache = base / _cache_name(int(seed), int(max_shift), layout, int(val_size), checksums)
    d = _read_cache(cache)
    if d is None:
        d = _build_cache(
            base,
            cache,
            source_dir=source_dir,
            download=download,
            base_url=base_url,
            checksums=checksums,
            seed=seed,
            max_shift=max_shift,
            layout=layout,
            val_size=val_size,
        )
    tasks = [
        TaskSpec("left", "classification", len(CLASS_NAMES), unit="%"),
        TaskSpec("right", "classification", len(CLASS_NAMES), unit="%"),
    ]
    splits = {
        s: MultiTaskData(d[f"{s}_inputs"], d[f"{s}_targets"], tasks, name=f"multi_fashion_mnist/{s}")
        for s in ("train", "val", "test")
    }
    info = {
        "cache": str(cache),
        "sources": dict(d.get("sources", {})),
        "seed": int(seed),
        "layout": layout,
        "max_shift": int(max_shift),
        "val_size": int(val_size),
        "class_names": list(CLASS_NAMES),
        "provenance": {s: d[f"{s}_provenance"] for s in splits},
        "reference": "Sener & Koltun 2018 (MultiMNIST construction); Lin et al. 2019 (Multi-Fashion-MNIST)",
    }
    return MultiTaskBenchmark(
        "multi_fashion_mnist", splits["train"], splits["val"], splits["test"], input_kind="image", info=info
    )
