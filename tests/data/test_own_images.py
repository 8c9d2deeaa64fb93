"""One's own images as a dataset (metabridge.data.image_folder): a folder of class folders or an
.npz, split by class (from a file or seeded), uint8 cached, with errors that name the fix.

Fixtures are tiny PNGs written with Pillow into tmp_path; every pixel of image j of class c
holds 10 * c + j, so a test can tell from the pixels alone which class an image came from.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from metabridge.data import image_folder
from metabridge.data.image_folder import load_image_folder, seeded_class_split, split_counts
from metabridge.data.registry import available_datasets, load_dataset, register_dataset, unregister_dataset
from metabridge.data.spec import DatasetFormatError


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """Keep default-location caches out of the home directory."""
    monkeypatch.setenv("METABRIDGE_CACHE", str(tmp_path / "default-cache"))


def class_names(n: int) -> list[str]:
    return [f"class_{c:02d}" for c in range(n)]


def make_folder(
    root: Path,
    n_classes: int = 5,
    per_class: int = 3,
    size: tuple[int, int] = (8, 8),
    mode: str = "L",
    suffix: str = ".png",
) -> Path:
    """ROOT/class_CC/img_J.png, every pixel 10 * C + J (W x H = size)."""
    for c, name in enumerate(class_names(n_classes)):
        (root / name).mkdir(parents=True)
        for j in range(per_class):
            value = 10 * c + j
            Image.new(mode, size, value if mode == "L" else (value, value + 1, value + 2)).save(
                root / name / f"img_{j}{suffix}"
            )
    return root


def pixel_class(ds) -> torch.Tensor:
    """The fixture class each image was drawn from, read off its pixels."""
    return ds.images[:, 0, 0, 0].long() // 10


def names_of(ds) -> list[str]:
    return [ds.class_names[y] for y in ds.labels.tolist()]


# ----------------------------------------------------------------------------- folders


def test_folder_loads_every_class_with_right_counts_and_labels(tmp_path):
    root = make_folder(tmp_path / "imgs", n_classes=5, per_class=3)
    ds = load_image_folder(root, "all", cache_dir=tmp_path / "c")
    assert ds.images.shape == (15, 1, 8, 8) and ds.images.dtype == torch.uint8
    assert ds.class_names == class_names(5)  # sorted folder names
    assert torch.bincount(ds.labels).tolist() == [3] * 5
    assert torch.equal(pixel_class(ds), ds.labels)  # each label is its folder's
    assert (ds.images[:, 0, 0, 0] % 10).tolist() == [0, 1, 2] * 5  # files in sorted order within a class
    parts = {s: load_image_folder(root, s, cache_dir=tmp_path / "c") for s in ("train", "val", "validation", "test")}
    assert [parts[s].num_classes for s in ("train", "val", "test")] == list(split_counts(5)) == [3, 1, 1]
    assert sum(len(parts[s]) for s in ("train", "val", "test")) == 15
    assert parts["val"].class_names == parts["validation"].class_names
    for s in ("train", "val", "test"):
        ds = parts[s]
        assert torch.bincount(ds.labels).tolist() == [3] * ds.num_classes  # relabelled 0..K-1
        assert [int(n[-2:]) for n in names_of(ds)] == pixel_class(ds).tolist()
        assert ds.name == f"imgs-{s}"


def test_class_split_is_disjoint_covering_and_seeded(tmp_path):
    root = make_folder(tmp_path / "imgs", n_classes=12, per_class=2)

    def split(seed):
        return {
            s: load_image_folder(root, s, split_seed=seed, cache_dir=tmp_path / "c").class_names
            for s in ("train", "val", "test")
        }

    a = split(0)
    assert (
        not set(a["train"]) & set(a["val"])
        and not set(a["train"]) & set(a["test"])
        and not set(a["val"]) & set(a["test"])
    )
    assert sorted(a["train"] + a["val"] + a["test"]) == class_names(12)
    assert [len(a[s]) for s in ("train", "val", "test")] == [8, 2, 2]
    assert split(0) == a  # same seed, same split
    assert split(1) != a  # another seed, another split
    assert seeded_class_split(class_names(12)[::-1], 0) == a  # from the names, not their listing order
    custom = {
        s: load_image_folder(root, s, fractions=(0.5, 0.25, 0.25), cache_dir=tmp_path / "c").num_classes
        for s in ("train", "val", "test")
    }
    assert custom == {"train": 6, "val": 3, "test": 3}


def test_split_counts_give_every_split_a_class():
    assert split_counts(3) == (1, 1, 1) and split_counts(100) == (64, 16, 20)
    for n in range(3, 60):
        counts = split_counts(n)
        assert sum(counts) == n and min(counts) >= 1
    with pytest.raises(ValueError, match="at least 3"):
        split_counts(2)


def test_split_file_is_honoured_and_checked(tmp_path):
    root = make_folder(tmp_path / "imgs", n_classes=6, per_class=2)
    wanted = {"train": ["class_05", "class_00"], "validation": ["class_02"], "test": ["class_04", "class_01"]}
    (root / "splits.json").write_text(json.dumps(wanted))
    got = {s: load_image_folder(root, s, cache_dir=tmp_path / "c") for s in ("train", "val", "test")}
    assert got["train"].class_names == ["class_00", "class_05"]  # listed classes, sorted
    assert got["val"].class_names == ["class_02"] and got["test"].class_names == ["class_01", "class_04"]
    assert [int(n[-2:]) for n in names_of(got["train"])] == pixel_class(got["train"]).tolist()
    # an explicit split_file wins over the one beside the data
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"train": ["class_03"], "val": ["class_04"], "test": ["class_05"]}))
    assert load_image_folder(root, "train", split_file=other, cache_dir=tmp_path / "c").class_names == ["class_03"]
    for bad, match in (
        ({"train": ["class_00", "nope"], "val": [], "test": []}, "do not exist: \\['nope'\\]"),
        ({"train": ["class_00"], "val": ["class_00"], "test": ["class_01"]}, "'class_00' is listed in both"),
        ({"train": ["class_00"], "holdout": ["class_01"]}, "unknown split 'holdout'"),
        ({"train": "class_00"}, "must be a list"),
    ):
        (root / "splits.json").write_text(json.dumps(bad))
        with pytest.raises(DatasetFormatError, match=match):
            load_image_folder(root, "train", cache_dir=tmp_path / "c")
    (root / "splits.json").write_text(json.dumps({"train": ["class_00"], "test": ["class_01"]}))
    with pytest.raises(DatasetFormatError, match="no classes for 'val'"):
        load_image_folder(root, "val", cache_dir=tmp_path / "c")
    (root / "splits.json").write_text("{not json")
    with pytest.raises(DatasetFormatError, match="not valid JSON"):
        load_image_folder(root, "train", cache_dir=tmp_path / "c")
    with pytest.raises(FileNotFoundError, match="missing.json"):
        load_image_folder(root, "train", split_file=tmp_path / "missing.json", cache_dir=tmp_path / "c")


def test_too_few_classes_for_a_seeded_split(tmp_path):
    root = make_folder(tmp_path / "imgs", n_classes=2, per_class=2)
    with pytest.raises(DatasetFormatError, match="needs at least 3.*splits.json"):
        load_image_folder(root, "train", cache_dir=tmp_path / "c")
    (root / "splits.json").write_text(json.dumps({"train": ["class_00"], "val": ["class_01"], "test": ["class_01"]}))
    with pytest.raises(DatasetFormatError, match="listed in both"):
        load_image_folder(root, "train", cache_dir=tmp_path / "c")
    (root / "splits.json").write_text(json.dumps({"train": ["class_00"], "test": ["class_01"]}))
    assert load_image_folder(root, "test", cache_dir=tmp_path / "c").class_names == ["class_01"]


def test_grayscale_rgb_and_forced_channels(tmp_path):
    gray = make_folder(tmp_path / "gray", n_classes=3, per_class=2)
    assert load_image_folder(gray, "all", cache_dir=tmp_path / "c").images.shape[1] == 1
    rgb3 = load_image_folder(gray, "all", channels=3, cache_dir=tmp_path / "c")
    assert rgb3.images.shape[1] == 3 and torch.equal(rgb3.images[:, 0], rgb3.images[:, 2])

    mixed = make_folder(tmp_path / "mixed", n_classes=3, per_class=2)
    Image.new("RGB", (8, 8), (200, 100, 50)).save(mixed / "class_01" / "zz_color.jpg")
    Image.new("P", (8, 8), 0).save(mixed / "class_02" / "zz_palette.gif")  # a gray palette: counts as gray
    ds = load_image_folder(mixed, "all", cache_dir=tmp_path / "c")
    assert ds.images.shape == (8, 3, 8, 8)  # one color image makes the whole set RGB
    color = ds.images[ds.labels == 1][-1]
    assert abs(int(color[0, 0, 0]) - 200) <= 3 and abs(int(color[2, 0, 0]) - 50) <= 3  # channel order R, G, B
    first = ds.images[0]
    assert first[0, 0, 0] == first[1, 0, 0] == first[2, 0, 0] == 0  # a gray image repeated in R, G, B
    luma = load_image_folder(mixed, "all", channels=1, cache_dir=tmp_path / "c")
    assert luma.images.shape == (8, 1, 8, 8)
    r, g, b = (int(v) for v in color[:, 0, 0])
    assert int(luma.images[luma.labels == 1][-1, 0, 0, 0]) == (r * 299 + g * 587 + b * 114 + 500) // 1000

    only_palette = tmp_path / "pal"
    for c in range(3):
        (only_palette / f"k{c}").mkdir(parents=True)
        im = Image.new("P", (4, 4), 1)
        im.putpalette([0, 0, 0, 90, 90, 90] + [0] * 762)
        im.save(only_palette / f"k{c}" / "a.png")
    pal = load_image_folder(only_palette, "all", cache_dir=tmp_path / "c")
    assert pal.images.shape == (3, 1, 4, 4) and (pal.images == 90).all()
    with pytest.raises(ValueError, match="channels must be 1"):
        load_image_folder(gray, "all", channels=2, cache_dir=tmp_path / "c")


def test_every_common_format_and_16_bit_images_are_read(tmp_path):
    root = tmp_path / "formats"
    for k, suffix in enumerate((".png", ".JPG", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")):
        (root / f"c{k}").mkdir(parents=True)
        Image.new("L", (6, 6), 120).save(
            root / f"c{k}" / f"x{suffix}", **({"lossless": True} if suffix == ".webp" else {})
        )
    (root / "deep").mkdir()
    Image.fromarray(np.full((6, 6), 120 * 256 + 7, dtype=np.uint16)).save(root / "deep" / "x.png")  # 16-bit
    ds = load_image_folder(root, "all", cache_dir=tmp_path / "c")
    assert ds.num_classes == 9 and ds.images.shape == (9, 1, 6, 6)  # WebP stores gray as RGB: still gray
    assert (ds.images.float() - 120).abs().max() <= 2  # JPEG is lossy; 16-bit keeps the high byte


def test_mixed_sizes_need_image_size_and_resizing_works(tmp_path):
    root = make_folder(tmp_path / "imgs", n_classes=3, per_class=2, size=(8, 8))
    Image.new("L", (12, 10), 77).save(root / "class_02" / "zz_big.png")
    with pytest.raises(
        DatasetFormatError, match="different sizes.*img_0.png is 8x8.*zz_big.png is 12x10.*--image-size"
    ):
        load_image_folder(root, "all", cache_dir=tmp_path / "c")
    ds = load_image_folder(root, "all", image_size=5, cache_dir=tmp_path / "c")
    assert ds.images.shape == (7, 1, 5, 5)
    assert torch.equal(pixel_class(ds)[:-1], ds.labels[:-1])  # flat images stay flat through the resize
    assert int(ds.images[ds.labels == 2][-1].float().mean().round()) == 77
    with pytest.raises(ValueError, match="image_size must be a positive int"):
        load_image_folder(root, "all", image_size=0, cache_dir=tmp_path / "c")


def test_empty_class_folder_is_named(tmp_path):
    root = make_folder(tmp_path / "imgs", n_classes=3, per_class=2)
    (root / "zebra").mkdir()
    (root / "zebra" / ".DS_Store").write_bytes(b"\0\0")  # hidden files do not count as images
    with pytest.raises(DatasetFormatError, match="class folder .*zebra.*holds no images"):
        load_image_folder(root, "all", cache_dir=tmp_path / "c")
    (root / "zebra" / "nested").mkdir()
    with pytest.raises(DatasetFormatError, match="only subfolders \\(nested\\)"):
        load_image_folder(root, "all", cache_dir=tmp_path / "c")


def test_corrupt_and_unreadable_files_are_named(tmp_path):
    root = make_folder(tmp_path / "imgs", n_classes=3, per_class=2)
    (root / "class_01" / "broken.png").write_bytes(b"this is not a png")
    with pytest.raises(DatasetFormatError, match="cannot read the image .*class_01.broken\\.png"):
        load_image_folder(root, "all", cache_dir=tmp_path / "c")
    (root / "class_01" / "broken.png").unlink()
    good = (root / "class_02" / "img_0.png").read_bytes()
    (root / "class_02" / "cut.png").write_bytes(good[: len(good) // 2])  # truncated
    with pytest.raises(DatasetFormatError, match="cut\\.png"):
        load_image_folder(root, "all", cache_dir=tmp_path / "c")


def test_hidden_and_non_image_files_are_ignored(tmp_path):
    root = make_folder(tmp_path / "imgs", n_classes=3, per_class=2)
    (root / ".thumbnails").mkdir()
    Image.new("L", (8, 8), 1).save(root / ".thumbnails" / "t.png")
    (root / "__MACOSX").mkdir()
    (root / "class_00" / "._img_0.png").write_bytes(b"AppleDouble junk")
    (root / "class_00" / "notes.txt").write_text("not an image")
    (root / "README.md").write_text("about these images")
    ds = load_image_folder(root, "all", cache_dir=tmp_path / "c")
    assert ds.class_names == class_names(3) and len(ds) == 6


def test_no_classes_and_bad_paths(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetFormatError, match="no class folders"):
        load_image_folder(tmp_path / "empty", "train", cache_dir=tmp_path / "c")
    flat = tmp_path / "flat"
    flat.mkdir()
    Image.new("L", (4, 4)).save(flat / "a.png")
    with pytest.raises(DatasetFormatError, match="no class folders \\(it holds 1 images directly\\)"):
        load_image_folder(flat, "train", cache_dir=tmp_path / "c")
    with pytest.raises(FileNotFoundError, match="no image folder"):
        load_image_folder(tmp_path / "absent", "train")
    (tmp_path / "x.zip").write_bytes(b"PK")
    with pytest.raises(ValueError, match="neither a folder"):
        load_image_folder(tmp_path / "x.zip", "train")
    root = make_folder(tmp_path / "imgs", n_classes=3, per_class=1)
    with pytest.raises(ValueError, match="unknown split"):
        load_image_folder(root, "holdout", cache_dir=tmp_path / "c")
    with pytest.raises(ValueError, match="fractions must be three positive numbers"):
        load_image_folder(root, "train", fractions=(0.5, 0.5, 0.5), cache_dir=tmp_path / "c")


# ----------------------------------------------------------------------------- npz


def encoded_images(labels: np.ndarray, channels: int | None) -> np.ndarray:
    """Images whose pixels hold their label's rank among the sorted distinct labels, times 10."""
    rank = np.searchsorted(np.unique(labels), labels)
    shape = (len(labels), 4, 5) if channels is None else (len(labels), channels, 4, 5)
    return (np.broadcast_to((rank * 10).reshape((-1,) + (1,) * (len(shape) - 1)), shape)).astype(np.uint8).copy()


