"""The generic training loop of every learned method (its :class:`~methods.recipes.Recipe` supplies
the network, the batch transform, the loss and the optimizer).

:func:`train` reads one corpus (HDF5, as ``datagen build`` writes it), trains, validates every epoch
on the ``val`` split and writes into ``out``:

* ``checkpoint.pt``: after every epoch, atomically (temporary name + ``os.replace``): model and
  optimizer state, the next epoch, torch RNG state, best val accuracy, the history, the recipe
  fingerprint and corpus ``dataset_id``.  Loadable with ``torch.load(..., weights_only=True)``.
* ``best.pt``: the weights (fp32 ``state_dict``) of the best val accuracy so far;
* ``log.jsonl``: one JSON line per epoch (train/val loss and accuracy, samples/s, seconds);
* at the end ``model.pt`` (the best weights) and ``model_card.json``.

Determinism: the initial weights depend on ``seed`` only; the samples of epoch ``e`` are a
permutation drawn from ``numpy.random.default_rng([seed, e])`` (a pure function of seed and epoch,
so a resumed run draws the same ones); no worker processes; on CPU
``torch.use_deterministic_algorithms(True)``.  Same corpus + recipe + seed + thread count -> the
same weights, and ``resume`` after an interruption (``kill -9`` included) gives the weights of an
uninterrupted run.  (CPU float reductions may depend on the number of threads; the card records it.)

Memory: the fields read are loaded into memory once (gauss20: 1 KiB per sample, i.e. ~1.1 GB for the
1.07 M training samples of ``coco_imagenet_gauss20``); random batches then cost nothing to read.

Imports: torch, numpy, h5py, datagen.atomic and datagen.progress (stdlib only; tqdm when it draws a bar)
(what a bare GPU machine needs); validation of the user's input
(method, corpus, ``--out``) is the caller's job (``bench.train``), except what needs the checkpoint:
:func:`check_out`.
"""
from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import torch

from datagen.atomic import atomic_write_bytes
from datagen.filehash import file_sha256
from datagen.progress import Progress

from .recipes import Recipe
from .training_data import adapter, load_split

__all__ = ["check_out", "corpus_identity", "epoch_order", "evaluate", "learning_rate", "load_split", "train"]

CHECKPOINT, BEST, MODEL, CARD, LOG = "checkpoint.pt", "best.pt", "model.pt", "model_card.json", "log.jsonl"


class TrainingInputError(ValueError):
    """The output folder holds something :func:`train` must not continue or overwrite (one line)."""


# ----------------------------------------------------------------------------- files
def _atomic_bytes(path: Path, data: bytes) -> None:
    atomic_write_bytes(path, data)


def _atomic_torch(path: Path, obj) -> None:
    import io
    buf = io.BytesIO()
    torch.save(obj, buf)
    _atomic_bytes(path, buf.getvalue())


def _cpu_state(model: torch.nn.Module) -> dict:
    return {k: v.detach().to("cpu", copy=True).float() if v.is_floating_point() else v.detach().to("cpu", copy=True)
            for k, v in model.state_dict().items()}


def check_out(out: str | os.PathLike, *, fingerprint: str, dataset_id: str, resume: bool) -> dict | None:
    """What ``out`` holds, checked against this run; returns the checkpoint to resume from (or None).

    Raises :class:`TrainingInputError` (one line) when ``out`` holds a finished run and ``resume`` is
    false, a checkpoint and ``resume`` is false, or a checkpoint of another recipe or corpus.
    """
    out = Path(out)
    ckpt_path = out / CHECKPOINT
    finished = (out / CARD).exists()
    if not resume:
        if finished:
            raise TrainingInputError(f"{out} holds a finished training run; choose another --out or pass --resume")
        if ckpt_path.exists():
            raise TrainingInputError(f"{out} holds an unfinished training run; pass --resume to continue it "
                                     "or choose another --out")
        return None
    if not ckpt_path.exists():
        return None
    try:
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable checkpoint is the user's to replace
        raise TrainingInputError(f"{ckpt_path}: unreadable checkpoint ({str(err).splitlines()[0] if str(err) else type(err).__name__}); "
                                 "choose another --out") from None
    if ckpt.get("fingerprint") != fingerprint:
        raise TrainingInputError(f"{ckpt_path} was made with another recipe, profile, hyper-parameters or seed "
                                 f"({ckpt.get('method')} {ckpt.get('profile')} seed {ckpt.get('seed')}); "
                                 "choose another --out")
    if ckpt.get("dataset_id") != dataset_id:
        raise TrainingInputError(f"{ckpt_path} was trained on another corpus (dataset_id {ckpt.get('dataset_id')}, "
                                 f"not {dataset_id}); choose another --out")
    return ckpt


