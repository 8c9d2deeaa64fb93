"""Render one character in one typeface as a small Omniglot-like image.

Recipe (deterministic for a given font file, Pillow and FreeType version):

1. draw the character with Pillow's basic layout engine (no shaping: every class
   is one isolated character) in white on a black canvas, at a font size of
   ``RENDER_SCALE * image_size`` pixels;
2. crop to the ink bounding box (pixels >= ``INK_LEVEL``), so that the position
   and size of the letter inside the em box play no role;
3. pad to a square, centred, keeping the aspect ratio, with a margin of
   ``margin * side`` on every side (strokes never touch the border, so a random
   crop with zero padding only ever moves background);
4. resize to ``image_size`` with area averaging (antialiasing, no ringing).

Pixels are uint8, **white ink (255) on black (0)**: the background is 0, the value
zero-padding adds, and the ink carries the signal.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

RENDER_SCALE = 4
INK_LEVEL = 32
MIN_INK_PIXELS = 3
DEFAULT_MARGIN = 0.1


@lru_cache(maxsize=64)
def load_font(path: str, index: int, pixel_size: int):
    """A Pillow FreeType font at ``pixel_size`` (basic layout: identical with or without libraqm)."""
    from PIL import ImageFont

    return ImageFont.truetype(path, size=pixel_size, index=index, layout_engine=ImageFont.Layout.BASIC)


def render_char(font, ch: str, image_size: int, margin: float = DEFAULT_MARGIN) -> np.ndarray | None:
    """``[image_size, image_size]`` uint8 rendering of ``ch`` in ``font``, or ``None`` if it has no ink."""
    from PIL import Image, ImageDraw

    left, top, right, bottom = font.getbbox(ch)
    if right <= left or bottom <= top:
        return None
    pad = 4
    canvas = Image.new("L", (right - left + 2 * pad, bottom - top + 2 * pad), 0)
    ImageDraw.Draw(canvas).text((pad - left, pad - top), ch, fill=255, font=font)
    arr = np.asarray(canvas)
    ink = arr >= INK_LEVEL
    if int(ink.sum()) < MIN_INK_PIXELS:
        return None
    rows = np.flatnonzero(ink.any(axis=1))
    cols = np.flatnonzero(ink.any(axis=0))
    crop = arr[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    h, w = crop.shape
    inner = max(h, w)
    side = max(int(round(inner / (1.0 - 2.0 * margin))), inner)
    square = np.zeros((side, side), dtype=np.uint8)
    y0, x0 = (side - h) // 2, (side - w) // 2
    square[y0 : y0 + h, x0 : x0 + w] = crop
    img = Image.fromarray(square)
    resample = Image.Resampling.BOX if side >= image_size else Image.Resampling.BICUBIC
    out = np.asarray(img.resize((image_size, image_size), resample=resample))
    if int((out >= INK_LEVEL).sum()) == 0:
        return None
    return out


def render_many(
    path: str, index: int, chars: list[str], image_size: int, margin: float = DEFAULT_MARGIN
) -> list[np.ndarray | None]:
    """Render every character of ``chars`` in one face (the font is opened once)."""
    font = load_font(path, index, RENDER_SCALE * image_size)
    return [render_char(font, ch, image_size, margin) for ch in chars]
