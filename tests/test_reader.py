"""datagen.reader: the batched and in-memory paths equal the per-item path; the block-shuffle sampler;
DataLoader integration (0 and 2 forked workers) over a tiny corpus built here."""
from __future__ import annotations

import multiprocessing
from pathlib import Path

import h5py
import numpy as np
import pytest

from datagen.manifest import parse_manifest
from datagen.reader import MAX_GAP, BlockShuffleSampler, CorpusDataset, collate_batch
from datagen.runner import build

from .conftest import manifest_dict, write_images

FIELDS = ["image", "label", "position", "sigma", "source"]


def _build(tmp_path_factory, compression: str) -> Path:
    root = tmp_path_factory.mktemp(f"reader-{compression}")
    write_images(root / "img", 4, seed0=40, height=128, width=192)
    manifest = parse_manifest(manifest_dict(root / "img", output={"images_per_shard": 2, "compression": compression}))
    return build(manifest, out=root / "c.h5", workers=1, progress=False, log=lambda m: None).path


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """An uncompressed (contiguous) gauss20 corpus of 4 small photos (~1.3 s)."""
    return _build(tmp_path_factory, "none")


@pytest.fixture(scope="module")
def chunked(tmp_path_factory) -> Path:
    """The same, lzf-compressed: chunked datasets, runs that cross chunk borders."""
    return _build(tmp_path_factory, "lzf")


def _stack(ds: CorpusDataset, idx) -> dict[str, np.ndarray]:
    items = [ds[int(i)] for i in idx]
    return {k: np.stack([it[k] for it in items]) for k in ds.fields}


def _assert_batches_equal(a: dict, b: dict) -> None:
    assert set(a) == set(b)
    for k, value in a.items():
        assert value.dtype == b[k].dtype, k
        np.testing.assert_array_equal(value, b[k], err_msg=k)