# ----------------------------------------------------------------------------- data
def corpus_identity(path: str | os.PathLike) -> dict:
    """``generator``, ``dataset_id``, ``content_sha256`` and per-split sample counts of a corpus."""
    with h5py.File(path, "r") as f:
        attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()
                 if k in ("generator", "dataset_id", "content_sha256", "name")}
        counts = {s: (int(f[s][next(iter(f[s]))].shape[0]) if s in f and len(f[s]) else 0) for s in ("train", "val", "test")}
    return {**{k: str(v) for k, v in attrs.items()}, "counts": counts}


def _subset(n: int, k: int | None, rng: np.random.Generator) -> np.ndarray | None:
    """A sorted seeded subset of ``k`` of ``n`` rows (None: all)."""
    if k is None or k >= n:
        return None
    return np.sort(rng.choice(n, size=int(k), replace=False))


def epoch_order(n: int, k: int | None, *, seed: int, epoch: int) -> np.ndarray:
    """Rows of epoch ``epoch``: the first ``k`` of a permutation of ``0..n-1`` drawn from
    ``default_rng([seed, epoch])`` (all of them when ``k`` is None)."""
    perm = np.random.default_rng([int(seed), int(epoch)]).permutation(n)
    return perm if k is None else perm[: min(int(k), n)]