@pytest.mark.parametrize("channels", [None, 1, 3])
def test_npz_of_both_shapes_maps_labels_to_sorted_classes(tmp_path, channels):
    labels = np.array([70, 3, 70, 10, 3, 10, 3, 70, 10])  # any values, unsorted, interleaved
    path = tmp_path / "mine.npz"
    np.savez(path, images=encoded_images(labels, channels), labels=labels)
    ds = load_image_folder(path, "all", cache_dir=tmp_path / "c")
    assert ds.class_names == ["3", "10", "70"]  # numeric order, not string order
    assert ds.images.shape == (9, 1 if channels in (None, 1) else 3, 4, 5)
    assert torch.equal(pixel_class(ds), ds.labels)
    assert ds.labels.tolist() == [2, 0, 2, 1, 0, 1, 0, 2, 1] and ds.name == "mine-all"
    (tmp_path / "mine.splits.json").write_text(json.dumps({"train": [70, "3"], "val": ["10"], "test": ["10"]}))
    with pytest.raises(DatasetFormatError, match="listed in both"):
        load_image_folder(path, "train", cache_dir=tmp_path / "c")
    (tmp_path / "mine.splits.json").write_text(json.dumps({"train": [70, "3"], "val": ["10"], "test": []}))
    train = load_image_folder(path, "train", cache_dir=tmp_path / "c")
    assert train.class_names == ["3", "70"] and len(train) == 6
    resized = load_image_folder(path, "all", image_size=3, channels=3, cache_dir=tmp_path / "c")
    assert resized.images.shape == (9, 3, 3, 3) and torch.equal(pixel_class(resized), resized.labels)


