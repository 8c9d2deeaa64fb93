"""One's own images as a few-shot dataset: a folder of class folders, or an ``.npz`` file.

Two layouts are read into the same uint8 :class:`ClassDataset` as the built-in sets:

* **A folder of class folders** ``PATH/<class>/<image>``: every subfolder is one
  class, named by the folder; its images (``.png``, ``.jpg``/``.jpeg``, ``.bmp``,
  ``.gif``, ``.tif``/``.tiff``, ``.webp``, any case) lie directly inside it and are
  read with Pillow. Hidden files and folders (names starting with ``.``) and a
  ``__MACOSX`` folder are ignored; other files are skipped with a warning.
* **An ``.npz``** with ``images`` (uint8 ``[N, C, H, W]`` or ``[N, H, W]``) and
  ``labels`` (``[N]``, integers or strings, any values): the distinct label values,
  sorted, become classes ``0..C-1``, named ``str(value)``.

Pixels: each image is turned to grayscale or RGB (an image is grayscale if its mode
is, or if every pixel has R = G = B, as in a gray WebP or palette image; 16-bit
images keep their high byte; an alpha channel is dropped, as ``Image.convert`` does;
EXIF orientation is applied). The dataset is grayscale (``C = 1``) if every image is, else RGB
(``C = 3``, gray images repeated); ``channels`` forces 1 or 3 (RGB to gray with
ITU-R 601 luma, the weights Pillow uses). With ``image_size`` every image is resized
to ``image_size x image_size`` (aspect ratio not kept: Lanczos in Pillow for folders,
antialiased bilinear for ``.npz`` as for the built-in sets); without it all images
must already have one size.

Split, by class as is the few-shot convention: from ``PATH/splits.json`` (folder) or
``<stem>.splits.json`` beside ``<stem>.npz``, or ``split_file``, as
``{"train": [class names], "val": [...], "test": [...]}`` (classes left out are
unused); otherwise the sorted class names are shuffled with
``random.Random(split_seed)`` and cut by ``fractions`` (at least one class each).

Cache: the decoded uint8 tensors of all classes are saved once (atomically) under
``cache_dir`` (default ``$METABRIDGE_CACHE/images``, else
``~/.cache/metabridge/images``) and memory-mapped on later loads. The cache is keyed
by the resolved path, the options that change pixels, and every image file's name,
size and modification time (the ``.npz``'s size and time), so adding, removing or
rewriting a file decodes again; an outdated cache of the same path and options is
deleted when its successor is written. The split is applied after the cache, so
editing ``splits.json`` never decodes again.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from metabridge.data._image_cache_keys import cache_path, folder_fingerprint, remove_outdated
from metabridge.data.cache import load_dataset_cache, resize_uint8, save_dataset
from metabridge.data.class_dataset import ClassDataset
from metabridge.data.spec import DatasetFormatError, canonical_split

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"})
SPLIT_FILE = "splits.json"
DEFAULT_FRACTIONS = (0.64, 0.16, 0.20)
SPLITS = ("train", "val", "test")
CACHE_FORMAT = 1
_IGNORED_DIRS = frozenset({"__MACOSX"})
_SIXTEEN_BIT = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})
_GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "F"}) | _SIXTEEN_BIT


# ----------------------------------------------------------------------------- paths


def is_image_dataset_path(name: str | os.PathLike[str]) -> bool:
    """True if ``name`` is an existing folder or an existing file ending in ``.npz``."""
    p = Path(name).expanduser()
    return p.is_dir() or (p.suffix.lower() == ".npz" and p.is_file())


def default_cache_dir() -> Path:
    """Where decoded own-image caches go: ``$METABRIDGE_CACHE/images``, else ``~/.cache/metabridge/images``."""
    env = os.environ.get("METABRIDGE_CACHE")
    return Path(env) / "images" if env else Path.home() / ".cache" / "metabridge" / "images"


def default_split_file(path: str | os.PathLike[str]) -> Path:
    """``PATH/splits.json`` for a folder, ``<stem>.splits.json`` beside an ``.npz``."""
    p = Path(path).expanduser()
    return p / SPLIT_FILE if p.is_dir() else p.with_name(f"{p.stem}.{SPLIT_FILE}")


def _hidden(p: Path) -> bool:
    return p.name.startswith(".")


# ----------------------------------------------------------------------------- folder


def _scan_folder(root: Path) -> tuple[list[str], list[list[Path]]]:
    """Sorted class names and, per class, its sorted image files; errors name the folder to fix."""
    entries = sorted((p for p in root.iterdir() if not _hidden(p)), key=lambda p: p.name)
    class_dirs = [p for p in entries if p.is_dir() and p.name not in _IGNORED_DIRS]
    if not class_dirs:
        loose = sum(p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES for p in entries)
        found = f" (it holds {loose} images directly)" if loose else ""
        raise DatasetFormatError(
            f"{root} has no class folders{found}: put each class's images in a subfolder named after the class, "
            f"e.g. {root / 'cat' / '0001.png'}, or pass an .npz with 'images' and 'labels'."
        )
    names: list[str] = []
    files: list[list[Path]] = []
    skipped: list[Path] = []
    for d in class_dirs:
        inside = sorted((p for p in d.iterdir() if not _hidden(p)), key=lambda p: p.name)
        images = [p for p in inside if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
        if not images:
            subdirs = [p.name for p in inside if p.is_dir()]
            hint = (
                f" It holds only subfolders ({', '.join(subdirs[:3])}); images must lie directly in the class folder."
                if subdirs
                else ""
            )
            raise DatasetFormatError(
                f"class folder {d} (class {d.name!r}) holds no images ({', '.join(sorted(IMAGE_SUFFIXES))}).{hint} "
                f"Add images to it or remove it."
            )
        skipped += [p for p in inside if p.is_file() and p.suffix.lower() not in IMAGE_SUFFIXES]
        names.append(d.name)
        files.append(images)
    if skipped:
        log.warning("%s: skipped %d files that are not images, e.g. %s", root, len(skipped), skipped[0])
    return names, files


def _normalise(im: Any) -> Any:
    """``im`` as a Pillow image in mode ``L`` (grayscale sources) or ``RGB`` (everything else)."""
    from PIL import Image

    mode = im.mode
    if mode in _SIXTEEN_BIT or mode == "I":
        a = np.asarray(im).astype(np.int64)
        if mode in _SIXTEEN_BIT or a.max() > 255:
            a = a >> 8  # 16-bit samples: keep the high byte
        return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8), "L")
    if mode == "F":
        return Image.fromarray(np.clip(np.asarray(im), 0, 255).round().astype(np.uint8), "L")
    if mode in _GRAY_MODES:
        return im.convert("L")
    return im.convert("RGB")


def _decode_image(path: Path, image_size: int | None) -> np.ndarray:
    """One image file as uint8 ``[H, W]`` (grayscale) or ``[H, W, 3]`` (RGB), resized if asked."""
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as raw:
            raw.load()
            try:
                oriented = ImageOps.exif_transpose(raw)  # a photo as it is shown, not as it is stored
            except Exception:  # unreadable EXIF: keep the pixels as stored
                oriented = raw
            im = _normalise(oriented)
        if image_size is not None and im.size != (image_size, image_size):
            im = im.resize((image_size, image_size), resample=Image.Resampling.LANCZOS)
        a = np.asarray(im, dtype=np.uint8)
    except Exception as e:  # any failure inside Pillow means this file cannot be used
        raise DatasetFormatError(
            f"cannot read the image {path} ({type(e).__name__}: {e}); it is corrupt or not an image. "
            f"Replace it or move it out of the class folder."
        ) from e
    if a.ndim == 3 and (a == a[..., :1]).all():
        return np.ascontiguousarray(a[..., 0])  # gray content stored as color (WebP, palettes, RGB files)
    return a


def _to_channels(a: np.ndarray, channels: int) -> np.ndarray:
    """``[H, W]`` or ``[H, W, 3]`` uint8 as ``[channels, H, W]`` (1: ITU-R 601 luma, 3: gray repeated)."""
    if a.ndim == 2:
        return np.repeat(a[None], channels, axis=0)
    if channels == 3:
        return a.transpose(2, 0, 1)
    return _luma(a.transpose(2, 0, 1)[None])[0]


def _luma(rgb: np.ndarray) -> np.ndarray:
    """``[N, 3, H, W]`` uint8 to ``[N, 1, H, W]`` with Pillow's weights (299, 587, 114)/1000."""
    r, g, b = (rgb[:, i].astype(np.uint32) for i in range(3))
    return ((r * 299 + g * 587 + b * 114 + 500) // 1000).astype(np.uint8)[:, None]


def _decode_folder(
    root: Path, names: list[str], files: list[list[Path]], image_size: int | None, channels: int | None
) -> ClassDataset:
    arrays: list[np.ndarray] = []
    first: Path | None = None
    for paths in files:
        for p in paths:
            a = _decode_image(p, image_size)
            if first is None:
                first = p
            elif a.shape[:2] != arrays[0].shape[:2]:
                (h0, w0), (h, w) = arrays[0].shape[:2], a.shape[:2]
                raise DatasetFormatError(
                    f"{root}: images have different sizes ({first} is {w0}x{h0}, {p} is {w}x{h}); pass "
                    f"image_size=N (--image-size N on the command line) to resize every image to N x N."
                )
            arrays.append(a)
    c = channels if channels is not None else (1 if all(a.ndim == 2 for a in arrays) else 3)
    images = np.stack([_to_channels(a, c) for a in arrays])
    labels = np.repeat(np.arange(len(names)), [len(p) for p in files])
    return ClassDataset(torch.from_numpy(images), torch.from_numpy(labels), list(names), None, root.name)


# ----------------------------------------------------------------------------- npz


def _label_names(values: np.ndarray) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values.tolist()]


