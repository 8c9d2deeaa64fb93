"""Choose the classes and instances of the glyph benchmark from rendered glyphs.

Input: the faces found where it runs and the letters each draws
(``glyph_fonts.discover_faces``). Output: for each kept character, the faces that
are its instances. All decisions are taken on 28x28 renderings (``ANALYSIS_SIZE``)
whatever size is finally rendered, so the 28 px and 84 px benchmarks hold exactly
the same classes and instances.

Steps, in order:

1. *Candidates*: letters drawn by >= ``min_fonts`` faces (cmap rules).
2. *Ink*: a rendering with no ink (an empty glyph) is not an instance.
3. *Near-identical instances*: within a class, a face whose rendering differs from
   an already kept face's by a mean absolute pixel difference below
   ``INSTANCE_DUP_DIST`` (0.02 of full scale) is dropped; faces are visited in
   discovery order (matplotlib's first). This removes copies of one design under
   another name (DejaVu Math TeX Gyre's letters are DejaVu Serif's: median
   distance 0.016) and byte-identical renderings. Sibling faces that a typographer
   derived mechanically (bold, oblique, condensed: median distance 0.043-0.05 to
   the regular face) are kept: they are different renderings of the letter, like
   Omniglot's different drawers, though less diverse than unrelated typefaces.
4. *Enough instances*: classes with < ``min_fonts`` remaining instances are dropped.
5. *Near-duplicate classes*: two classes are near-duplicates when, averaged over
   the faces that draw both (at least ``MIN_SHARED_FACES``), their renderings in
   the same face differ by less than ``CLASS_DUP_DIST`` (0.04, about the 3rd
   percentile of distances between two faces' renderings of one letter), or less
   than ``CASE_DUP_DIST`` (0.10) for a case pair (a letter and its lower case),
   since cropping to the ink box removes the size difference between o and O.
   Classes are visited in codepoint order and a class is kept only if it is not a
   near-duplicate of a kept one; so Latin A keeps its class and Greek Alpha and
   Cyrillic A are dropped, and no evaluation letter is a copy of a training letter.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import torch

from .glyph_fonts import FontFace
from .glyph_render import render_many

ANALYSIS_SIZE = 28
INSTANCE_DUP_DIST = 0.02
CLASS_DUP_DIST = 0.04
CASE_DUP_DIST = 0.10
MIN_SHARED_FACES = 3


@dataclass
class Selection:
    """Kept characters (codepoint order) with the face indices that are their instances,
    plus counts of what each step removed."""

    chars: list[str]
    instances: list[list[int]]
    dropped: dict[str, int] = field(default_factory=dict)
    duplicates_of: dict[str, str] = field(default_factory=dict)


def candidate_chars(faces: list[tuple[FontFace, set[str]]], min_fonts: int) -> list[str]:
    """Letters drawn by at least ``min_fonts`` faces, in codepoint order."""
    counts = Counter(ch for _, letters in faces for ch in letters)
    return sorted((ch for ch, n in counts.items() if n >= min_fonts), key=ord)


def render_candidates(
    faces: list[tuple[FontFace, set[str]]], chars: list[str], image_size: int
) -> dict[tuple[int, int], np.ndarray]:
    """Renderings ``{(class index, face index): image}`` of every (char, face) pair that has ink."""
    out: dict[tuple[int, int], np.ndarray] = {}
    for fi, (face, letters) in enumerate(faces):
        idx = [ci for ci, ch in enumerate(chars) if ch in letters]
        if not idx:
            continue
        for ci, img in zip(idx, render_many(face.path, face.index, [chars[i] for i in idx], image_size)):
            if img is not None:
                out[(ci, fi)] = img
    return out


def _mean_abs(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float32) - b.astype(np.float32)).mean() / 255.0)


def distinct_instances(renders: dict[tuple[int, int], np.ndarray], num_classes: int) -> list[list[int]]:
    """Per class, the faces kept after dropping near-identical renderings (step 3)."""
    by_class: list[list[int]] = [[] for _ in range(num_classes)]
    for ci, fi in sorted(renders):
        kept = by_class[ci]
        img = renders[(ci, fi)]
        if all(_mean_abs(img, renders[(ci, k)]) >= INSTANCE_DUP_DIST for k in kept):
            kept.append(fi)
    return by_class


def same_face_distances(
    renders: dict[tuple[int, int], np.ndarray], classes: list[int], num_faces: int, exact_below: float = CASE_DUP_DIST
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mean, count)`` ``[C, C]``: mean over shared faces of the per-face mean absolute difference
    between the renderings of two classes (``classes`` order), and how many faces drew both.

    The L1 distance is computed exactly only where it can be below ``exact_below``:
    pixels lie in [0, 1], so the mean squared difference (a fast matrix product) is
    a lower bound of the mean absolute difference (``d**2 <= |d|``); elsewhere that
    bound is returned.
    """
    pos = {c: i for i, c in enumerate(classes)}
    n = len(classes)
    sq_total = torch.zeros(n, n, dtype=torch.float32)
    count = torch.zeros(n, n, dtype=torch.float32)
    stacks: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
    per_face: dict[int, list[int]] = {}
    for ci, fi in renders:
        if ci in pos:
            per_face.setdefault(fi, []).append(ci)
    for fi in range(num_faces):
        members = sorted(per_face.get(fi, []))
        if len(members) < 2:
            continue
        x = torch.from_numpy(np.stack([renders[(c, fi)] for c in members]).reshape(len(members), -1)).float() / 255.0
        idx = torch.tensor([pos[c] for c in members])
        sq = (x * x).sum(1)
        msq = ((sq[:, None] + sq[None, :] - 2.0 * x @ x.T) / x.shape[1]).clamp_(min=0)
        flat = (idx[:, None] * n + idx[None, :]).reshape(-1)
        sq_total.view(-1).index_add_(0, flat, msq.reshape(-1))
        count.view(-1).index_add_(0, flat, torch.ones(flat.shape[0]))
        stacks[fi] = (idx, x)
    mean = sq_total / count.clamp(min=1)
    cand = torch.nonzero(torch.triu((mean < exact_below) & (count > 0), diagonal=1))
    if len(cand):
        l1_total = torch.zeros(len(cand))
        for idx, x in stacks.values():
            where = torch.full((n,), -1, dtype=torch.long)
            where[idx] = torch.arange(len(idx))
            a, b = where[cand[:, 0]], where[cand[:, 1]]
            both = (a >= 0) & (b >= 0)
            l1_total[both] += (x[a[both]] - x[b[both]]).abs().mean(1)
        l1 = l1_total / count[cand[:, 0], cand[:, 1]]
        mean[cand[:, 0], cand[:, 1]] = l1
        mean[cand[:, 1], cand[:, 0]] = l1
    return mean, count