def test_npz_with_string_labels(tmp_path):
    labels = np.array(["dog", "cat", "dog", "emu", "cat", "emu"])
    np.savez(tmp_path / "s.npz", images=encoded_images(labels, None), labels=labels)
    ds = load_image_folder(tmp_path / "s.npz", "all", cache_dir=tmp_path / "c")
    assert ds.class_names == ["cat", "dog", "emu"] and torch.equal(pixel_class(ds), ds.labels)


@pytest.mark.parametrize(
    "arrays, match",
    [
        ({"images": np.zeros((4, 1, 3, 3), np.uint8)}, "no 'labels' array"),
        ({"pixels": np.zeros((4, 3, 3), np.uint8), "y": np.zeros(4)}, "no 'images' or 'labels'"),
        ({"images": np.zeros((4, 1, 3, 3), np.float32), "labels": np.arange(4)}, "float32, expected uint8"),
        ({"images": np.zeros((4, 3), np.uint8), "labels": np.arange(4)}, "expected \\[N, C, H, W\\] or \\[N, H, W\\]"),
        ({"images": np.zeros((4, 8, 8, 3), np.uint8), "labels": np.arange(4)}, "channel-last"),
        (
            {"images": np.zeros((4, 1, 3, 3), np.uint8), "labels": np.arange(5)},
            "labels have shape \\(5,\\) for 4 images",
        ),
        ({"images": np.zeros((4, 1, 3, 3), np.uint8), "labels": np.arange(4) + 0.5}, "labels are float64"),
        ({"images": np.zeros((0, 1, 3, 3), np.uint8), "labels": np.arange(0)}, "holds no images"),
    ],
)
def test_npz_format_errors_name_the_problem(tmp_path, arrays, match):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(DatasetFormatError, match=match):
        load_image_folder(tmp_path / "bad.npz", "all", cache_dir=tmp_path / "c")


