"""Find the typefaces installed where it runs and decide which letters each one really draws.

Part of the offline glyph benchmark (``metabridge.data.glyphs``): a *class* is a
character, an *instance* is a typeface (one face of a font file), an *alphabet* is
a script. This module only reads fonts (with fontTools) and applies the letter
rules; rendering lives in ``glyph_render`` and class selection in ``glyphs``.

Rules, each with the failure it prevents:

* **Letters only**: Unicode categories ``Lu``, ``Ll``, ``Lo``. ``Lm`` (modifier
  letters such as a raised h or a prime) and ``Lt`` (title-case digraphs) are
  marks or copies of other letters, not new shapes.
* **No precomposed variants**: a character is kept only if both its NFD and NFKD
  forms are the character itself. This drops accented Latin/Greek/Cyrillic
  letters (a base letter plus combining marks, near-duplicates of the base at
  28 px), compatibility forms (ligatures, superscripts, full-width letters) and
  Hangul syllables (which decompose into jamo).
* **No ideographs**: ``CJK UNIFIED IDEOGRAPH`` characters are skipped; a single
  CJK family would otherwise add tens of thousands of classes drawn in one design.
* **The font must really draw the letter**: codepoints mapped to ``.notdef`` are
  skipped; a glyph shared by more than ``MAX_SHARED_GLYPH`` letters is a
  placeholder (the Last Resort font draws one box per Unicode block), and a font
  in which most letters are such placeholders is dropped; a glyph whose name
  (Adobe Glyph List) names a different character is a mislabelled slot (the TeX
  fonts ``cmex10``/``cmsy10`` map ASCII letters to brackets and operators);
  glyph names that name nothing are trusted only in a font whose names mostly
  agree with its cmap (>= 75%; ``cmex10`` has none that agree and is dropped
  whole, ``cmsy10`` keeps only its calligraphic capitals).
  Empty (ink-free) glyphs are caught later, after rendering.
* **One instance per face**: faces are identified by their (family, style) names
  from the ``name`` table; the same face found twice (matplotlib's copy of DejaVu
  and the system's) is kept once, the first found.
"""

from __future__ import annotations

import logging
import os
import unicodedata
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

FONT_SUFFIXES = (".ttf", ".otf", ".ttc", ".otc")
LETTER_CATEGORIES = frozenset({"Lu", "Ll", "Lo"})
MAX_SHARED_GLYPH = 4
EXCLUDED_SCRIPTS = frozenset({"CJK", "MODIFIER", "TURNED", "ROMAN", "MATHEMATICAL"})
_SCRIPT_QUALIFIERS = frozenset({"EPIGRAPHIC"})
_SCRIPT_STOP_WORDS = frozenset(
    {"LETTER", "CAPITAL", "SMALL", "SYLLABLE", "SYLLABICS", "CHARACTER", "LIGATURE", "IDEOGRAPH", "VOWEL", "CONSONANT"}
)


@dataclass(frozen=True)
class FontFace:
    """One face of a font file: ``path`` and the ``index`` of the face in a collection."""

    path: str
    index: int
    family: str
    style: str

    @property
    def label(self) -> str:
        """A readable, unique name of the face, e.g. ``DejaVu Sans Bold``."""
        return f"{self.family} {self.style}".strip()


@contextmanager
def quiet_fonttools(level: int = logging.ERROR) -> Iterator[None]:
    """Silence fontTools' warnings about odd tables while a block reads fonts, then restore.

    Sets the ``fontTools`` logger to ``level`` only if it would let lower records
    through, and puts its own level back on exit (even on error), so the
    application's logging configuration is the same after a call as before.
    """
    logger = logging.getLogger("fontTools")
    previous = logger.level
    if logger.getEffectiveLevel() < level:
        logger.setLevel(level)
    try:
        yield
    finally:
        logger.setLevel(previous)


def default_font_dirs() -> list[str]:
    """matplotlib's bundled fonts first (always present), then system font directories that exist."""
    import matplotlib

    dirs = [os.path.join(matplotlib.get_data_path(), "fonts", "ttf")]
    for extra in ("/usr/share/fonts", "/usr/local/share/fonts"):
        if os.path.isdir(extra):
            dirs.append(extra)
    return dirs