def _read_npz(path: Path, image_size: int | None, channels: int | None) -> ClassDataset:
    """Decode and check an ``.npz`` of ``images`` and ``labels``; errors say how to write a good one."""
    how = f"Write it with np.savez({str(path)!r}, images=<uint8 [N, C, H, W] or [N, H, W]>, labels=<[N] ints>)."
    try:
        z = np.load(path, allow_pickle=False)
    except Exception as e:
        raise DatasetFormatError(f"cannot read {path} as .npz ({type(e).__name__}: {e}). {how}") from e
    if not hasattr(z, "files"):
        raise DatasetFormatError(f"{path} holds a single array, not an .npz archive of named arrays. {how}")
    with z:
        missing = [k for k in ("images", "labels") if k not in z.files]
        if missing:
            wanted = " or ".join(repr(k) for k in missing)
            raise DatasetFormatError(f"{path} has no {wanted} array (found {z.files}). {how}")
        try:
            images, labels = z["images"], z["labels"]
        except ValueError as e:  # object arrays need pickle, which is never allowed
            raise DatasetFormatError(f"{path}: {e}. Store numbers or strings, not Python objects. {how}") from e
    if images.dtype != np.uint8:
        raise DatasetFormatError(
            f"{path}: images are {images.dtype}, expected uint8 pixels 0..255; convert them first, e.g. "
            f"np.clip(x * 255, 0, 255).round().astype(np.uint8) for floats in [0, 1]."
        )
    if images.ndim == 3:
        images = images[:, None]
    elif images.ndim != 4:
        raise DatasetFormatError(f"{path}: images have shape {images.shape}; expected [N, C, H, W] or [N, H, W].")
    elif images.shape[1] > 4 and images.shape[3] <= 4:
        raise DatasetFormatError(
            f"{path}: images have shape {images.shape}, which looks channel-last [N, H, W, C]; store "
            f"images.transpose(0, 3, 1, 2) (channels first, [N, C, H, W])."
        )
    n = images.shape[0]
    if n == 0:
        raise DatasetFormatError(f"{path} holds no images. {how}")
    if labels.ndim != 1 or labels.shape[0] != n:
        raise DatasetFormatError(
            f"{path}: labels have shape {labels.shape} for {n} images; expected one label per image, [{n}]."
        )
    if labels.dtype.kind not in "iuUS":
        raise DatasetFormatError(
            f"{path}: labels are {labels.dtype}; store integers (labels.astype(np.int64)) or strings as class ids."
        )
    values, inverse = np.unique(labels, return_inverse=True)
    x = torch.from_numpy(np.ascontiguousarray(images))
    c = x.shape[1]
    if channels is not None and channels != c:
        if {c, channels} != {1, 3}:
            raise DatasetFormatError(
                f"{path}: images have {c} channels; channels={channels} can only convert between 1 and 3."
            )
        x = x.repeat(1, 3, 1, 1) if c == 1 else torch.from_numpy(_luma(x.numpy()))
    if image_size is not None:
        x = resize_uint8(x, image_size)
    return ClassDataset(
        x.contiguous(), torch.from_numpy(inverse.reshape(-1).astype(np.int64)), _label_names(values), None, path.stem
    )