def test_npz_that_is_not_an_archive(tmp_path):
    (tmp_path / "junk.npz").write_bytes(b"garbage, not a zip")
    with pytest.raises(DatasetFormatError, match="cannot read .*junk.npz"):
        load_image_folder(tmp_path / "junk.npz", "all", cache_dir=tmp_path / "c")
    np.save(tmp_path / "single.npy", np.zeros(3))
    os.replace(tmp_path / "single.npy", tmp_path / "single.npz")
    with pytest.raises(DatasetFormatError, match="single array"):
        load_image_folder(tmp_path / "single.npz", "all", cache_dir=tmp_path / "c")
    np.savez(
        tmp_path / "obj.npz", images=np.zeros((2, 3, 3), np.uint8), labels=np.array([{"a": 1}, None], dtype=object)
    )
    with pytest.raises(DatasetFormatError, match="not Python objects"):
        load_image_folder(tmp_path / "obj.npz", "all", cache_dir=tmp_path / "c")


# ----------------------------------------------------------------------------- cache


@pytest.fixture
def decode_calls(monkeypatch):
    calls: list[str] = []
    real = image_folder._decode_image

    def counting(path, image_size):
        calls.append(Path(path).name)
        return real(path, image_size)

    monkeypatch.setattr(image_folder, "_decode_image", counting)
    return calls


