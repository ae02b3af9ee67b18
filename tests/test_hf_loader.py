"""datagen.hf: corpus splits as Hugging Face ``datasets`` (row counts, features, exact values; streaming;
Image features; the cache keyed by content; one-line errors), offline, on the demo manifests; and the HDF5
attributes that make every stored dataset of a corpus self-explanatory."""
from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from datagen import SPLITS
from datagen.errors import UserError
from datagen.manifest import load_manifest
from datagen.runner import build

from .test_generator_contract import QUIET, REPO

datasets = pytest.importorskip("datasets")
from datagen.hf import to_hf_dataset, to_hf_dataset_dict


@pytest.fixture(scope="module", autouse=True)
def hf_home(tmp_path_factory):
    """No network, and a Hugging Face cache of our own (never the user's); returns its folder."""
    home = tmp_path_factory.mktemp("hf_home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_DATASETS_OFFLINE", "1")
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("HF_HOME", str(home))
        mp.setattr(datasets.config, "HF_HUB_OFFLINE", True)
        mp.setattr(datasets.config, "HF_DATASETS_OFFLINE", True)
        mp.setattr(datasets.config, "HF_DATASETS_CACHE", home / "datasets")
        yield home


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf_corpora")
    return {name: build(load_manifest(REPO / "manifests" / f"demo_{name}.yaml"), out=root / f"{name}.h5", workers=1,
                        limit=limit, **QUIET).path for name, limit in (("gauss20", 6), ("svpsf39", 4))}


def _stored(path, split) -> dict[str, np.ndarray]:
    with h5py.File(path, "r") as f:
        return {name: f[split][name][...] for name in f[split]}


def _columns(ds) -> dict[str, np.ndarray]:
    """The columns as numpy arrays (``datasets``' numpy format widens integers to int64: values only)."""
    return {name: np.asarray(col) for name, col in ds.with_format("numpy")[:].items()} if len(ds) else {}


@pytest.mark.parametrize("name", ["gauss20", "svpsf39"])
def test_every_split_has_the_stored_rows_and_values(name, corpora, tmp_path):
    splits = to_hf_dataset_dict(corpora[name], cache_dir=tmp_path)
    assert isinstance(splits, datasets.DatasetDict) and list(splits) == list(SPLITS)
    nonempty = 0
    for split in SPLITS:
        stored, ds = _stored(corpora[name], split), splits[split]
        assert ds.num_rows == len(stored["source"]) and sorted(ds.column_names) == sorted(stored)
        nonempty += ds.num_rows > 0
        for field, col in _columns(ds).items():
            assert col.shape == stored[field].shape, field
            np.testing.assert_array_equal(col, stored[field], err_msg=f"{name}/{split}/{field}")
    assert nonempty >= 2      # the demo corpora spread their images over at least two splits
    with h5py.File(corpora[name], "r") as f:
        assert str(f.attrs["content_sha256"]) in splits["train"].info.description


def test_features_follow_the_stored_layout(corpora, tmp_path):
    g = to_hf_dataset(corpora["gauss20"], split="train", cache_dir=tmp_path).features
    assert g["image"] == datasets.Array2D(shape=(32, 32), dtype="uint8") and g["sigma"] == datasets.Value("float32")
    assert isinstance(g["label"], datasets.ClassLabel) and g["label"].num_classes == 20
    assert g["label"].names[:2] == ["sigma=0.0", "sigma=1.0"]
    assert g["position"] == datasets.List(datasets.Value("int32"), length=2)
    s = to_hf_dataset(corpora["svpsf39"], split="test", fields=["blurred", "gt"], cache_dir=tmp_path)
    assert s.column_names == ["blurred", "gt"]
    assert s.features["blurred"] == datasets.Array4D(shape=(13, 96, 96, 3), dtype="uint8")
    assert s.features["gt"] == datasets.Array3D(shape=(13, 96, 96), dtype="uint8")