# ----------------------------------------------------------------------------- split


def split_counts(num_classes: int, fractions: Sequence[float] = DEFAULT_FRACTIONS) -> tuple[int, int, int]:
    """Classes per split (train, val, test): ``fractions`` of ``num_classes``, largest remainders
    rounded up, then at least one class each. Needs ``num_classes >= 3``."""
    if num_classes < 3:
        raise ValueError(f"a train/val/test split by class needs at least 3 classes (got {num_classes}).")
    raw = [f * num_classes for f in fractions]
    counts = [math.floor(r) for r in raw]
    by_remainder = sorted(range(3), key=lambda i: (-(raw[i] - counts[i]), i))
    for i in by_remainder[: num_classes - sum(counts)]:
        counts[i] += 1
    for i in range(3):
        if counts[i] == 0:
            donor = max(range(3), key=lambda j: counts[j])
            counts[donor] -= 1
            counts[i] = 1
    return counts[0], counts[1], counts[2]


def seeded_class_split(
    class_names: Sequence[str], seed: int = 0, fractions: Sequence[float] = DEFAULT_FRACTIONS
) -> dict[str, list[str]]:
    """Disjoint train/val/test class lists covering ``class_names``: the sorted names shuffled
    with ``random.Random(seed)`` and cut by ``fractions``; each list sorted."""
    names = sorted(class_names)
    random.Random(seed).shuffle(names)
    n_train, n_val, _ = split_counts(len(names), fractions)
    parts = (names[:n_train], names[n_train : n_train + n_val], names[n_train + n_val :])
    return {s: sorted(p) for s, p in zip(SPLITS, parts)}