def test_cache_is_reused_and_invalidated_when_files_change(tmp_path, decode_calls):
    root = make_folder(tmp_path / "imgs", n_classes=4, per_class=2)
    cache = tmp_path / "c"
    first = load_image_folder(root, "all", cache_dir=cache)
    assert len(decode_calls) == 8
    again = {s: load_image_folder(root, s, cache_dir=cache) for s in ("all", "train", "val", "test")}
    assert len(decode_calls) == 8  # every later load, of any split, comes from the cache
    assert torch.equal(again["all"].images, first.images) and again["all"].class_names == first.class_names
    assert len(list(cache.glob("*.pt"))) == 1

    target = root / "class_01" / "img_0.png"
    st = target.stat()
    Image.new("L", (8, 8), 99).save(target)  # same size on disk; only the pixels and the time change
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    changed = load_image_folder(root, "all", cache_dir=cache)
    assert len(decode_calls) == 16  # decoded again
    assert int(changed.images[2, 0, 0, 0]) == 99
    assert len(list(cache.glob("*.pt"))) == 1  # the outdated cache was removed

    Image.new("L", (8, 8), 50).save(root / "class_03" / "img_9.png")  # a new file
    assert len(load_image_folder(root, "all", cache_dir=cache)) == 9 and len(decode_calls) == 25
    (root / "class_03" / "img_9.png").unlink()  # a removed file
    assert len(load_image_folder(root, "all", cache_dir=cache)) == 8 and len(decode_calls) == 33

    resized = load_image_folder(root, "all", image_size=4, cache_dir=cache)  # other options: a cache of its own
    assert resized.images.shape[-1] == 4 and len(decode_calls) == 41
    load_image_folder(root, "all", cache_dir=cache)
    load_image_folder(root, "all", image_size=4, cache_dir=cache)
    assert len(decode_calls) == 41 and len(list(cache.glob("*.pt"))) == 2