def _index_lists(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    lists = [rng.integers(0, n, size) for size in (1, 7, 64, 300)]          # unsorted, with repeats
    lists.append(np.r_[np.arange(10, 50), np.arange(5, 20)[::-1], [n - 1, 0, n - 1]])   # overlapping runs
    lists.append(np.r_[0, MAX_GAP + 1, 2 * MAX_GAP + 3, n - 1])            # gaps just below/above the merge limit
    lists.append(np.arange(n))
    lists.append(rng.permutation(n)[: n // 3] - n // 2)                    # negative indices too
    return lists


@pytest.mark.parametrize("which", ["corpus", "chunked"])
def test_batched_path_equals_per_item_path(which, request):
    path = request.getfixturevalue(which)
    ds = CorpusDataset(path, "train", fields=FIELDS)
    n = len(ds)
    assert n > 300
    with h5py.File(path, "r") as f:
        assert (f["train/image"].chunks is None) == (which == "corpus")
        stored = f["train/image"][...]
    for idx in _index_lists(n):
        batch = ds.read_batch(idx)
        _assert_batches_equal(batch, _stack(ds, idx))
        np.testing.assert_array_equal(batch["image"], stored[np.asarray(idx) % n])
    # __getitems__ (list of samples by default) gives the very samples of ds[i]
    idx = [5, 3, 5, n - 1, 0]
    items = ds.__getitems__(idx)
    assert len(items) == len(idx)
    for got, i in zip(items, idx):
        _assert_batches_equal(got, ds[i])


def test_dtypes_and_shapes(corpus):
    ds = CorpusDataset(corpus, "train", fields=["image", "label"], stacked=True)
    one = ds[0]
    assert one["image"].dtype == np.uint8 and one["image"].shape == (32, 32)
    assert one["label"].dtype == np.int64 and one["label"].shape == ()
    batch = ds.__getitems__([2, 1])
    assert batch["image"].dtype == np.uint8 and batch["image"].shape == (2, 32, 32)
    assert batch["label"].dtype == np.int64 and batch["label"].shape == (2,)
    empty = ds.read_batch([])
    assert empty["image"].shape == (0, 32, 32) and empty["label"].dtype == np.int64
    with h5py.File(corpus, "r") as f:
        np.testing.assert_array_equal(ds.read_batch(np.arange(len(ds)))["label"], f["train/label"][...])


def test_bad_indices_and_options(corpus):
    ds = CorpusDataset(corpus, "val", fields=["label"])
    n = len(ds)
    for bad in ([0, n], [-n - 1]):
        with pytest.raises(IndexError):
            ds.read_batch(bad)
    with pytest.raises(IndexError):
        ds[n]
    with pytest.raises(TypeError):
        ds.read_batch([0.5, 1.0])
    with pytest.raises(TypeError):
        ds.read_batch([[0, 1]])
    with pytest.raises(ValueError, match="stacked"):
        CorpusDataset(corpus, "val", transform=lambda s: s, stacked=True)
    with pytest.raises(KeyError, match="unknown fields"):
        CorpusDataset(corpus, "val", fields=["nope"])


def test_transform_applies_per_sample_on_both_paths(corpus):
    def tf(s):
        return {"x": s["image"].astype(np.float32) / 255, "y": s["label"]}

    ds = CorpusDataset(corpus, "train", fields=["image", "label"], transform=tf)
    items = ds.__getitems__([4, 9])
    for got, i in zip(items, [4, 9]):
        _assert_batches_equal(got, ds[i])
        assert got["x"].dtype == np.float32


def test_in_memory_equals_file_reads(corpus):
    on_disk = CorpusDataset(corpus, "train", fields=FIELDS)
    mem = CorpusDataset(corpus, "train", fields=FIELDS, in_memory=True)
    n = len(mem)
    assert on_disk.nbytes == 0
    assert mem.nbytes == mem.memory_estimate() == on_disk.memory_estimate()
    assert mem.nbytes == n * (32 * 32 + 2 + 8 + 4 + 4)       # image u8, label i16, position 2 x i32, sigma f32, source i32
    for idx in _index_lists(n, seed=1):
        _assert_batches_equal(mem.read_batch(idx), on_disk.read_batch(idx))
    for i in (0, n // 2, -1):
        _assert_batches_equal(mem[i], on_disk[i])
    # the in-memory copy never touches the file again
    assert mem._file is None


def test_sampler_is_deterministic_and_a_permutation():
    n, b = 1000, 64
    s1 = BlockShuffleSampler(n, block_size=b, seed=3)
    s2 = BlockShuffleSampler(n, block_size=b, seed=3)
    first = list(s1)
    assert first == list(s2) == list(s1)                     # same seed + epoch -> same order
    assert sorted(first) == list(range(n))                   # every index exactly once
    assert first != list(range(n))
    s1.set_epoch(1)
    second = list(s1)
    assert sorted(second) == list(range(n)) and second != first   # another epoch -> another order
    s2.set_epoch(1)
    assert list(s2) == second
    s1.set_epoch(0)
    assert list(s1) == first
    assert list(BlockShuffleSampler(n, block_size=b, seed=4)) != first
    # blocks stay together: each run of b yielded indices is one block of contiguous rows (the last,
    # partial block may come anywhere)
    order = np.asarray(first)
    pos, seen = 0, 0
    while pos < n:
        size = b if order[pos] // b < n // b else n % b
        chunk = np.sort(order[pos:pos + size])
        assert np.array_equal(chunk, np.arange(chunk[0], chunk[0] + size)) and chunk[0] % b == 0
        pos, seen = pos + size, seen + 1
    assert seen == -(-n // b)
    assert len(s1) == n


def test_sampler_options_and_edges():
    plain = BlockShuffleSampler(100, block_size=10, seed=0, shuffle_within=False).order()
    assert all(np.array_equal(plain[k:k + 10], np.arange(plain[k], plain[k] + 10)) for k in range(0, 100, 10))
    assert BlockShuffleSampler(0, block_size=8).order().size == 0
    assert sorted(BlockShuffleSampler(5, block_size=8, seed=1)) == [0, 1, 2, 3, 4]
    assert sorted(BlockShuffleSampler(17, block_size=1, seed=1)) == list(range(17))
    assert len(BlockShuffleSampler([0] * 12, block_size=4)) == 12          # a sized object
    with pytest.raises(ValueError):
        BlockShuffleSampler(10, block_size=0)
    with pytest.raises(ValueError):
        BlockShuffleSampler(10, seed=-1)


@pytest.mark.parametrize("workers", [0, 2])
def test_dataloader_stacked_batches(corpus, workers):
    import torch
    from torch.utils.data import DataLoader

    ds = CorpusDataset(corpus, "train", fields=["image", "label"], stacked=True)
    ds[0]   # the parent opens the file first: forked workers must open their own handle
    sampler = BlockShuffleSampler(len(ds), block_size=32, seed=5)
    sampler.set_epoch(2)
    kw = {"multiprocessing_context": multiprocessing.get_context("fork")} if workers else {}
    loader = DataLoader(ds, batch_size=96, sampler=sampler, collate_fn=collate_batch, num_workers=workers, **kw)
    batches = list(loader)
    assert len(batches) == -(-len(ds) // 96)
    assert all(b["image"].dtype == torch.uint8 and b["label"].dtype == torch.int64 for b in batches)
    images = torch.cat([b["image"] for b in batches]).numpy()
    labels = torch.cat([b["label"] for b in batches]).numpy()
    order = sampler.order(2)
    with h5py.File(corpus, "r") as f:
        np.testing.assert_array_equal(images, f["train/image"][...][order])
        np.testing.assert_array_equal(labels, f["train/label"][...][order])
    # the loss the training uses accepts the labels as they come
    logits = torch.zeros(len(batches[0]["label"]), 20)
    torch.nn.functional.cross_entropy(logits, batches[0]["label"])


def test_dataloader_default_collate_still_works(corpus):
    """Without ``stacked``, DataLoader's default collate gets a list of samples, as torch documents."""
    import torch
    from torch.utils.data import DataLoader

    ds = CorpusDataset(corpus, "val", fields=["image", "label"], in_memory=True)
    loader = DataLoader(ds, batch_size=50, num_workers=2, multiprocessing_context=multiprocessing.get_context("fork"))
    labels = torch.cat([b["label"] for b in loader]).numpy()
    with h5py.File(corpus, "r") as f:
        np.testing.assert_array_equal(labels, f["val/label"][...])
    assert labels.dtype == np.int64


def test_importable_without_torch(tmp_path):
    """datagen's reader imports without torch (it is optional for datagen itself)."""
    import subprocess
    import sys

    code = ("import sys; sys.modules['torch'] = None\n"
            "from datagen.reader import CorpusDataset, BlockShuffleSampler\n"
            "print(sorted(BlockShuffleSampler(10, block_size=3, seed=1)) == list(range(10)))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 0 and r.stdout.strip() == "True", r.stderr
