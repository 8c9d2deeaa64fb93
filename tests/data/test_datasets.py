"""Standard few-shot datasets: download -> verify -> extract -> decode -> cache, on tiny
fixture archives in the real distributed formats served from 127.0.0.1."""

from __future__ import annotations

import hashlib
import io
import pickle
import sys
import tarfile
import urllib.request
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from metabridge.data import cifar100, cifar_fs, fc100, mini_imagenet, omniglot, tiered_imagenet
from metabridge.data.download import ChecksumError, HTMLPageError, RemoteFile
from metabridge.data.registry import available_datasets, dataset_spec, load_dataset
from metabridge.data.safe_pickle import UnsafePickleError, loads_pickle
from metabridge.data.spec import DatasetFormatError

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "support"))
from fewshot_server import FileServer  # noqa: E402


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


@pytest.fixture
def server():
    s = FileServer().start()
    yield s
    s.stop()


def no_network(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("network used although the cache exists")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)


# ------------------------------------------------------------------------- Omniglot

OMNI_LAYOUT = {"images_background": ["Alpha_A", "Beta_B", "Gamma_C"], "images_evaluation": ["Delta_D", "Eps_E"]}


def omniglot_zip(archive: str) -> bytes:
    """Lake's layout: ARCHIVE/<alphabet>/characterNN/<id>_<drawer>.png, 105x105 1-bit, ink black."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for a, alpha in enumerate(OMNI_LAYOUT[archive]):
            for c in range(2):
                for d in range(20):
                    im = Image.new("1", (105, 105), 1)
                    x0 = 5 + 40 * c + 8 * a  # position encodes the character: an L-shape, not rotation-symmetric
                    ImageDraw.Draw(im).rectangle([x0, 10 + d, x0 + 12, 80], fill=0)
                    ImageDraw.Draw(im).rectangle([x0, 70, x0 + 40, 80], fill=0)
                    png = io.BytesIO()
                    im.save(png, "PNG")
                    zf.writestr(
                        f"{archive}/{alpha}/character{c + 1:02d}/{a * 2 + c:04d}_{d + 1:02d}.png", png.getvalue()
                    )
    return buf.getvalue()


@pytest.fixture
def omni(server, monkeypatch):
    archives = {}
    for name, (n_alpha, n_char) in {"images_background": (3, 6), "images_evaluation": (2, 4)}.items():
        data = omniglot_zip(name)
        server.files[f"{name}.zip"] = data
        r = RemoteFile(
            f"{name}.zip",
            (server.url(f"{name}.zip"),),
            sha256=sha(data),
            md5=hashlib.md5(data).hexdigest(),
            size=len(data),
        )
        archives[name] = (r, n_alpha, n_char)
    monkeypatch.setattr(omniglot, "SPEC", replace(omniglot.SPEC, archives=archives, n_train=6, n_val=2))
    return server


def test_omniglot_download_extract_decode(omni, tmp_path):
    ds = omniglot.load_omniglot(tmp_path, "background", download=True)
    assert ds.images.shape == (120, 1, 28, 28) and ds.images.dtype == torch.uint8
    assert ds.num_classes == 6 and torch.bincount(ds.labels).tolist() == [20] * 6
    assert ds.class_names[0] == "Alpha_A/character01" and ds.groups[:3] == ["Alpha_A", "Alpha_A", "Beta_B"]
    img = ds.images.float()
    assert img.mean() < 80 and img.amax() > 200  # ink is bright on a dark background
    # the ink's horizontal position encodes the character: class 1 lies right of class 0
    cols = torch.arange(28).float()
    cx = [(img[ds.labels == c].mean(0)[0].sum(0) * cols).sum() / img[ds.labels == c].mean(0)[0].sum() for c in (0, 1)]
    assert cx[1] > cx[0] + 5
    assert (tmp_path / "omniglot" / "images_background" / "Alpha_A" / "character01").is_dir()
    assert not list((tmp_path / "omniglot").glob(".*extracting*"))


def test_omniglot_vinyals_split_with_rotations(omni, tmp_path):
    splits = {s: omniglot.load_omniglot(tmp_path, s, download=True) for s in ("train", "val", "test", "trainval")}
    assert [splits[s].num_classes for s in ("train", "val", "test", "trainval")] == [24, 8, 8, 32]
    base = {s: {n.rsplit("/", 1)[0] for n in splits[s].class_names} for s in splits}
    assert not base["train"] & base["test"] and not base["val"] & base["test"] and not base["train"] & base["val"]
    assert base["train"] | base["val"] | base["test"] == {
        f"{a}/character0{c}" for v in OMNI_LAYOUT.values() for a in v for c in (1, 2)
    }
    ds = splits["train"]
    k = ds.class_names.index(ds.class_names[0].replace("rot000", "rot090"))
    assert torch.equal(ds.images[ds.labels == k], torch.rot90(ds.images[ds.labels == 0], 1, dims=(2, 3)))
    assert not torch.equal(ds.images[ds.labels == k], ds.images[ds.labels == 0])
    plain = omniglot.load_omniglot(tmp_path, "train", rotations=False)
    assert plain.num_classes == 6
    assert omniglot.load_omniglot(tmp_path, "evaluation").num_classes == 4


def test_omniglot_second_load_uses_cache_without_network(omni, tmp_path, monkeypatch):
    first = omniglot.load_omniglot(tmp_path, "background", download=True)
    omni.stop()
    no_network(monkeypatch)
    for p in (tmp_path / "omniglot").glob("images_background*"):  # raw zip and folder gone
        if p.is_dir():
            import shutil

            shutil.rmtree(p)
        elif p.suffix == ".zip":
            p.unlink()
    again = omniglot.load_omniglot(tmp_path, "background", download=True)
    assert torch.equal(first.images, again.images) and first.class_names == again.class_names


def test_omniglot_html_page_and_checksum_errors(omni, tmp_path, monkeypatch):
    omni.modes["images_background.zip"] = "html"
    with pytest.raises(HTMLPageError, match=str(tmp_path / "omniglot" / "images_background.zip")):
        omniglot.load_omniglot(tmp_path, "background", download=True)
    omni.modes.clear()
    r, a, c = omniglot.SPEC.archives["images_background"]
    bad = dict(omniglot.SPEC.archives, images_background=(replace(r, sha256="1" * 64), a, c))
    monkeypatch.setattr(omniglot, "SPEC", replace(omniglot.SPEC, archives=bad))
    with pytest.raises(ChecksumError, match="sha256"):
        omniglot.load_omniglot(tmp_path, "background", download=True)
    assert not list((tmp_path / "omniglot").iterdir())  # no cache, no folder, no bad zip


def test_omniglot_wrong_counts_are_reported(omni, tmp_path, monkeypatch):
    r, _, _ = omniglot.SPEC.archives["images_background"]
    wrong = dict(omniglot.SPEC.archives, images_background=(r, 30, 964))
    monkeypatch.setattr(omniglot, "SPEC", replace(omniglot.SPEC, archives=wrong))
    with pytest.raises(DatasetFormatError, match="found 3 alphabets and 6 characters.*expected 30 and 964"):
        omniglot.load_omniglot(tmp_path, "background", download=True)
    assert not (tmp_path / "omniglot" / "images_background_28px.pt").exists()


def test_missing_files_without_download_name_the_fix(tmp_path):
    for name in ("omniglot", "mini_imagenet", "tiered_imagenet", "cifar_fs", "fc100"):
        with pytest.raises(FileNotFoundError, match="download=True") as e:
            load_dataset(name, tmp_path, "train")
        assert str(tmp_path) in str(e.value)


# ------------------------------------------------------------------- CIFAR-FS / FC100

FINE = sorted(c for split in cifar_fs.SPLIT_CLASSES.values() for _, c in split)
COARSE = sorted({s for split in cifar_fs.SPLIT_CLASSES.values() for s, _ in split})
PARENT = {c: s for split in cifar_fs.SPLIT_CLASSES.values() for s, c in split}


def test_split_lists_partition_cifar100():
    assert len(FINE) == 100 and len(set(FINE)) == 100 and len(COARSE) == 20
    assert all(sum(p == s for p in PARENT.values()) == 5 for s in COARSE)  # CIFAR-100: 5 classes per superclass
    assert [len(cifar_fs.SPLIT_CLASSES[s]) for s in ("train", "val", "test")] == [64, 16, 20]
    supers = [set(fc100.SPLIT_SUPERCLASSES[s]) for s in ("train", "val", "test")]
    assert [len(s) for s in supers] == [12, 4, 4] and set.union(*supers) == set(COARSE)
    # FC100 by CIFAR-100 coarse index (alphabetical order): train 1-6, 9, 10, 15, 17-19; val 8, 11, 13, 16
    assert sorted(COARSE.index(s) for s in supers[1]) == [8, 11, 13, 16]
    assert sorted(COARSE.index(s) for s in supers[2]) == [0, 7, 12, 14]


def cifar_tar(n_train: int = 4, n_test: int = 2) -> bytes:
    """cifar-100-python/{train,test,meta}: bytes-keyed pickles as the official archive loads."""
    parts = {}
    for part, n in (("train", n_train), ("test", n_test)):
        fine = np.repeat(np.arange(100), n)
        idx = np.tile(np.arange(n), 100)
        order = np.random.default_rng(0).permutation(len(fine))  # official files are shuffled
        fine, idx = fine[order], idx[order]
        img = np.zeros((len(fine), 3, 32, 32), dtype=np.uint8)
        img[:, 0] = fine[:, None, None]
        img[:, 1] = idx[:, None, None] + (100 if part == "test" else 0)
        img[:, 2, :16] = 255  # top half bright: lets the resize test see structure
        coarse = [COARSE.index(PARENT[FINE[f]]) for f in fine]
        parts[part] = {
            b"filenames": [b"x.png"] * len(fine),
            b"batch_label": part.encode(),
            b"fine_labels": fine.tolist(),
            b"coarse_labels": coarse,
            b"data": img.reshape(len(fine), -1),
        }
    parts["meta"] = {
        b"fine_label_names": [c.encode() for c in FINE],
        b"coarse_label_names": [c.encode() for c in COARSE],
    }
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, d in parts.items():
            data = pickle.dumps(d, protocol=2)
            info = tarfile.TarInfo(f"cifar-100-python/{name}")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.fixture
def cifar(server, monkeypatch):
    data = cifar_tar()
    server.files["cifar-100-python.tar.gz"] = data
    arch = RemoteFile(
        "cifar-100-python.tar.gz",
        (server.url("cifar-100-python.tar.gz"),),
        sha256=sha(data),
        md5=hashlib.md5(data).hexdigest(),
        size=len(data),
    )
    monkeypatch.setattr(cifar100, "SPEC", cifar100.Cifar100Spec(arch, train_images=400, test_images=200))
    monkeypatch.setattr(cifar_fs, "SPEC", replace(cifar_fs.SPEC, images_per_class=6))
    monkeypatch.setattr(fc100, "SPEC", replace(fc100.SPEC, images_per_class=6))
    return server


def test_cifar_fs_and_fc100_from_the_cifar100_archive(cifar, tmp_path):
    seen = {}
    for s, n in (("train", 64), ("val", 16), ("test", 20)):
        ds = load_dataset("cifar_fs", tmp_path, s, download=True)
        assert ds.num_classes == n and ds.images.shape == (6 * n, 3, 32, 32)
        assert set(ds.class_names) == {c for _, c in cifar_fs.SPLIT_CLASSES[s]}
        # every image carries its original fine label in channel 0: labels were mapped right
        assert torch.equal(
            ds.images[:, 0, 0, 0].long(), torch.tensor([FINE.index(ds.class_names[y]) for y in ds.labels])
        )
        assert sorted(ds.images[:, 1, 0, 0].tolist()) == sorted(list(range(4)) * n + list(range(100, 102)) * n)
        seen[s] = set(ds.class_names)
    assert not (seen["train"] & seen["val"] or seen["train"] & seen["test"] or seen["val"] & seen["test"])
    groups = {}
    for s, n in (("train", 60), ("val", 20), ("test", 20)):
        ds = load_dataset("fc100", tmp_path, s, download=True)
        assert ds.num_classes == n and len(ds) == 6 * n
        assert torch.equal(
            ds.images[:, 0, 0, 0].long(), torch.tensor([FINE.index(ds.class_names[y]) for y in ds.labels])
        )
        assert all(PARENT[c] == g for c, g in zip(ds.class_names, ds.groups))
        groups[s] = set(ds.groups)
    assert [len(groups[s]) for s in ("train", "val", "test")] == [12, 4, 4]
    assert [p for p, _ in cifar.requests].count("cifar-100-python.tar.gz") == 1  # one download for both


def test_cifar_resize_and_cache_without_network(cifar, tmp_path, monkeypatch):
    first = load_dataset("cifar_fs", tmp_path, "test", download=True, image_size=16)
    assert first.images.shape[-2:] == (16, 16)
    assert first.images[:, 2, :7].float().mean() > 250 and first.images[:, 2, 9:].float().mean() < 5
    cifar.stop()
    no_network(monkeypatch)
    (tmp_path / "cifar100" / "cifar-100-python.tar.gz").unlink()
    again = load_dataset("cifar_fs", tmp_path, "test", download=True, image_size=16)
    assert torch.equal(first.images, again.images) and torch.equal(first.labels, again.labels)


def test_cifar_wrong_counts(cifar, tmp_path, monkeypatch):
    monkeypatch.setattr(cifar_fs, "SPEC", replace(cifar_fs.SPEC, images_per_class=600))
    with pytest.raises(DatasetFormatError, match="has 6 images, expected 600"):
        load_dataset("cifar_fs", tmp_path, "train", download=True)
    monkeypatch.setattr(cifar100, "SPEC", replace(cifar100.SPEC, train_images=50_000))
    (tmp_path / "cifar100" / "cifar100_all_32px.pt").unlink()
    with pytest.raises(DatasetFormatError, match="expected \\(50000, 3072\\)"):
        load_dataset("fc100", tmp_path, "train")


def test_truncated_cifar_archive_is_reported(cifar, tmp_path, monkeypatch):
    good = cifar.files["cifar-100-python.tar.gz"]
    (tmp_path / "cifar100").mkdir()
    (tmp_path / "cifar100" / "cifar-100-python.tar.gz").write_bytes(good[: len(good) // 2])
    with pytest.raises(ChecksumError, match="truncated"):
        load_dataset("cifar_fs", tmp_path, "train")


# --------------------------------------------------------------------- mini-ImageNet


def mini_pickle(n_classes: int, per_class: int, drop_one: bool = False) -> bytes:
    wnids = [f"n0{1000 + 7 * c:07d}" for c in range(n_classes)]
    n = n_classes * per_class
    labels = np.arange(n) % n_classes  # interleaved, as rows of different classes may be
    data = np.zeros((n, 84, 84, 3), dtype=np.uint8)
    data[..., 0] = (labels * 10)[:, None, None]
    data[..., 2] = 77
    class_dict = {w: [int(i) for i in np.flatnonzero(labels == c)] for c, w in enumerate(wnids)}
    if drop_one:
        class_dict[wnids[0]] = class_dict[wnids[0]][:-1]
        class_dict[wnids[1]].append(class_dict[wnids[1]][0])
    return pickle.dumps({"image_data": data, "class_dict": class_dict}, protocol=4)


@pytest.fixture
def mini(server, monkeypatch):
    sizes = {"train": 3, "val": 2, "test": 2}
    files = {}
    for split, r in mini_imagenet.SPEC.files.items():
        server.files[r.filename] = mini_pickle(sizes[split], 4)
        files[split] = replace(r, urls=(server.url(r.filename),))
    monkeypatch.setattr(
        mini_imagenet, "SPEC", replace(mini_imagenet.SPEC, files=files, classes=sizes, images_per_class=4)
    )
    return server


def test_mini_imagenet_pickle_download_and_decode(mini, tmp_path, monkeypatch):
    ds = load_dataset("mini_imagenet", tmp_path, "train", download=True)
    assert ds.images.shape == (12, 3, 84, 84) and ds.num_classes == 3
    assert ds.class_names == sorted(ds.class_names) and ds.class_names[0].startswith("n0")
    assert torch.equal(ds.images[:, 0, 5, 5].long(), ds.labels * 10) and (ds.images[:, 2] == 77).all()
    assert (tmp_path / "mini_imagenet" / "mini-imagenet-cache-train.pkl.sha256").exists()  # no published checksum
    val = load_dataset("mini_imagenet", tmp_path, "validation", download=True, image_size=42)
    assert val.images.shape == (8, 3, 42, 42)
    mini.stop()
    no_network(monkeypatch)
    (tmp_path / "mini_imagenet" / "mini-imagenet-cache-train.pkl").unlink()
    assert torch.equal(load_dataset("mini_imagenet", tmp_path, "train").images, ds.images)


def test_mini_imagenet_bad_counts_and_unsafe_pickle(mini, tmp_path):
    mini.files["mini-imagenet-cache-test.pkl"] = mini_pickle(2, 4, drop_one=True)
    with pytest.raises(DatasetFormatError, match="1 images belong to no class"):
        load_dataset("mini_imagenet", tmp_path, "test", download=True)
    (tmp_path / "mini_imagenet" / "mini-imagenet-cache-test.pkl").write_bytes(mini_pickle(2, 3))
    with pytest.raises(DatasetFormatError, match="has 3 images, expected 4"):
        load_dataset("mini_imagenet", tmp_path, "test")

    class Evil:
        def __reduce__(self):
            return (print, ("owned",))

    with pytest.raises(UnsafePickleError, match="builtins.print"):
        loads_pickle(pickle.dumps({"image_data": Evil()}))
    (tmp_path / "mini_imagenet" / "mini-imagenet-cache-val.pkl").write_bytes(pickle.dumps(Evil()))
    with pytest.raises(UnsafePickleError):
        load_dataset("mini_imagenet", tmp_path, "val")


# -------------------------------------------------------------------- tiered-ImageNet


def tiered_labels(n_classes: int, per_class: int) -> tuple[np.ndarray, dict]:
    labels = np.arange(n_classes * per_class) % n_classes
    general = labels // 2
    return labels, {
        "label_specific": labels,
        "label_general": general,
        "label_specific_str": [f"n9{c:07d}" for c in range(n_classes)],
        "label_general_str": [f"category_{g}" for g in range(n_classes)],
    }


def test_tiered_imagenet_npz_format_placed_by_hand(tmp_path, monkeypatch):
    monkeypatch.setattr(tiered_imagenet, "SPEC", replace(tiered_imagenet.SPEC, classes={"val": 3}, images={"val": 12}))
    labels, meta = tiered_labels(3, 4)
    bgr = np.zeros((12, 84, 84, 3), dtype=np.uint8)
    bgr[..., 0], bgr[..., 2] = 11, (labels * 50 + 20)[:, None, None]  # blue small, red encodes the class
    base = tmp_path / "tiered_imagenet"
    base.mkdir()
    np.savez(base / "val_images.npz", images=bgr)
    (base / "val_labels.pkl").write_bytes(pickle.dumps({"labels": meta["label_specific"]}, protocol=2))
    ds = load_dataset("tiered_imagenet", tmp_path, "val")
    assert ds.num_classes == 3 and ds.images.shape == (12, 3, 84, 84)
    assert torch.equal(ds.images[:, 0, 0, 0].long(), ds.labels * 50 + 20)  # R first after BGR -> RGB
    assert (ds.images[:, 2] == 11).all()


def test_tiered_imagenet_png_archive_download(server, tmp_path, monkeypatch):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for split, n in (("train", 3), ("test", 2)):
            labels, meta = tiered_labels(n, 3)
            pngs = []
            for y in labels:
                png = io.BytesIO()
                Image.new("RGB", (84, 84), (int(y) * 60, 5, 200)).save(png, "PNG")
                pngs.append(np.frombuffer(png.getvalue(), dtype=np.uint8))
            for name, obj in ((f"{split}_images_png.pkl", pngs), (f"{split}_labels.pkl", meta)):
                data = pickle.dumps(obj, protocol=2)
                info = tarfile.TarInfo(f"tiered-imagenet/{name}")
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    server.files["tiered-imagenet.tar"] = buf.getvalue()
    r = replace(tiered_imagenet.SPEC.files["archive"], urls=(server.url("tiered-imagenet.tar"),))
    monkeypatch.setattr(
        tiered_imagenet,
        "SPEC",
        replace(
            tiered_imagenet.SPEC, files={"archive": r}, classes={"train": 3, "test": 2}, images={"train": 9, "test": 6}
        ),
    )
    ds = load_dataset("tiered_imagenet", tmp_path, "train", download=True)
    assert ds.images.shape == (9, 3, 84, 84) and ds.class_names == ["n90000000", "n90000001", "n90000002"]
    assert torch.equal(ds.images[:, 0, 3, 3].long(), ds.labels * 60) and (ds.images[:, 2] == 200).all()
    assert ds.groups == ["category_0", "category_0", "category_1"]
    assert load_dataset("tiered_imagenet", tmp_path, "test").num_classes == 2
    with pytest.raises(DatasetFormatError, match="found 3 classes, expected 351"):
        monkeypatch.setattr(tiered_imagenet, "SPEC", replace(tiered_imagenet.SPEC, classes={"train": 351}))
        load_dataset("tiered_imagenet", tmp_path / "fresh", "train", download=True)


# --------------------------------------------------------------------------- registry


def test_registry_names_specs_and_errors(tmp_path):
    assert {"omniglot", "mini_imagenet", "tiered_imagenet", "cifar_fs", "fc100"} <= set(available_datasets())
    assert dataset_spec("cifar-fs").classes == {"train": 64, "val": 16, "test": 20}
    assert dataset_spec("fc100").classes == {"train": 60, "val": 20, "test": 20}
    assert dataset_spec("tiered_imagenet").classes == {"train": 351, "val": 97, "test": 160}
    assert dataset_spec("mini_imagenet").images_per_class == 600
    assert cifar100.SPEC.archive.md5 == "eb9058c3a382ffc7106e4002c42a8d85"
    with pytest.raises(
        ValueError,
        match=r"unknown dataset 'imagenet21k'; did you mean 'mini_imagenet'\? \(and no folder or .npz file at .*imagenet21k\). Datasets: .*omniglot",
    ):
        load_dataset("imagenet21k", tmp_path, "train")
    with pytest.raises(ValueError, match="unknown split"):
        load_dataset("cifar_fs", tmp_path, "holdout")