def test_npz_cache_is_invalidated_when_the_file_changes(tmp_path, monkeypatch):
    calls = []
    real = image_folder._read_npz
    monkeypatch.setattr(image_folder, "_read_npz", lambda *a: (calls.append(1), real(*a))[1])
    labels = np.arange(6) % 3
    path = tmp_path / "d.npz"
    np.savez(path, images=encoded_images(labels, 1), labels=labels)
    load_image_folder(path, "all", cache_dir=tmp_path / "c")
    load_image_folder(path, "train", cache_dir=tmp_path / "c")
    assert len(calls) == 1
    np.savez(path, images=encoded_images(labels, 1) + 1, labels=labels)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    assert int(load_image_folder(path, "all", cache_dir=tmp_path / "c").images[0, 0, 0, 0]) == 1
    assert len(calls) == 2


def test_default_cache_location_follows_metabridge_cache(tmp_path, decode_calls):
    root = make_folder(tmp_path / "imgs", n_classes=3, per_class=1)
    load_image_folder(root, "all")
    load_image_folder(root, "all")
    assert len(decode_calls) == 3
    assert len(list((tmp_path / "default-cache" / "images").glob("imgs-*.pt"))) == 1


# ----------------------------------------------------------------------------- registry


def test_load_dataset_routes_paths_to_the_image_loader(tmp_path):
    root = make_folder(tmp_path / "imgs", n_classes=5, per_class=2)
    direct = load_image_folder(root, "train", image_size=4)
    for name in (str(root), root):
        routed = load_dataset(name, "ignored-root", "train", download=True, image_size=4)
        assert torch.equal(routed.images, direct.images) and routed.class_names == direct.class_names
    labels = np.arange(6) % 3
    np.savez(tmp_path / "x.npz", images=encoded_images(labels, None), labels=labels)
    assert load_dataset(str(tmp_path / "x.npz"), "r", "all").class_names == ["0", "1", "2"]
    with pytest.raises(FileNotFoundError, match="no folder or .npz file at"):
        load_dataset(str(tmp_path / "typo"), "r", "train")
    with pytest.raises(ValueError, match="is a file but not an .npz"):
        load_dataset(str(root / "class_00" / "img_0.png"), "r", "train")
    with pytest.raises(
        ValueError, match="no such path: no folder or .npz file at .*nonesuch, and no dataset named 'nonesuch'"
    ):
        load_dataset("nonesuch", "r", "train")