def read_split_file(path: str | os.PathLike[str], class_names: Sequence[str]) -> dict[str, list[str]]:
    """The class lists of a ``{"train": [...], "val": [...], "test": [...]}`` JSON file, checked
    against ``class_names`` (every name known, no class in two splits)."""
    path = Path(path)
    example = '{"train": ["cat", "dog", ...], "val": [...], "test": [...]}'
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DatasetFormatError(f"{path} is not valid JSON ({e}); write it as {example}.") from e
    if not isinstance(data, dict):
        raise DatasetFormatError(f"{path} holds a {type(data).__name__}; write it as {example}.")
    known = set(class_names)
    out: dict[str, list[str]] = {}
    owner: dict[str, str] = {}
    for key, value in data.items():
        try:
            split = canonical_split(str(key))
        except ValueError:
            raise DatasetFormatError(f"{path}: unknown split {key!r}; use the keys train, val and test.") from None
        if split in out:
            raise DatasetFormatError(f"{path} lists split {split!r} twice (as {key!r}); keep one list per split.")
        if not isinstance(value, list) or not all(isinstance(v, (str, int)) and not isinstance(v, bool) for v in value):
            raise DatasetFormatError(f"{path}: {key!r} must be a list of class names; write it as {example}.")
        names = [str(v) for v in value]
        unknown = [c for c in names if c not in known]
        if unknown:
            raise DatasetFormatError(
                f"{path}: {split} names classes that do not exist: {unknown[:5]} (classes are the class folder "
                f"names, or the label values of an .npz; found {sorted(known)[:5]}{' ...' if len(known) > 5 else ''})."
            )
        for c in names:
            if c in owner:
                where = "twice" if owner[c] == split else f"in both {owner[c]!r} and {split!r}"
                raise DatasetFormatError(f"{path}: class {c!r} is listed {where}; each class belongs to one split.")
            owner[c] = split
        out[split] = sorted(names)
    return out


# ----------------------------------------------------------------------------- cache


def _load_all_classes(source: Path, image_size: int | None, channels: int | None, cache_dir: Path) -> ClassDataset:
    """Every class of ``source``, from the cache when it matches the files, else decoded and cached."""
    if source.is_dir():
        names, files = _scan_folder(source)
        fingerprint: Any = folder_fingerprint(names, files)
        from PIL import __version__ as pillow

        def build() -> ClassDataset:
            return _decode_folder(source, names, files, image_size, channels)
    else:
        st = source.stat()
        fingerprint, pillow = [st.st_size, st.st_mtime_ns], None  # type: ignore[assignment]  # no decoder for an .npz

        def build() -> ClassDataset:
            return _read_npz(source, image_size, channels)

    options = {"format": CACHE_FORMAT, "image_size": image_size, "channels": channels, "pillow": pillow}
    path = cache_path(source, options, fingerprint, cache_dir)
    ds = load_dataset_cache(path)
    if ds is not None:
        return ds
    ds = build()
    try:
        save_dataset(ds, path)
    except OSError as e:
        log.warning(
            "could not write the image cache %s (%s); decoding again next time. Pass cache_dir= or set "
            "METABRIDGE_CACHE to a writable folder.",
            path,
            e,
        )
        return ds
    remove_outdated(path)
    mapped = load_dataset_cache(path)
    return mapped if mapped is not None else ds