def select_classes(faces: list[tuple[FontFace, set[str]]], min_fonts: int) -> tuple[Selection, dict]:
    """Run steps 1-5; returns the selection and the analysis renderings (for reuse at 28 px)."""
    chars = candidate_chars(faces, min_fonts)
    renders = render_candidates(faces, chars, ANALYSIS_SIZE)
    char_set = set(chars)
    pairs_total = sum(1 for _, letters in faces for ch in letters if ch in char_set)
    instances = distinct_instances(renders, len(chars))
    enough = [ci for ci in range(len(chars)) if len(instances[ci]) >= min_fonts]
    dist, shared = same_face_distances(renders, enough, len(faces))
    names = [chars[ci] for ci in enough]
    limit = torch.full_like(dist, CLASS_DUP_DIST)
    where = {ch: i for i, ch in enumerate(names)}
    for i, ch in enumerate(names):
        for other in {ch.lower(), ch.upper()} - {ch}:
            j = where.get(other)
            if j is not None:
                limit[i, j] = limit[j, i] = CASE_DUP_DIST
    dup = (shared >= MIN_SHARED_FACES) & (dist < limit)
    dup.fill_diagonal_(False)
    kept_mask = torch.zeros(len(enough), dtype=torch.bool)
    duplicates_of: dict[str, str] = {}
    for i in range(len(enough)):
        hits = torch.nonzero(dup[i] & kept_mask)
        if len(hits):
            duplicates_of[names[i]] = names[int(hits[0])]
        else:
            kept_mask[i] = True
    kept = [enough[i] for i in torch.nonzero(kept_mask).flatten().tolist()]
    dropped = {
        "candidate_classes": len(chars),
        "candidate_renderings": pairs_total,
        "no_ink_renderings": pairs_total - len(renders),
        "near_identical_instances": len(renders) - sum(len(v) for v in instances),
        "too_few_instances": len(chars) - len(enough),
        "near_duplicate_classes": len(enough) - len(kept),
    }
    sel = Selection([chars[ci] for ci in kept], [instances[ci] for ci in kept], dropped, duplicates_of)
    kept_renders = {(k, fi): renders[(ci, fi)] for k, ci in enumerate(kept) for fi in instances[ci]}
    return sel, kept_renders