def learning_rate(hp: dict, *, step: int, total: int, steps_per_epoch: int = 1) -> float:
    """The learning rate of optimizer step ``step`` of ``total``: a pure function of the step, so a
    resumed run needs no scheduler state.  ``hp["lr_schedule"]``: ``constant`` (default; ``hp["lr"]``
    throughout), ``cosine`` (``lr * (1 + cos(pi * step / total)) / 2``, from ``lr`` down to 0) or
    ``step`` (``lr * lr_gamma ** (epoch // lr_step_epochs)``, ``epoch = step // steps_per_epoch +
    lr_epoch_offset``: a second stage continues the first one's schedule)."""
    schedule = hp.get("lr_schedule", "constant")
    if schedule == "constant":
        return float(hp["lr"])
    if schedule == "step":
        epoch = int(step) // max(int(steps_per_epoch), 1) + int(hp.get("lr_epoch_offset", 0))
        return float(hp["lr"]) * float(hp["lr_gamma"]) ** (epoch // int(hp["lr_step_epochs"]))
    if schedule == "cosine":
        # a Python float: the optimizer state (and so the checkpoint) must hold no numpy scalar, which
        # torch.load(weights_only=True) refuses
        return float(hp["lr"]) * 0.5 * (1.0 + math.cos(math.pi * min(step, total) / max(total, 1)))
    raise ValueError(f"unknown lr_schedule {schedule!r}; known: constant, cosine, step")


# ----------------------------------------------------------------------------- hardware
def default_threads() -> int:
    """Torch CPU threads: ``OMP_NUM_THREADS`` when set, else the cores this process may run on."""
    env = os.environ.get("OMP_NUM_THREADS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def hardware(device: torch.device) -> dict:
    cpu = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    out = {"cpu": cpu, "cores": default_threads(), "torch_threads": torch.get_num_threads(), "device": str(device)}
    if device.type == "cuda":
        out["gpu"] = torch.cuda.get_device_name(device)
    return out


def peak_rss_mb() -> float | None:
    """Peak resident memory of this process so far, MiB (Linux ``ru_maxrss`` is in KiB)."""
    try:
        import resource
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    except (ImportError, OSError):
        return None


def versions() -> dict:
    return {"torch": torch.__version__, "numpy": np.__version__, "h5py": h5py.__version__,
            "python": sys.version.split()[0]}


# ----------------------------------------------------------------------------- loop
def forward(model, x):
    """The network's output for a batch input ``x`` (a tensor, or a tuple of its inputs)."""
    return model(*x) if isinstance(x, tuple) else model(x)


@torch.no_grad()
def evaluate(model, recipe: Recipe, data, *, batch_size: int | None = None, num_classes: int | None = None):
    """Mean loss, the mean of each of ``data.METRICS`` and (``num_classes``) the confusion matrix
    (rows = true, cols = predicted) over every sample of ``data`` (a training-data adapter,
    :mod:`methods.training_data`), in order, uncropped."""
    model.eval()
    n = len(data)
    bs = int(batch_size or data.EVAL_BATCH)
    loss_sum, sums = 0.0, dict.fromkeys(data.METRICS, 0.0)
    conf = np.zeros((num_classes, num_classes), np.int64) if num_classes else None
    for a in range(0, n, bs):
        x, y = data.batch(np.arange(a, min(a + bs, n)), train=False, seed=0, epoch=0, step=0)
        with torch.inference_mode():
            out = forward(model, x)
        loss_sum += float(recipe.loss(out, y, reduction="sum"))
        for k, v in data.measure(out, y).items():
            sums[k] += v
        if conf is not None:
            np.add.at(conf, (y.cpu().numpy(), out.argmax(1).cpu().numpy()), 1)
    res = {"loss": loss_sum / max(n, 1), **{k: v / max(n, 1) for k, v in sums.items()}, "n": n}
    if conf is not None:
        res["confusion"] = conf.tolist()
    return res


def _progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def load_init(path: str | os.PathLike) -> tuple[dict, str]:
    """``(state dict, sha256)`` of the init weights of a staged recipe (``torch.load(weights_only=True)``;
    a checkpoint's ``"model"`` / ``"state_dict"`` is unwrapped).  Raises :class:`TrainingInputError`
    (one line) for a file that is missing or is not a state dict."""
    from .torch_inference import unwrap_state_dict

    path = Path(path)
    if not path.is_file():
        raise TrainingInputError(f"--init {path}: no such file; give the model.pt of the earlier stage's run")
    try:
        state = unwrap_state_dict(torch.load(path, map_location="cpu", weights_only=True), torch)
    except Exception as err:  # noqa: BLE001 - any unreadable file: one line
        raise TrainingInputError(f"--init {path}: not a torch weights file ({type(err).__name__})") from None
    if state is None:
        raise TrainingInputError(f"--init {path}: not a state dict of tensors")
    return state, file_sha256(path)


def train(recipe: Recipe, corpus: str | os.PathLike, *, out: str | os.PathLike, profile: str = "smoke",
          device: str = "cpu", resume: bool = False, seed: int = 0, overrides: dict | None = None,
          extra_card: dict | None = None, threads: int | None = None, stop_after: int | None = None,
          test_corpus: str | os.PathLike | None = None, init: str | os.PathLike | None = None,
          log=_progress, progress: bool | None = None) -> dict | None:
    """Train ``recipe`` on ``corpus`` into ``out`` (see the module docstring); returns the model card.

    The caller has checked the corpus (generator, splits) and made ``out``; it should hold
    ``datagen.lock.output_lock(out)`` meanwhile.  ``extra_card`` is merged into the card (e.g. the
    git sha).  ``threads``: torch CPU threads (default :func:`default_threads`).  ``stop_after``: run
    at most this many epochs in this call and return None, leaving the checkpoint for ``resume``
    (not part of the recipe: a time-sliced run ends with the weights of a straight one).
    ``test_corpus``: take the test metrics of the card from the ``test`` split of this corpus (one never
    used in training, e.g. gauss20 of the DIV2K validation images) instead of ``corpus``'s own.
    ``init``: the earlier stage's weights, for a recipe with ``init`` (required then, refused otherwise).
    ``progress``: each epoch's progress (:class:`datagen.progress.Progress`: loss, running metric,
    samples/s, ETA) as a bar (True), lines to ``log`` every ~10 % (False) or a bar on a terminal (None).
    """
    t_start = time.perf_counter()
    out = Path(out)
    dev = torch.device(device)
    hp = recipe.hparams(profile, overrides)
    if (init is None) != (recipe.init is None):
        raise TrainingInputError(f"{recipe.method} needs --init: {recipe.init[0]}" if recipe.init else
                                 f"{recipe.method} starts from scratch; drop --init")
    init_state, init_sha = load_init(init) if init is not None else (None, None)
    fingerprint = recipe.fingerprint(profile, hp, seed, init_sha256=init_sha)
    ident = corpus_identity(corpus)
    ckpt = check_out(out, fingerprint=fingerprint, dataset_id=ident.get("dataset_id"), resume=resume)
    if resume and (out / CARD).exists():
        return json.loads((out / CARD).read_text())

    prev_threads, prev_det = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(int(threads or default_threads()))
    if dev.type == "cpu":
        torch.use_deterministic_algorithms(True)
    try:
        init_card = {"init": {"path": str(Path(init).absolute()), "sha256": init_sha}} if init is not None else {}
        return _train(recipe, corpus, out, dev, profile, hp, fingerprint, ident, ckpt, seed,
                      {**(extra_card or {}), **init_card}, log, t_start, stop_after, test_corpus, init_state,
                      progress)
    finally:
        torch.use_deterministic_algorithms(prev_det)
        torch.set_num_threads(prev_threads)


def _train(recipe, corpus, out, dev, profile, hp, fingerprint, ident, ckpt, seed, extra_card, log, t_start, stop_after,
           test_corpus, init_state, progress):
    torch.manual_seed(seed)
    data_cls = adapter(recipe)
    metric = data_cls.METRICS[0]                  # selects the best epoch (higher is better)
    train_data = data_cls(recipe, corpus, "train", samples=None, device=dev, hp=hp)
    n_val = data_cls.count(recipe, corpus, "val", hp)
    val_rows = _subset(n_val, hp["val_samples"], np.random.default_rng([int(seed), 2**31 - 1]))
    val = data_cls(recipe, corpus, "val", samples=val_rows, device=dev, hp=hp)
    n_train = len(train_data)

    model = recipe.make_model(seed=seed, **recipe.arch)
    if init_state is not None:
        try:
            recipe.init[1](model, init_state)
        except (ValueError, RuntimeError, KeyError) as err:
            raise TrainingInputError(f"--init: {(str(err).splitlines() or [type(err).__name__])[0]}") from None
    model = model.to(dev)
    opt = recipe.optimizer([p for p in model.parameters() if p.requires_grad], hp)
    start, best_score, history = 0, -math.inf, []
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        start, best_score, history = int(ckpt["epoch"]), float(ckpt["best_val_acc"]), list(ckpt["history"])
        torch.set_rng_state(ckpt["torch_rng"])
        log(f"resuming {recipe.method} at epoch {start + 1}/{hp['epochs']} from {out / CHECKPOINT}")

    bs = int(hp["batch_size"])
    n_per_epoch = n_train if hp["train_samples"] is None else min(int(hp["train_samples"]), n_train)
    steps_per_epoch = (n_per_epoch + bs - 1) // bs
    end = int(hp["epochs"]) if stop_after is None else min(int(hp["epochs"]), start + int(stop_after))
    for epoch in range(start, end):
        t0 = time.perf_counter()
        order = epoch_order(n_train, hp["train_samples"], seed=seed, epoch=epoch)
        n_ep = len(order)
        n_batches = (n_ep + bs - 1) // bs
        model.train()
        loss_sum, score_sum, seen = 0.0, 0.0, 0
        bar = Progress(n_ep, log=log, unit="samples", desc=f"epoch {epoch + 1}/{hp['epochs']}", bar=progress)
        try:
            for b in range(n_batches):
                for group in opt.param_groups:
                    group["lr"] = learning_rate(hp, step=epoch * steps_per_epoch + b,
                                                total=int(hp["epochs"]) * steps_per_epoch,
                                                steps_per_epoch=steps_per_epoch)
                x, y = train_data.batch(order[b * bs:(b + 1) * bs], train=True, seed=seed, epoch=epoch, step=b)
                out_b = forward(model, x)
                loss = recipe.loss(out_b, y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                loss_sum += float(loss.detach()) * len(y)
                score_sum += train_data.measure(out_b.detach(), y)[metric]
                seen += len(y)
                bar.update(len(y), note=f"loss {loss_sum / seen:.4f} {metric} {score_sum / seen:.4f}")
        finally:
            bar.close()
        train_s = time.perf_counter() - t0
        v = evaluate(model, recipe, val)
        entry = {"epoch": epoch + 1, "train_loss": loss_sum / seen, f"train_{metric}": score_sum / seen,
                 "val_loss": v["loss"], **{f"val_{m}": v[m] for m in data_cls.METRICS},
                 "samples_per_s": seen / max(train_s, 1e-9), "seconds": time.perf_counter() - t0,
                 "peak_rss_mb": peak_rss_mb()}
        history.append(entry)
        log(f"epoch {epoch + 1}/{hp['epochs']} val loss {v['loss']:.4f} "
            + " ".join(f"{m} {v[m]:.4f}" for m in data_cls.METRICS) + f" ({entry['seconds']:.1f}s)")
        if v[metric] > best_score:
            best_score = v[metric]
            _atomic_torch(out / BEST, _cpu_state(model))
        _atomic_torch(out / CHECKPOINT, {
            "method": recipe.method, "profile": profile, "seed": int(seed), "fingerprint": fingerprint,
            "dataset_id": ident.get("dataset_id"), "epoch": epoch + 1, "best_val_acc": best_score,
            "model": _cpu_state(model), "optimizer": opt.state_dict(), "torch_rng": torch.get_rng_state(),
            "history": history})
        _atomic_bytes(out / LOG, "".join(json.dumps(h, sort_keys=True) + "\n" for h in history).encode())

    if end < int(hp["epochs"]):
        log(f"stopped after epoch {end}/{hp['epochs']}; continue with resume")
        return None
    # the end: best weights -> model.pt, test metrics, card
    best_state = torch.load(out / BEST, map_location="cpu", weights_only=True)
    _atomic_torch(out / MODEL, best_state)
    model.load_state_dict(best_state)
    test = None
    test_src = corpus if test_corpus is None else test_corpus
    test_ident = ident if test_corpus is None else corpus_identity(test_corpus)
    num_classes = recipe.arch.get("num_classes")
    if test_ident["counts"]["test"] > 0:
        t = evaluate(model, recipe, data_cls(recipe, test_src, "test", samples=None, device=dev, hp=hp),
                     num_classes=num_classes)
        test = {"loss": t["loss"], **{m: t[m] for m in data_cls.METRICS}, "n": t["n"], "confusion": t.get("confusion"),
                "corpus": {"path": str(Path(test_src).absolute()), "name": test_ident.get("name"),
                           "dataset_id": test_ident.get("dataset_id"),
                           "content_sha256": test_ident.get("content_sha256")}}
        log(f"test {metric} {t[metric]:.4f} on {t['n']} samples of {test_ident.get('name')}")
    best = max(history, key=lambda h: h[f"val_{metric}"])
    val_conf = None
    if num_classes:   # the best weights' confusion on the val subset (a corpus may have no test split)
        val_conf = evaluate(model, recipe, val, num_classes=num_classes).get("confusion")
    card = {
        "method": recipe.method, "recipe_version": recipe.version,
        "architecture": {"name": type(model).__name__, **getattr(model, "config", recipe.arch)},
        "corpus": {"path": str(Path(corpus).absolute()), "name": ident.get("name"),
                   "dataset_id": ident.get("dataset_id"), "content_sha256": ident.get("content_sha256"),
                   "generator": ident.get("generator"), "counts": ident["counts"]},
        "profile": profile, "hyperparameters": hp, "recipe_fingerprint": fingerprint,
        "epochs_run": len(history), "seed": int(seed), "metric": metric,
        "val": {"best": {"epoch": best["epoch"], "loss": best["val_loss"],
                         **{m: best[f"val_{m}"] for m in data_cls.METRICS}},
                "last": {"epoch": history[-1]["epoch"], "loss": history[-1]["val_loss"],
                         **{m: history[-1][f"val_{m}"] for m in data_cls.METRICS}},
                "n": len(val), "confusion": val_conf},
        "test": test,
        "history": history,   # the training curve (log.jsonl), rendered by the report
        "wall_seconds": sum(h["seconds"] for h in history),
        "wall_seconds_this_process": time.perf_counter() - t_start,
        "peak_rss_mb": peak_rss_mb(), "memory_note": "training fields held in memory: "
        f"{train_data.nbytes} bytes (train), {val.nbytes} bytes (val subset)",
        "hardware": hardware(dev), "versions": versions(),
        "weights": {"file": MODEL, "sha256": file_sha256(out / MODEL), "dtype": "float32"},
        **(extra_card or {}),
    }
    _atomic_bytes(out / CARD, (json.dumps(card, indent=2, sort_keys=True) + "\n").encode())
    log(f"done: {out / MODEL} (best val {metric} {best[f'val_{metric}']:.4f} at epoch {best['epoch']})")
    return card
