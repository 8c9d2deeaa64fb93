"""The offline real-glyph few-shot benchmark ("glyphs").

Omniglot's structure built from the typefaces installed where it runs:
**alphabet = script, class = character, instance = typeface (one face)**. It needs
no download: matplotlib's wheel ships about 40 font files (DejaVu, STIX, Computer
Modern), and any system font directory present (``/usr/share/fonts``; Debian's
``fonts-noto-core``/``fonts-noto-extra`` add many scripts) contributes more faces.

Which letters, faces and near-duplicates are kept: ``glyph_fonts`` (cmap rules) and
``glyph_select`` (ink, near-identical instances, near-duplicate classes). How a
glyph is drawn: ``glyph_render`` (white ink on black, cropped to the ink, centred
with a 10% margin, area-resampled to 28x28 or 84x84).

Splits (like Omniglot's background/evaluation, plus a validation split), by script:

* ``background`` (alias ``train``): LATIN, CYRILLIC — the two largest scripts.
* ``validation`` (alias ``val``): ARMENIAN.
* ``evaluation`` (alias ``test``): GREEK, GEORGIAN.
* any other script (present only with extra system fonts) goes where a hash of its
  name sends it: ``sha256(name)`` read as a number in [0, 1) is < 0.6 background,
  < 0.75 validation, else evaluation. The rule does not depend on which other
  fonts are installed, so a script keeps its split on every machine.

If that leaves a split with fewer than ``MIN_SPLIT_CLASSES`` (20, one 20-way
episode) classes — a custom ``font_dirs`` with a single script, say — every class
is instead assigned by the same hash of its character (a character-level split
inside scripts); ``glyph_inventory`` reports which rule was used.

The rendered arrays of all splits are cached in one ``.npz`` file under
``cache_dir`` (default ``$METABRIDGE_CACHE/glyphs``, else ``~/.cache/metabridge/glyphs``),
named by a hash of the font files (path, size, mtime), the rendering and
selection parameters, and the Pillow/FreeType versions; it is written with
:func:`metabridge.atomic.atomic_open`, so a crash never leaves a half-written cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..atomic import atomic_open
from .class_dataset import ClassDataset
from .glyph_fonts import default_font_dirs, discover_faces, font_files_fingerprint, list_font_files, script_of
from .glyph_render import DEFAULT_MARGIN, INK_LEVEL, RENDER_SCALE, render_many
from .glyph_select import (
    ANALYSIS_SIZE,
    CASE_DUP_DIST,
    CLASS_DUP_DIST,
    INSTANCE_DUP_DIST,
    MIN_SHARED_FACES,
    select_classes,
)

GLYPHS_FORMAT = 1
SPLITS = ("background", "validation", "evaluation")
SPLIT_ALIASES = {"train": "background", "val": "validation", "valid": "validation", "test": "evaluation"}
SCRIPT_SPLITS = {
    "LATIN": "background",
    "CYRILLIC": "background",
    "ARMENIAN": "validation",
    "GREEK": "evaluation",
    "GEORGIAN": "evaluation",
}
HASH_FRACTIONS = (0.6, 0.75)
MIN_SPLIT_CLASSES = 20


@dataclass
class GlyphTable:
    """Every kept glyph at one image size: ``images[i]`` is character ``labels[i]`` drawn in
    face ``faces[i]``; per class ``chars``, ``scripts`` and ``splits``."""

    images: np.ndarray
    labels: np.ndarray
    faces: np.ndarray
    chars: list[str]
    scripts: list[str]
    splits: list[str]
    face_labels: list[str]
    split_rule: str
    stats: dict


def _unit_hash(text: str) -> float:
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big") / 2.0**64


def _hash_split(text: str) -> str:
    u = _unit_hash(text)
    return SPLITS[0] if u < HASH_FRACTIONS[0] else SPLITS[1] if u < HASH_FRACTIONS[1] else SPLITS[2]


def assign_splits(chars: list[str], scripts: list[str]) -> tuple[list[str], str]:
    """Split of each class and the rule used (``"script"`` or ``"character"``)."""
    by_script = [SCRIPT_SPLITS.get(s) or _hash_split(s) for s in scripts]
    if all(by_script.count(s) >= MIN_SPLIT_CLASSES for s in SPLITS):
        return by_script, "script"
    return [_hash_split(f"U+{ord(c):04X}") for c in chars], "character"


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """Where glyph caches live: ``cache_dir``, else ``$METABRIDGE_CACHE/glyphs``, else ``~/.cache/metabridge/glyphs``."""
    if cache_dir is not None:
        return Path(cache_dir)
    env = os.environ.get("METABRIDGE_CACHE")
    return Path(env) / "glyphs" if env else Path.home() / ".cache" / "metabridge" / "glyphs"


def cache_key(font_dirs: list[str], image_size: int, min_fonts: int) -> str:
    """Hash of everything the rendered benchmark depends on."""
    import PIL
    from PIL import features

    spec = {
        "format": GLYPHS_FORMAT,
        "fonts": font_files_fingerprint(list_font_files(font_dirs)),
        "image_size": image_size,
        "min_fonts": min_fonts,
        "render": [RENDER_SCALE, INK_LEVEL, DEFAULT_MARGIN, ANALYSIS_SIZE],
        "select": [INSTANCE_DUP_DIST, CLASS_DUP_DIST, CASE_DUP_DIST, MIN_SHARED_FACES],
        "split": [sorted(SCRIPT_SPLITS.items()), HASH_FRACTIONS, MIN_SPLIT_CLASSES],
        "pillow": PIL.__version__,
        "freetype": features.version("freetype2"),
    }
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:20]


def build_glyph_table(image_size: int = 28, min_fonts: int = 10, font_dirs: list[str] | None = None) -> GlyphTable:
    """Discover faces, select classes and render every instance (no cache)."""
    if image_size < 8:
        raise ValueError(f"glyphs: image_size must be >= 8 (got {image_size}).")
    faces = discover_faces(font_dirs if font_dirs is not None else default_font_dirs())
    sel, analysis = select_classes(faces, min_fonts)
    if not sel.chars:
        raise RuntimeError(
            f"glyphs: no letter is drawn by >= {min_fonts} typefaces in {font_dirs or default_font_dirs()}; "
            "lower min_fonts or add font directories."
        )
    if image_size == ANALYSIS_SIZE:
        renders = analysis
    else:
        renders = {}
        per_face: dict[int, list[int]] = {}
        for k, fis in enumerate(sel.instances):
            for fi in fis:
                per_face.setdefault(fi, []).append(k)
        for fi, ks in sorted(per_face.items()):
            face = faces[fi][0]
            for k, img in zip(ks, render_many(face.path, face.index, [sel.chars[k] for k in ks], image_size)):
                if img is None:
                    raise RuntimeError(
                        f"glyphs: {sel.chars[k]!r} in {face.label} has ink at 28 px but not at {image_size} px."
                    )
                renders[(k, fi)] = img
    order = [(k, fi) for k, fis in enumerate(sel.instances) for fi in fis]
    scripts = [script_of(c) or "UNKNOWN" for c in sel.chars]
    splits, rule = assign_splits(sel.chars, scripts)
    stats = dict(sel.dropped)
    stats["faces"] = len(faces)
    return GlyphTable(
        images=np.stack([renders[p] for p in order]).astype(np.uint8),
        labels=np.array([k for k, _ in order], dtype=np.int64),
        faces=np.array([fi for _, fi in order], dtype=np.int32),
        chars=sel.chars,
        scripts=scripts,
        splits=splits,
        face_labels=[f.label for f, _ in faces],
        split_rule=rule,
        stats=stats,
    )


def _save(table: GlyphTable, path: Path) -> None:
    meta = {
        "chars": table.chars,
        "scripts": table.scripts,
        "splits": table.splits,
        "face_labels": table.face_labels,
        "split_rule": table.split_rule,
        "stats": table.stats,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path, "wb") as f:
        np.savez(f, images=table.images, labels=table.labels, faces=table.faces, meta=np.array(json.dumps(meta)))


def _load(path: Path) -> GlyphTable:
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(str(z["meta"]))
        return GlyphTable(
            images=z["images"],
            labels=z["labels"],
            faces=z["faces"],
            chars=meta["chars"],
            scripts=meta["scripts"],
            splits=meta["splits"],
            face_labels=meta["face_labels"],
            split_rule=meta["split_rule"],
            stats=meta["stats"],
        )


def glyph_table(
    image_size: int = 28,
    min_fonts: int = 10,
    font_dirs: list[str] | None = None,
    cache_dir: str | os.PathLike | None = None,
    use_cache: bool = True,
) -> GlyphTable:
    """The whole benchmark at ``image_size``, from the cache when it is there (else built and cached)."""
    dirs = list(font_dirs) if font_dirs is not None else default_font_dirs()
    path = cache_root(cache_dir) / f"glyphs-{image_size}px-min{min_fonts}-{cache_key(dirs, image_size, min_fonts)}.npz"
    if use_cache and path.is_file():
        try:
            return _load(path)
        except Exception:  # a damaged cache is rebuilt, never trusted
            path.unlink(missing_ok=True)
    table = build_glyph_table(image_size, min_fonts, dirs)
    if use_cache:
        _save(table, path)
    return table


def _split_name(split: str) -> str:
    name = SPLIT_ALIASES.get(split, split)
    if name not in SPLITS + ("all",):
        raise ValueError(f"glyphs: unknown split {split!r}; use one of {SPLITS + ('all',)} or {tuple(SPLIT_ALIASES)}.")
    return name


def load_glyphs(
    split: str,
    image_size: int = 28,
    min_fonts: int = 10,
    font_dirs: list[str] | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> ClassDataset:
    """One split of the glyph benchmark as a ``ClassDataset``.

    Args:
        split: ``background``/``train``, ``validation``/``val``, ``evaluation``/``test`` or ``all``.
        image_size: side in pixels (28 like Omniglot in MAML, 84 like mini-ImageNet).
        min_fonts: keep a character only if at least this many distinct typefaces draw it.
        font_dirs: directories (or files) to search; default matplotlib's fonts plus
            ``/usr/share/fonts`` and ``/usr/local/share/fonts`` where present.
        cache_dir: where rendered arrays are cached (see ``cache_root``).

    Returns:
        images ``[N, 1, H, W]`` uint8 (white ink 255 on black 0), labels ``0..C-1`` in
        codepoint order, ``class_names`` the Unicode character names, ``groups`` the scripts.
    """
    name = _split_name(split)
    table = glyph_table(image_size, min_fonts, font_dirs, cache_dir)
    classes = [k for k, s in enumerate(table.splits) if name == "all" or s == name]
    remap = np.full(len(table.chars), -1, dtype=np.int64)
    remap[classes] = np.arange(len(classes))
    keep = remap[table.labels] >= 0
    return ClassDataset(
        images=torch.from_numpy(np.ascontiguousarray(table.images[keep][:, None])),
        labels=torch.from_numpy(remap[table.labels[keep]]),
        class_names=[unicodedata.name(table.chars[k], f"U+{ord(table.chars[k]):04X}") for k in classes],
        groups=[table.scripts[k] for k in classes],
        name=f"glyphs-{name}-{image_size}px",
    )


def glyph_inventory(
    image_size: int = 28,
    min_fonts: int = 10,
    font_dirs: list[str] | None = None,
    cache_dir: str | os.PathLike | None = None,
    shots: tuple[int, ...] = (16, 20),
) -> dict:
    """What the installed fonts give: per script and per split, classes and instances.

    ``shots`` lists episode sizes K+Q to count classes with at least that many
    instances (a sampler cannot draw K support + Q query images from fewer).
    """
    table = glyph_table(image_size, min_fonts, font_dirs, cache_dir)
    per_class = np.bincount(table.labels, minlength=len(table.chars))

    def summary(classes: list[int]) -> dict:
        counts = per_class[classes] if classes else np.zeros(0, dtype=np.int64)
        out = {
            "classes": len(classes),
            "instances": int(counts.sum()),
            "min_per_class": int(counts.min()) if len(counts) else 0,
            "median_per_class": float(np.median(counts)) if len(counts) else 0.0,
            "max_per_class": int(counts.max()) if len(counts) else 0,
        }
        for n in shots:
            out[f"classes_with_>={n}"] = int((counts >= n).sum())
        return out

    scripts = sorted(set(table.scripts))
    by_script = {}
    for s in scripts:
        classes = [k for k, x in enumerate(table.scripts) if x == s]
        entry = summary(classes)
        entry["splits"] = sorted({table.splits[k] for k in classes})
        by_script[s] = entry
    by_split = {sp: summary([k for k, x in enumerate(table.splits) if x == sp]) for sp in SPLITS}
    return {
        "image_size": image_size,
        "min_fonts": min_fonts,
        "faces": table.face_labels,
        "split_rule": table.split_rule,
        "scripts": by_script,
        "splits": by_split,
        "total": summary(list(range(len(table.chars)))),
        "selection": table.stats,
    }


def format_inventory(inv: dict) -> str:
    """A plain-text table of ``glyph_inventory``'s result (for the README and the CLI)."""
    shot_keys = [k for k in inv["total"] if k.startswith("classes_with_")]
    head = f"{'script/split':<22}{'split':<12}{'classes':>8}{'images':>8}{'min':>5}{'med':>6}{'max':>5}" + "".join(
        f"{k.replace('classes_with_', ''):>7}" for k in shot_keys
    )
    lines = [
        f"glyphs {inv['image_size']}px, min_fonts={inv['min_fonts']}, {len(inv['faces'])} faces, split by {inv['split_rule']}",
        head,
    ]

    def row(name: str, where: str, e: dict) -> str:
        return (
            f"{name:<22}{where:<12}{e['classes']:>8}{e['instances']:>8}{e['min_per_class']:>5}"
            f"{e['median_per_class']:>6.0f}{e['max_per_class']:>5}" + "".join(f"{e[k]:>7}" for k in shot_keys)
        )

    for s, e in inv["scripts"].items():
        lines.append(row(s, ",".join(e["splits"]), e))
    for sp, e in inv["splits"].items():
        lines.append(row(f"[{sp}]", "", e))
    lines.append(row("[total]", "", inv["total"]))
    return "\n".join(lines)


if __name__ == "__main__":  # python -m metabridge.data.glyphs [image_size]
    import sys
    import time

    size = int(sys.argv[1]) if len(sys.argv) > 1 else 28
    t0 = time.perf_counter()
    inventory = glyph_inventory(image_size=size)
    print(format_inventory(inventory))
    print(f"selection: {inventory['selection']}")
    print(f"({time.perf_counter() - t0:.2f} s)")