def list_font_files(font_dirs: list[str]) -> list[Path]:
    """Font files under ``font_dirs`` (recursively), directory order first, sorted by path within each."""
    seen: set[Path] = set()
    files: list[Path] = []
    for d in font_dirs:
        root = Path(d)
        found = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for p in found:
            if p.suffix.lower() in FONT_SUFFIXES:
                rp = p.resolve()
                if rp not in seen:
                    seen.add(rp)
                    files.append(p)
    return files


def font_files_fingerprint(files: list[Path]) -> list[tuple[str, int, int]]:
    """``(path, size, mtime_ns)`` of each file: a cheap key that changes when a font changes."""
    out = []
    for p in files:
        st = p.stat()
        out.append((str(p), st.st_size, st.st_mtime_ns))
    return out


def script_of(ch: str) -> str | None:
    """The script (alphabet) of a letter from its Unicode name, e.g. ``GREEK`` or ``OL CHIKI``.

    The script is the run of name words before the first word that describes the
    letter (``LETTER``, ``CAPITAL``, ``SMALL``, ``SYLLABLE``...); ``None`` if unnamed.
    """
    name = unicodedata.name(ch, "")
    if not name:
        return None
    words = name.split()
    for i, w in enumerate(words):
        if i > 0 and (w in _SCRIPT_STOP_WORDS or w.startswith("IDEOGRAPH")):
            return " ".join(x for x in words[:i] if x not in _SCRIPT_QUALIFIERS)
    return words[0]


def is_candidate_letter(ch: str) -> bool:
    """True for a base letter of a script (see the module docstring for the rules)."""
    if unicodedata.category(ch) not in LETTER_CATEGORIES:
        return False
    if unicodedata.normalize("NFD", ch) != ch or unicodedata.normalize("NFKD", ch) != ch:
        return False
    script = script_of(ch)
    return script is not None and script.split()[0] not in EXCLUDED_SCRIPTS


def _names(tt) -> tuple[str, str]:
    name = tt["name"]
    family = name.getDebugName(16) or name.getDebugName(1) or ""
    style = name.getDebugName(17) or name.getDebugName(2) or ""
    return family, style


def _num_faces(path: Path) -> int:
    if path.suffix.lower() in (".ttc", ".otc"):
        from fontTools.ttLib import TTCollection

        with TTCollection(str(path), lazy=True) as coll:
            return len(coll.fonts)
    return 1


def face_letters(tt) -> set[str]:
    """The letters an open fontTools font really draws (cmap rules of the module docstring)."""
    from fontTools import agl

    cmap = tt.getBestCmap() or {}
    letters = {chr(cp): g for cp, g in cmap.items() if is_candidate_letter(chr(cp))}
    uses = Counter(letters.values())
    agree: set[str] = set()
    unnamed: set[str] = set()
    placeholders = 0
    for ch, glyph in letters.items():
        if glyph == ".notdef":
            continue
        if uses[glyph] > MAX_SHARED_GLYPH:
            placeholders += 1
            continue
        named = agl.toUnicode(glyph)
        if named == ch:
            agree.add(ch)
        elif not named:
            unnamed.add(ch)
    if not letters or placeholders > len(letters) // 2:
        return set()
    if len(agree) >= 0.75 * len(letters):
        return agree | unnamed
    return agree


def discover_faces(font_dirs: list[str]) -> list[tuple[FontFace, set[str]]]:
    """Every distinct face under ``font_dirs`` that draws at least one letter, with its letters.

    Faces are deduplicated by (family, style); unreadable files are skipped.
    """
    from fontTools.ttLib import TTFont

    out: list[tuple[FontFace, set[str]]] = []
    seen: set[tuple[str, str]] = set()
    with quiet_fonttools():  # odd tables in system fonts are skipped, not reported
        for path in list_font_files(font_dirs):
            try:
                n = _num_faces(path)
            except Exception:
                continue
            for i in range(n):
                try:
                    with TTFont(str(path), fontNumber=i, lazy=True) as tt:
                        family, style = _names(tt)
                        key = (family.lower(), style.lower())
                        if key in seen:
                            continue
                        letters = face_letters(tt)
                except Exception:
                    continue
                seen.add(key)
                if letters:
                    out.append((FontFace(str(path), i, family, style), letters))
    return out
