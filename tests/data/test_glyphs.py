"""The offline glyph benchmark: letter and font rules, deterministic inked renderings,
disjoint splits, enough instances per class, and a cache that round-trips.

Fast by construction: small font subsets from matplotlib's wheel (the Computer
Modern faces: Latin only; the four DejaVu Serif faces: five scripts).
"""

import logging
import os
import shutil
from pathlib import Path

import matplotlib
import numpy as np
import pytest
import torch

from metabridge.data import glyphs
from metabridge.data.glyph_fonts import discover_faces, face_letters, is_candidate_letter, quiet_fonttools, script_of
from metabridge.data.glyph_render import DEFAULT_MARGIN, INK_LEVEL, render_char

TTF = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
CM = sorted(str(p) for p in TTF.glob("cm*10.ttf"))
SERIF = sorted(str(p) for p in TTF.glob("DejaVuSerif*.ttf"))


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("glyph-cache")


@pytest.fixture(scope="module")
def serif_table(cache):
    return glyphs.glyph_table(28, min_fonts=4, font_dirs=SERIF, cache_dir=cache)


def test_letter_rules():
    assert is_candidate_letter("A") and is_candidate_letter("ж") and is_candidate_letter("ա")
    for ch in ("é", "ﬁ", "ʰ", "Ａ", "中", "1", "-"):
        assert not is_candidate_letter(ch), ch
    assert script_of("ա") == "ARMENIAN" and script_of("ω") == "GREEK" and script_of("ꟾ") == "LATIN"


def test_font_rules_drop_placeholders_and_mislabelled_slots(tmp_path):
    from fontTools.ttLib import TTFont

    with TTFont(str(TTF / "cmex10.ttf"), lazy=True) as tt:
        assert face_letters(tt) == set()  # ASCII slots hold brackets
    with TTFont(str(TTF / "cmsy10.ttf"), lazy=True) as tt:
        assert face_letters(tt) == set("ABCDEFGHIJKLMNOPQRSTUVWXYZ")  # calligraphic capitals only
    last_resort = TTF / "LastResortHE-Regular.ttf"
    if last_resort.exists():
        with TTFont(str(last_resort), lazy=True) as tt:
            assert face_letters(tt) == set()  # one box per Unicode block
    copy = tmp_path / "copy"
    copy.mkdir()
    shutil.copy(TTF / "DejaVuSerif.ttf", copy / "AnotherName.ttf")
    faces = discover_faces([str(TTF / "DejaVuSerif.ttf"), str(copy)])
    assert len(faces) == 1  # the same face under two file names is one instance


@pytest.mark.parametrize("level", [logging.NOTSET, logging.DEBUG, logging.CRITICAL])
def test_reading_fonts_leaves_the_fonttools_log_level_alone(level):
    logger = logging.getLogger("fontTools")
    saved = logger.level
    try:
        logger.setLevel(level)
        assert discover_faces([str(TTF / "DejaVuSerif.ttf")])  # the call reads a font
        assert logger.level == level
        with pytest.raises(KeyError):  # restored on error too
            with quiet_fonttools():
                assert logger.getEffectiveLevel() >= logging.ERROR  # quiet while fonts are read
                raise KeyError("boom")
        assert logger.level == level
    finally:
        logger.setLevel(saved)


def test_rendering_is_deterministic_inked_and_framed():
    from PIL import ImageFont

    for size in (28, 84):
        shots = []
        for _ in range(2):  # a fresh font object each time
            font = ImageFont.truetype(str(TTF / "DejaVuSans.ttf"), 4 * size, layout_engine=ImageFont.Layout.BASIC)
            shots.append([render_char(font, ch, size) for ch in "Aжա"])
        for a, b in zip(*shots):
            assert a.dtype == np.uint8 and a.shape == (size, size)
            assert a.tobytes() == b.tobytes()
            assert int((a >= INK_LEVEL).sum()) > size  # ink
            edge = max(1, int(DEFAULT_MARGIN * size) - 1)
            assert a[:edge].max() == 0 and a[-edge:].max() == 0  # margin above and below
            assert a[:, :edge].max() < INK_LEVEL and a[:, -edge:].max() < INK_LEVEL
        assert render_char(font, " ", size) is None  # no ink, no instance