# ----------------------------------------------------------------------------- loader


def _check_options(image_size: int | None, channels: int | None, fractions: Sequence[float]) -> None:
    if image_size is not None and (isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1):
        raise ValueError(f"image_size must be a positive int or None (got {image_size!r}).")
    if channels not in (None, 1, 3):
        raise ValueError(f"channels must be 1 (grayscale), 3 (RGB) or None (from the images); got {channels!r}.")
    ok = len(fractions) == 3 and all(isinstance(f, (int, float)) and math.isfinite(f) and f > 0 for f in fractions)
    if not ok or abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError(
            f"fractions must be three positive numbers (train, val, test) summing to 1; got {tuple(fractions)}."
        )


def load_image_folder(
    path: str | os.PathLike[str],
    split: str,
    *,
    image_size: int | None = None,
    channels: int | None = None,
    split_file: str | os.PathLike[str] | None = None,
    split_seed: int = 0,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    cache_dir: str | os.PathLike[str] | None = None,
) -> ClassDataset:
    """One split of one's own images as a uint8 :class:`ClassDataset` (see the module docstring).

    Args:
        path: a folder of class folders, or an ``.npz`` with ``images`` and ``labels``.
        split: ``train``, ``val`` (``validation``), ``test``, or ``all`` (every class).
        image_size: resize every image to this square size; required when sizes differ.
        channels: 1 or 3 to force grayscale or RGB; default from the images.
        split_file: the class split as JSON; default ``PATH/splits.json`` or
            ``<stem>.splits.json`` beside the ``.npz``, used when it exists.
        split_seed, fractions: the seeded class split used when there is no split file.
        cache_dir: where decoded tensors are cached (default :func:`default_cache_dir`).

    Returns:
        images ``[N, C, H, W]`` uint8, labels ``0..K-1`` following the sorted class
        names of the split, ``class_names`` the folder names (or label values).
    """
    source = Path(path).expanduser()
    if not source.exists():
        raise FileNotFoundError(f"no image folder or .npz file at {source}.")
    if not source.is_dir() and source.suffix.lower() != ".npz":
        raise ValueError(f"{source} is neither a folder of class folders nor an .npz file of images and labels.")
    name = canonical_split(split, allowed=SPLITS + ("all",))
    _check_options(image_size, channels, fractions)
    source = source.resolve()
    full = _load_all_classes(
        source, image_size, channels, Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    )
    title = source.name if source.is_dir() else source.stem
    if name == "all":
        full.name = f"{title}-all"
        return full
    sf = Path(split_file).expanduser() if split_file is not None else default_split_file(source)
    if split_file is not None and not sf.is_file():
        raise FileNotFoundError(f"split file {sf} not found; pass an existing JSON file or leave split_file out.")
    if sf.is_file():
        splits = read_split_file(sf, full.class_names)
        if not splits.get(name):
            raise DatasetFormatError(f"{sf} lists no classes for {name!r}; add a {name!r} list of class names.")
    else:
        if full.num_classes < 3:
            raise DatasetFormatError(
                f"{source} has {full.num_classes} class(es); a train/val/test split by class needs at least 3. "
                f"Add classes, or write {sf} to say which classes go where."
            )
        splits = seeded_class_split(full.class_names, split_seed, fractions)
    index = {c: i for i, c in enumerate(full.class_names)}
    part = full.subset_classes(sorted(index[c] for c in splits[name]), name=f"{title}-{name}")
    if sf.is_file():
        part.split_note = f", or list more classes under {name!r} in {sf}"
    else:
        part.split_note = (
            f', or write {sf} ({{"train": [...], "val": [...], "test": [...]}}, class folder '
            f"names) to choose the split instead of the seeded shuffle of {full.num_classes} classes"
        )
    return part
