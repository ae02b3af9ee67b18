"""bench train / methods.training: determinism, checkpoint + resume (in process and after a real
kill -9), outputs loadable with weights_only=True, the model card, and every bad input (one line,
exit 2, nothing overwritten) -- on a tiny gauss20 corpus built once for the module."""
from __future__ import annotations

import hashlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from bench.cli import main
from datagen.lock import output_lock
from datagen.manifest import parse_manifest
from datagen.runner import build
from methods import training
from methods.recipes import GALETTO2022, get_recipe

from .conftest import manifest_dict, write_images

BIN = Path(sys.executable).parent
FAST = ["--set", "train_samples=64", "--set", "val_samples=32", "--set", "batch_size=16"]
OVER = {"train_samples": 64, "val_samples": 32, "batch_size": 16}


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """One torch thread (here and in CLI subprocesses): 4 test processes share 2 cores."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OMP_NUM_THREADS", "1")
        yield


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """gauss20 corpus of 4 small photos: 2 train, 1 val, 1 test image (~1.5 s)."""
    root = tmp_path_factory.mktemp("train-corpus")
    write_images(root / "img", 4, seed0=70, height=96, width=128)
    manifest = parse_manifest(manifest_dict(root / "img"))
    return build(manifest, out=root / "c.h5", workers=1, progress=False, log=lambda m: None).path


@pytest.fixture(scope="module")
def straight(corpus, tmp_path_factory) -> Path:
    """An uninterrupted smoke run (2 epochs) through the CLI."""
    out = tmp_path_factory.mktemp("straight") / "run"
    assert main(["train", "galetto2022", "--corpus", str(corpus), "--out", str(out), *FAST]) == 0
    return out


def _bench(*args) -> int:
    return main(["train", "galetto2022", *map(str, args)])


def _files(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.iterdir()) if p.is_file()}


def _weights(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def _same_weights(a: Path, b: Path) -> bool:
    wa, wb = _weights(a), _weights(b)
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def test_smoke_outputs_and_card(corpus, straight):
    out = straight
    assert {"checkpoint.pt", "best.pt", "model.pt", "model_card.json", "log.jsonl"} <= set(os.listdir(out))
    state = _weights(out / "model.pt")
    model = GALETTO2022.make_model(seed=0, **GALETTO2022.arch)
    model.load_state_dict(state)     # the weights fit the recipe's network
    assert all(v.dtype in (torch.float32, torch.int64) for v in state.values())
    ckpt = _weights(out / "checkpoint.pt")
    assert ckpt["epoch"] == 2 and ckpt["dataset_id"] == h5py.File(corpus).attrs["dataset_id"]
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [e["epoch"] for e in log] == [1, 2]
    assert {"train_loss", "train_acc", "val_loss", "val_acc", "samples_per_s", "seconds"} <= set(log[0])
    card = json.loads((out / "model_card.json").read_text())
    with h5py.File(corpus) as f:
        assert card["corpus"]["dataset_id"] == f.attrs["dataset_id"]
        assert card["corpus"]["content_sha256"] == f.attrs["content_sha256"]
        n_test = f["test/label"].shape[0]
    assert card["method"] == "galetto2022" and card["epochs_run"] == 2 and card["profile"] == "smoke"
    assert card["hyperparameters"]["lr"] == 1e-3 and card["hyperparameters"]["train_samples"] == 64
    assert card["weights"]["sha256"] == hashlib.sha256((out / "model.pt").read_bytes()).hexdigest()
    assert card["architecture"]["num_classes"] == 20 and card["architecture"]["in_channels"] == 1
    assert card["val"]["best"]["acc"] == max(e["val_acc"] for e in log)
    assert card["test"]["n"] == n_test > 0
    conf = np.array(card["test"]["confusion"])
    assert conf.shape == (20, 20) and conf.sum() == n_test
    assert card["test"]["acc"] == pytest.approx(np.trace(conf) / n_test)
    assert set(card["versions"]) >= {"torch", "numpy", "h5py"} and card["hardware"]["torch_threads"] >= 1
    assert "sha" in card["git"] and card["hardware"]["torch_threads"] == 1
    assert card["peak_rss_mb"] > 0 and log[0]["peak_rss_mb"] > 0
    best = max(log, key=lambda e: e["val_acc"])
    assert _same_weights(out / "model.pt", out / "best.pt") and best["epoch"] in (1, 2)


def test_deterministic_and_resume_equals_straight_run(corpus, straight, tmp_path):
    b, c = tmp_path / "b", tmp_path / "c"
    assert _bench("--corpus", corpus, "--out", b, *FAST) == 0
    assert (straight / "model.pt").read_bytes() == (b / "model.pt").read_bytes()
    # 1 epoch, then resume for the 2nd: the same weights and optimizer state as the straight run
    recipe = get_recipe("galetto2022")
    msgs = []
    c.mkdir()
    assert training.train(recipe, corpus, out=c, overrides=OVER, stop_after=1, log=msgs.append) is None
    assert _weights(c / "checkpoint.pt")["epoch"] == 1 and not (c / "model.pt").exists()
    with pytest.raises(training.TrainingInputError, match="--resume"):
        training.train(recipe, corpus, out=c, overrides=OVER, log=msgs.append)
    card = training.train(recipe, corpus, out=c, overrides=OVER, resume=True, log=msgs.append)
    assert any("resuming galetto2022 at epoch 2/2" in m for m in msgs)
    assert card["epochs_run"] == 2
    assert (straight / "model.pt").read_bytes() == (c / "model.pt").read_bytes()
    ca, cc = _weights(straight / "checkpoint.pt"), _weights(c / "checkpoint.pt")
    assert all(torch.equal(ca["model"][k], cc["model"][k]) for k in ca["model"])
    assert all(torch.equal(ca["optimizer"]["state"][k]["exp_avg_sq"], cc["optimizer"]["state"][k]["exp_avg_sq"])
               for k in ca["optimizer"]["state"])
    # the cosine learning rate (the cpu profile's) resumes exactly too: it is a function of the step
    cos = dict(OVER, lr_schedule="cosine")
    e, f = tmp_path / "e", tmp_path / "f"
    e.mkdir()
    f.mkdir()
    training.train(recipe, corpus, out=e, overrides=cos, log=msgs.append)
    training.train(recipe, corpus, out=f, overrides=cos, stop_after=1, log=msgs.append)
    training.train(recipe, corpus, out=f, overrides=cos, resume=True, log=msgs.append)
    assert (e / "model.pt").read_bytes() == (f / "model.pt").read_bytes()
    assert (e / "model.pt").read_bytes() != (straight / "model.pt").read_bytes()
    # another seed gives other weights (the check above can fail)
    d = tmp_path / "d"
    assert _bench("--corpus", corpus, "--out", d, *FAST, "--set", "epochs=1", "--seed", "1") == 0
    assert not torch.equal(_weights(d / "checkpoint.pt")["model"]["classifier.weight"], ca["model"]["classifier.weight"])


def test_kill9_then_resume_equals_uninterrupted(corpus, straight, tmp_path):
    args = ["--corpus", str(corpus), *FAST]
    out = tmp_path / "killed"
    proc = subprocess.Popen([str(BIN / "bench"), "train", "galetto2022", *args, "--out", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not (out / "checkpoint.pt").exists():     # appears (renamed into place) after epoch 1
            assert proc.poll() is None and time.monotonic() < deadline, "no checkpoint before the process ended"
            time.sleep(0.005)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "model.pt").exists(), "the run finished before it could be killed"
    assert _weights(out / "checkpoint.pt")["epoch"] == 1
    assert _bench(*args, "--out", out) == 2            # unfinished run without --resume: refused
    assert _bench(*args, "--out", out, "--resume") == 0
    assert (straight / "model.pt").read_bytes() == (out / "model.pt").read_bytes()
    assert (straight / "best.pt").read_bytes() == (out / "best.pt").read_bytes()
    val = [json.loads(x)["val_acc"] for x in (straight / "log.jsonl").read_text().splitlines()]
    assert val == [json.loads(x)["val_acc"] for x in (out / "log.jsonl").read_text().splitlines()]


def _err(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def _without_split(corpus: Path, dst: Path, split: str, *, dataset_id: str | None = None) -> Path:
    """A copy of ``corpus`` whose attributes say ``split`` is empty (and, optionally, another id)."""
    shutil.copy(corpus, dst)
    with h5py.File(dst, "r+") as f:
        counts = json.loads(f.attrs["counts"])
        counts[split]["samples"] = 0
        f.attrs["counts"] = json.dumps(counts)
        if dataset_id is not None:
            f.attrs["dataset_id"] = dataset_id
    return dst


def test_bad_inputs_one_line_exit_2_nothing_written(corpus, tmp_path, capsys):
    out = tmp_path / "o"
    assert main(["train", "galetto2023", "--corpus", str(corpus), "--out", str(out)]) == 2
    assert "unknown trainable method" in _err(capsys)
    assert _bench("--corpus", corpus, "--out", out, "--profile", "huge") == 2
    assert "unknown profile" in _err(capsys)
    assert _bench("--corpus", corpus, "--out", out, "--set", "nope=1") == 2
    assert "nope" in _err(capsys)
    for bad_set in ("epochs=abc", "epochs=0", "lr=-1", "batch_size=2.5"):
        assert _bench("--corpus", corpus, "--out", out, "--set", bad_set) == 2
        assert bad_set.split("=")[0] in _err(capsys)
    assert _bench("--corpus", corpus, "--out", out, "--device", "tpu") == 2
    assert "--device" in _err(capsys)
    if not torch.cuda.is_available():
        assert _bench("--corpus", corpus, "--out", out, "--device", "cuda") == 2
        assert "CUDA" in _err(capsys)
    assert _bench("--corpus", corpus, "--out", out, "--seed", "-1") == 2
    _err(capsys)
    assert _bench("--corpus", tmp_path / "missing.h5", "--out", out) == 2
    assert "no such file" in _err(capsys)
    bad = tmp_path / "garbage.h5"
    bad.write_bytes(b"not an hdf5 file" * 100)
    assert _bench("--corpus", bad, "--out", out) == 2
    _err(capsys)
    trunc = tmp_path / "trunc.h5"
    trunc.write_bytes(corpus.read_bytes()[: corpus.stat().st_size // 2])
    assert _bench("--corpus", trunc, "--out", out) == 2
    _err(capsys)
    assert not out.exists()

    # another generator; an empty split
    other = tmp_path / "other.h5"
    shutil.copy(corpus, other)
    with h5py.File(other, "r+") as f:
        f.attrs["generator"] = "disk22"
    assert _bench("--corpus", other, "--out", out) == 2
    assert "gauss20" in _err(capsys)
    empty = _without_split(corpus, tmp_path / "empty.h5", "val")
    assert _bench("--corpus", empty, "--out", out) == 2
    assert "val split is empty" in _err(capsys)
    # --test-corpus: of another generator, without a test split, or the training corpus itself
    assert _bench("--corpus", corpus, "--test-corpus", other, "--out", out) == 2
    assert "--test-corpus" in _err(capsys)
    no_test = _without_split(corpus, tmp_path / "no_test.h5", "test", dataset_id="fedcba9876543210")
    assert _bench("--corpus", corpus, "--test-corpus", no_test, "--out", out) == 2
    assert "test split is empty" in _err(capsys)
    assert _bench("--corpus", corpus, "--test-corpus", corpus, "--out", out) == 2
    assert "never used in training" in _err(capsys)
    assert not out.exists()

    # unwritable --out
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        if not os.access(ro, os.W_OK):    # root ignores permissions
            assert _bench("--corpus", corpus, "--out", ro / "x") == 2
            _err(capsys)
    finally:
        ro.chmod(0o700)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert _bench("--corpus", corpus, "--out", blocker / "sub") == 2
    _err(capsys)

    # an --out in use by another process (the output lock)
    busy = tmp_path / "busy"
    busy.mkdir()
    with output_lock(busy):
        assert _bench("--corpus", corpus, "--out", busy, *FAST) == 2
        assert "in use" in _err(capsys)
    assert list(busy.iterdir()) == []

    # a finished run: refused without --resume; --resume with another recipe or corpus refused
    done = tmp_path / "done"
    assert _bench("--corpus", corpus, "--out", done, *FAST) == 0
    capsys.readouterr()
    before = _files(done)
    assert _bench("--corpus", corpus, "--out", done, *FAST) == 2
    assert "--resume" in _err(capsys)
    assert _bench("--corpus", corpus, "--out", done, *FAST, "--resume", "--seed", "1") == 2
    assert "another recipe" in _err(capsys)
    assert _bench("--corpus", corpus, "--out", done, *FAST, "--set", "lr=0.01", "--resume") == 2
    _err(capsys)
    other_corpus = tmp_path / "other_id.h5"
    shutil.copy(corpus, other_corpus)
    with h5py.File(other_corpus, "r+") as f:
        f.attrs["dataset_id"] = "0123456789abcdef"
    assert _bench("--corpus", other_corpus, "--out", done, *FAST, "--resume") == 2
    assert "another corpus" in _err(capsys)
    assert _files(done) == before
    # --resume of a finished run with the same recipe: nothing to do, nothing changed
    assert _bench("--corpus", corpus, "--out", done, *FAST, "--resume") == 0
    assert _files(done) == before


def test_epoch_order_is_seeded_subset():
    a = training.epoch_order(1000, 100, seed=3, epoch=1)
    assert np.array_equal(a, training.epoch_order(1000, 100, seed=3, epoch=1))
    assert not np.array_equal(a, training.epoch_order(1000, 100, seed=3, epoch=2))
    assert len(np.unique(a)) == 100 and a.max() < 1000
    assert sorted(training.epoch_order(50, None, seed=0, epoch=0)) == list(range(50))


def test_test_corpus_gives_the_card_its_test_metrics(corpus, tmp_path):
    """--test-corpus: the card's test metrics come from another corpus's test split, named in the card."""
    other = tmp_path / "test_corpus.h5"
    shutil.copy(corpus, other)
    with h5py.File(other, "r+") as f:
        f.attrs["dataset_id"] = "00000000deadbeef"     # stands for a corpus built from other images
        n_test = f["test/label"].shape[0]
    out = tmp_path / "o"
    assert _bench("--corpus", corpus, "--test-corpus", other, "--out", out, *FAST, "--set", "epochs=1") == 0
    card = json.loads((out / "model_card.json").read_text())
    assert card["test"]["corpus"]["dataset_id"] == "00000000deadbeef" and card["test"]["n"] == n_test
    assert card["test"]["corpus"]["path"] == str(other.absolute()) and len(card["history"]) == 1


def test_a_terminal_gets_a_redrawn_bar_and_a_pipe_gets_lines(corpus, tmp_path):
    import pty
    import threading

    cmd = [str(BIN / "bench"), "train", "galetto2022", "--corpus", str(corpus), *FAST, "--set", "epochs=1"]
    master, slave = pty.openpty()
    chunks: list[bytes] = []

    def drain():
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    done = subprocess.run([*cmd, "--out", str(tmp_path / "tty")], stdin=slave, stdout=slave, stderr=slave,
                          timeout=300, check=False)
    os.close(slave)
    reader.join(timeout=10)
    os.close(master)
    text = b"".join(chunks).decode(errors="replace")
    assert done.returncode == 0, text
    assert "\r" in text and "epoch 1/1:" in text and "samples/s" in text     # a tqdm bar (datagen.progress)
    piped = subprocess.run([*cmd, "--out", str(tmp_path / "pipe")], capture_output=True, text=True, timeout=300,
                           check=False)
    assert piped.returncode == 0 and "\r" not in piped.stderr and "epoch 1/1 100% loss" in piped.stderr


def test_learning_rate_schedules():
    hp = {"lr": 1e-3}
    assert training.learning_rate(hp, step=7, total=10) == 1e-3                  # constant by default
    cos = dict(hp, lr_schedule="cosine")
    rates = [training.learning_rate(cos, step=s, total=100) for s in range(101)]
    assert rates[0] == pytest.approx(1e-3) and rates[50] == pytest.approx(5e-4) and rates[100] == pytest.approx(0)
    assert all(a >= b for a, b in itertools.pairwise(rates))
    assert all(type(r) is float for r in rates)     # no numpy scalar in the optimizer state (weights_only)
    with pytest.raises(KeyError, match="lr_schedule must be one of constant, cosine, step"):
        GALETTO2022.hparams("smoke", {"lr_schedule": "linear"})
    with pytest.raises(KeyError, match="lr_schedule step needs lr_step_epochs"):
        GALETTO2022.hparams("smoke", {"lr_schedule": "step"})
    steps = dict(hp, lr_schedule="step", lr_gamma=0.1, lr_step_epochs=2)      # / 10 every 2 epochs of 5 steps
    got = [training.learning_rate(steps, step=s, total=50, steps_per_epoch=5) for s in (0, 9, 10, 19, 20)]
    assert got == pytest.approx([1e-3, 1e-3, 1e-4, 1e-4, 1e-5]) and all(type(r) is float for r in got)
    assert GALETTO2022.hparams("cpu")["lr_schedule"] == "cosine"
    assert GALETTO2022.hparams("smoke", {"lr_schedule": "cosine"})["lr_schedule"] == "cosine"


def test_batch_transform_and_profiles():
    x, y = GALETTO2022.batch(torch.tensor([[[0, 255]]], dtype=torch.uint8), torch.tensor([3], dtype=torch.int64))
    assert x.shape == (1, 1, 1, 2) and x.dtype == torch.float32 and x.tolist() == [[[[0.0, 1.0]]]]
    assert y.dtype == torch.int64
    full = GALETTO2022.hparams("full")
    assert (full["epochs"], full["batch_size"], full["lr"], full["train_samples"]) == (100, 128, 1e-3, None)
    assert GALETTO2022.fingerprint("smoke", GALETTO2022.hparams("smoke"), 0) != \
        GALETTO2022.fingerprint("smoke", GALETTO2022.hparams("smoke"), 1)


def test_smoke_weights_predict_and_run_with_their_card(straight, tmp_path):
    """train (smoke) -> checkpoint -> predict: the trained model.pt drives `bench predict` and
    `bench run --weights`, and the run records the model card written beside it."""
    from PIL import Image

    from .conftest import synthetic_photo

    image = tmp_path / "photo.png"
    Image.fromarray(synthetic_photo(3, 64, 80)).save(image)
    model = straight / "model.pt"
    assert main(["predict", "galetto2022", str(image), "--out", str(tmp_path / "pred"), "--weights", str(model),
                 "--set", "refine_iterations=1", "--set", "guide_iterations=1"]) == 0
    m = np.load(tmp_path / "pred" / "photo.npy")
    assert m.shape == (64, 80) and m.dtype == np.float32 and 0 <= m.min() and m.max() <= 19

    assert main(["run", "--methods", "galetto2022", "--datasets", "synth_detection", "--weights", str(model),
                 "--workers", "1", "--out", str(tmp_path / "run"), "--no-report",
                 "--set", "galetto2022.refine_iterations=1"]) == 0
    rec = json.loads((tmp_path / "run" / "run.json").read_text())["methods"]["galetto2022"]["weights"]["galetto2022"]
    card = json.loads((straight / "model_card.json").read_text())
    assert rec["origin"] == "user" and rec["sha256"] == card["weights"]["sha256"] and rec["card"] == card
    assert [h["epoch"] for h in rec["card"]["history"]] == [1, 2]