def test_registered_name_wins_over_a_folder_of_that_name(tmp_path, monkeypatch):
    make_folder(tmp_path / "glyphs", n_classes=3, per_class=1)
    monkeypatch.chdir(tmp_path)
    seen = []

    @register_dataset("glyphs", replace=True)  # a built-in name: replacing it is explicit
    def fake(root, split, download=False, **kw):
        seen.append(split)
        return load_image_folder(tmp_path / "glyphs", "all")

    try:
        load_dataset("glyphs", "r", "val")
        assert seen == ["val"]
        assert load_dataset("./glyphs", "r", "all").num_classes == 3 and seen == ["val"]  # ./ means the folder
    finally:
        unregister_dataset("glyphs")


def test_register_dataset_directly_or_as_decorator_and_unregister(tmp_path):
    root = make_folder(tmp_path / "imgs", n_classes=3, per_class=1)
    calls = []

    def loader(r, split, download=False, **kw):
        calls.append((r, split, download, kw))
        return load_image_folder(root, "all")

    assert register_dataset("Toy-Direct", loader) is loader
    try:

        @register_dataset("toy_deco")
        def deco(r, split, download=False, **kw):
            return load_image_folder(root, split)

        assert callable(deco) and deco.__name__ == "deco"  # the decorator returns the function
        assert {"toy-direct", "toy_deco"} <= set(available_datasets())
        assert load_dataset("TOY-DIRECT", "R", "test", download=True, image_size=9).num_classes == 3
        assert calls == [("R", "test", True, {"image_size": 9})]
        assert load_dataset("toy_deco", "R", "train").num_classes == 1
    finally:
        unregister_dataset("toy-direct")
        unregister_dataset("toy_deco")
    assert "toy-direct" not in available_datasets() and "toy_deco" not in available_datasets()
    with pytest.raises(ValueError, match="not registered"):
        unregister_dataset("toy_deco")
    with pytest.raises(ValueError, match="built-in"):
        unregister_dataset("omniglot")
    with pytest.raises(ValueError, match="non-empty string"):
        register_dataset("", loader)
    with pytest.raises(TypeError, match="callable"):
        register_dataset("x", 3)  # type: ignore[arg-type]
    assert "x" not in available_datasets()


def test_a_split_too_small_for_n_way_names_the_split_file(tmp_path):
    from metabridge.tasks.episodes import EpisodeSampler

    root = make_folder(tmp_path / "imgs", n_classes=10, per_class=3)
    val = load_image_folder(root, "val", cache_dir=tmp_path / "c")
    with pytest.raises(ValueError, match=r"fewer than n_way=5.*or write .*splits\.json .*seeded shuffle of 10 classes"):
        EpisodeSampler(val, n_way=5, k_shot=1, q_query=1)
    (root / "splits.json").write_text(
        json.dumps(
            {
                "train": [f"class_{i:02d}" for i in range(6)],
                "val": ["class_06", "class_07"],
                "test": ["class_08", "class_09"],
            }
        )
    )
    val = load_image_folder(root, "val", cache_dir=tmp_path / "c")
    with pytest.raises(ValueError, match=r"or list more classes under 'val' in .*splits\.json"):
        EpisodeSampler(val, n_way=5, k_shot=1, q_query=1)


def test_a_misspelt_folder_says_no_such_path_and_a_misspelt_name_suggests_the_dataset(tmp_path, monkeypatch):
    from metabridge.data import load_dataset

    make_folder(tmp_path / "my_letters", n_classes=5, per_class=3)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=r"^no such path: no folder or .npz file at .*my_leters, and no dataset"):
        load_dataset("my_leters", tmp_path, "train")
    with pytest.raises(ValueError, match=r"^unknown dataset 'omniglt'; did you mean 'omniglot'\? \(and no folder"):
        load_dataset("omniglt", tmp_path, "train")