def test_streaming_gives_the_same_rows_and_no_arrow_cache(corpora, hf_home):
    stored = _stored(corpora["svpsf39"], "train")
    it = to_hf_dataset(corpora["svpsf39"], split="train", streaming=True)
    assert isinstance(it, datasets.IterableDataset)
    rows = list(it)
    assert len(rows) == len(stored["source"])
    for i, row in enumerate(rows):
        for field, value in row.items():
            np.testing.assert_array_equal(np.asarray(value), stored[field][i], err_msg=field)
    assert isinstance(to_hf_dataset_dict(corpora["gauss20"], streaming=True), datasets.IterableDatasetDict)
    assert not list(hf_home.rglob("*.arrow"))      # (``datasets`` leaves lock files only)
    assert to_hf_dataset(corpora["gauss20"], split="val").cache_files      # the default cache: ours, here
    assert list(hf_home.rglob("*.arrow"))


def test_image_features_are_lossless(corpora, tmp_path):
    for name, field, split in (("gauss20", "image", "train"), ("svpsf39", "sharp", "test")):
        ds = to_hf_dataset(corpora[name], split=split, images=[field], fields=[field, "source"], cache_dir=tmp_path)
        assert ds.features[field] == datasets.Image()
        stored = _stored(corpora[name], split)[field]
        assert len(ds) == len(stored)
        for i in range(0, len(ds), max(1, len(ds) // 7)):
            np.testing.assert_array_equal(np.asarray(ds[i][field]), stored[i])
    with pytest.raises(UserError, match=r"images=: field 'label' is int16\[\], not a uint8"):
        to_hf_dataset(corpora["gauss20"], images=["label"], cache_dir=tmp_path)


def test_the_cache_is_keyed_by_content_and_options(corpora, tmp_path):
    first = to_hf_dataset(corpora["gauss20"], split="train", cache_dir=tmp_path)
    again = to_hf_dataset(corpora["gauss20"], split="train", cache_dir=tmp_path)
    assert again.cache_files == first.cache_files and again.cache_files
    fewer = to_hf_dataset(corpora["gauss20"], split="train", fields=["label"], cache_dir=tmp_path)
    assert fewer.cache_files != first.cache_files and fewer.column_names == ["label"]
    other = build(load_manifest(REPO / "manifests" / "demo_gauss20.yaml"), out=tmp_path / "other.h5", workers=1,
                  limit=3, **QUIET).path
    rebuilt = to_hf_dataset(other, split="train", cache_dir=tmp_path)
    assert rebuilt.cache_files != first.cache_files and rebuilt.num_rows == len(_stored(other, "train")["source"])


def test_bad_input_is_one_line(corpora, tmp_path):
    for kwargs, msg in (({"split": "dev"}, "split 'dev' is unknown; choose train, val, test"),
                        ({"fields": ["imag"]}, "no field 'imag'; fields: image, label")):
        with pytest.raises(UserError, match=msg):
            to_hf_dataset(corpora["gauss20"], cache_dir=tmp_path, **kwargs)
    with pytest.raises(UserError, match="no such file"):
        to_hf_dataset(tmp_path / "missing.h5")


def test_every_stored_dataset_explains_itself(corpora):
    """``h5ls -v`` / HDFView: each dataset carries its field's doc, dtype and what its rows are (raw
    gauss20 and gzip svpsf39 corpora); the attributes are outside both hashes, so ``verify`` passes."""
    from datagen.corpus import verify
    from datagen.writer import SOURCE_COLUMN_DOCS

    for path in corpora.values():
        with h5py.File(path, "r") as f:
            fields = json.loads(f.attrs["fields"])
            for split in SPLITS:
                assert f"the {split} split" in f[split].attrs["doc"]
                for name, ds in f[split].items():
                    assert ds.attrs["doc"] == fields[name]["doc"] and ds.attrs["dtype"] == ds.dtype.name
                    assert ds.attrs["rows"].startswith(f"one per sample of the {split} split")
            assert "one row per image" in f["sources"].attrs["doc"]
            for col, ds in f["sources"].items():
                assert ds.attrs["doc"] == SOURCE_COLUMN_DOCS.get(col, f"per-image statistic of the "
                                                                      f"{f.attrs['generator']} generator")
        verify(path)
    with h5py.File(corpora["gauss20"], "r") as f:
        assert f["train/image"].attrs["doc"] == "gray patch, BT.601 luma, 0..255"
        assert f["train/source"].attrs["doc"] == "row of /sources"