def test_latin_only_fonts_fall_back_to_a_character_split(cache):
    table = glyphs.glyph_table(28, min_fonts=5, font_dirs=CM, cache_dir=cache)
    assert table.split_rule == "character" and set(table.scripts) == {"LATIN"}
    assert set(table.splits) == set(glyphs.SPLITS)
    counts = np.bincount(table.labels, minlength=len(table.chars))
    assert counts.min() >= 5
    assert "o" not in table.chars or "O" not in table.chars  # case pair identical once cropped


def test_script_split_is_disjoint_with_enough_instances_and_ink(serif_table, cache):
    t = serif_table
    assert t.split_rule == "script"
    for script, split in zip(t.scripts, t.splits):
        assert split == glyphs.SCRIPT_SPLITS.get(script, split)
    datasets = {s: glyphs.load_glyphs(s, 28, min_fonts=4, font_dirs=SERIF, cache_dir=cache) for s in glyphs.SPLITS}
    names = [set(d.class_names) for d in datasets.values()]
    assert sum(len(n) for n in names) == len(set.union(*names)) == len(t.chars)
    for d in datasets.values():
        assert d.num_classes >= 20 and d.images.dtype == torch.uint8 and d.images.shape[1:] == (1, 28, 28)
        assert int(torch.bincount(d.labels).min()) >= 4
        assert bool((d.images.flatten(1).amax(1) >= 128).all())  # every image has ink
    train = datasets["background"]
    assert "LATIN CAPITAL LETTER A" in train.class_names and set(train.groups) == {"LATIN", "CYRILLIC"}
    test_names = set(datasets["evaluation"].class_names)
    assert "GREEK CAPITAL LETTER ALPHA" not in test_names  # a copy of Latin A, dropped
    assert "GREEK SMALL LETTER ALPHA" in test_names
    assert "LATIN SMALL LETTER O" not in train.class_names
    assert glyphs.load_glyphs("train", 28, 4, SERIF, cache).num_classes == train.num_classes
    with pytest.raises(ValueError):
        glyphs.load_glyphs("nope", 28, 4, SERIF, cache)


def test_cache_round_trips_and_is_rebuilt_when_damaged(serif_table, cache):
    files = list(cache.glob("glyphs-28px-min4-*.npz"))
    assert len(files) == 1
    again = glyphs.glyph_table(28, 4, SERIF, cache)
    assert again.images.tobytes() == serif_table.images.tobytes()
    assert np.array_equal(again.labels, serif_table.labels) and again.chars == serif_table.chars
    fresh = glyphs.build_glyph_table(28, 4, SERIF)
    assert fresh.images.tobytes() == serif_table.images.tobytes()  # rendering is deterministic
    files[0].write_bytes(b"not a zip")
    rebuilt = glyphs.glyph_table(28, 4, SERIF, cache)
    assert rebuilt.images.tobytes() == serif_table.images.tobytes()
    assert not list(cache.glob("*.tmp"))


def test_inventory_reports_counts(serif_table, cache):
    inv = glyphs.glyph_inventory(28, 4, SERIF, cache)
    assert inv["total"]["classes"] == len(serif_table.chars)
    assert sum(e["classes"] for e in inv["splits"].values()) == inv["total"]["classes"]
    assert "ARMENIAN" in glyphs.format_inventory(inv)


def test_default_cache_location(monkeypatch, tmp_path):
    monkeypatch.setenv("METABRIDGE_CACHE", str(tmp_path))
    assert glyphs.cache_root() == tmp_path / "glyphs"
    monkeypatch.delenv("METABRIDGE_CACHE")
    assert glyphs.cache_root() == Path(os.path.expanduser("~")) / ".cache" / "metabridge" / "glyphs"
