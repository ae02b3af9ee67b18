"""The report's "Learned methods" section: the model card of every weights file a run used.

``run.json`` carries, per method, ``weights: {name: {origin, path, sha256, card}}``, where ``card``
is the model card of exactly that file (:func:`bench.weights.card_for`).  Each distinct file (by
sha256; ``galetto2022``, ``galetto2022_um`` and ``galetto2022_sdof`` share one) gets:

* a table of the card's facts: the methods that used it, origin, sha256, corpus (name,
  ``dataset_id``, ``content_sha256``, samples per split), profile and hyper-parameters, epochs,
  seed, best validation and test accuracy (with the test corpus), wall time, hardware, git sha and
  package versions;
* the training curve (loss and accuracy per epoch, train and val) from ``card["history"]``;
* for a level classifier, the test confusion matrix (rows = true level, columns = predicted;
  each row normalised to 1, so the diagonal is the per-class recall).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from markupsafe import Markup

from .env import render
from .plots import confusion_plot, figure, plot_context, svg


def _cards(methods_meta: dict) -> list[tuple[dict, dict, list[str]]]:
    """``[(card, weights record, methods)]``, one per distinct weights file (sha256), in method order."""
    seen: dict[str, tuple[dict, dict, list[str]]] = {}
    for method, meta in methods_meta.items():
        for name, rec in ((meta or {}).get("weights") or {}).items():
            card = rec.get("card") if isinstance(rec, dict) else None
            if not isinstance(card, dict):
                continue
            key = str(rec.get("sha256"))
            if key not in seen:
                seen[key] = (card, dict(rec, name=name), [])
            seen[key][2].append(method)
    return list(seen.values())


def _get(card: dict, *path: str) -> Any:
    cur: Any = card
    for p in path:
        cur = cur.get(p) if isinstance(cur, dict) else None
    return cur


def _pct(value: Any) -> str:
    return f"{100 * value:.2f} %" if isinstance(value, (int, float)) else "?"


def _within_one(confusion: Any) -> str:
    """``", within one level NN.NN %"`` for a level classifier's confusion matrix (rows = true level):
    the share of predictions at most one level off (ordered classes), or ``""``."""
    m = np.asarray(confusion if confusion else [], dtype=np.float64)
    if m.ndim != 2 or m.shape[0] != m.shape[1] or m.sum() <= 0:
        return ""
    i, j = np.indices(m.shape)
    return f", within one level {_pct(m[np.abs(i - j) <= 1].sum() / m.sum())}"


def _scores(entry: dict) -> str:
    """A card's scores in words: accuracy (classifiers) or SSIM / PSNR (restoration)."""
    if "ssim" in entry:
        return f"SSIM {entry['ssim']:.4f} · PSNR {entry.get('psnr', float('nan')):.2f} dB"
    return f"accuracy {_pct(entry.get('acc'))}"


def _facts(card: dict, rec: dict, methods: list[str]) -> list[tuple[str, str]]:
    corpus = card.get("corpus") or {}
    test = card.get("test") or {}
    test_corpus = test.get("corpus") or corpus
    hw = card.get("hardware") or {}
    secs = card.get("wall_seconds")
    counts = corpus.get("counts") or {}
    return [
        ("used by", ", ".join(methods)),
        ("weights", f"{rec.get('name')} ({rec.get('origin')}) sha256 {str(rec.get('sha256'))[:16]}…"),
        ("architecture", json.dumps(card.get("architecture"), sort_keys=True)),
        ("training corpus", f"{corpus.get('name')} · dataset_id {corpus.get('dataset_id')} · content_sha256 "
                            f"{str(corpus.get('content_sha256'))[:16]}… · "
                            + ", ".join(f"{k} {v:,}" for k, v in counts.items() if isinstance(v, int))),
        ("profile", (f"{card.get('profile')} · {card.get('epochs_run')} epochs · seed {card.get('seed')} · "
                     f"recipe {card.get('method')} v{card.get('recipe_version')}")),
        ("hyper-parameters", json.dumps(card.get("hyperparameters"), sort_keys=True)),
        *([("starts from", (f"{Path(str(_get(card, 'init', 'path'))).name} sha256 "
                           f"{str(_get(card, 'init', 'sha256'))[:16]}… (the earlier stage's weights)"))]
          if card.get("init") else []),
        ("validation", (f"best {_scores(_get(card, 'val', 'best') or {})}"
                        f"{_within_one(_get(card, 'val', 'confusion'))} at epoch "
                        f"{_get(card, 'val', 'best', 'epoch')} (n {_get(card, 'val', 'n')})")),
        ("test", "none" if not test else f"{_scores(test)}{_within_one(test.get('confusion'))} on "
                                         f"{test.get('n')} samples of {test_corpus.get('name')} "
                                         f"(dataset_id {test_corpus.get('dataset_id')})"),
        ("training time", "?" if not isinstance(secs, (int, float)) else f"{secs / 60:.1f} min on {hw.get('cpu')} "
                          f"({hw.get('cores')} cores, {hw.get('torch_threads')} torch threads, {hw.get('device')}"
                          + (f", {hw['gpu']}" if hw.get("gpu") else "") + ")"),
        ("git", f"{_get(card, 'git', 'sha') or '?'}" + (" (uncommitted changes)" if _get(card, "git", "dirty") else "")),
        ("versions", ", ".join(f"{k} {v}" for k, v in (card.get("versions") or {}).items())),
    ]


def _curve(card: dict, prefix: str) -> Markup | None:
    hist = [h for h in card.get("history") or [] if isinstance(h, dict) and "epoch" in h]
    if not hist:
        return None
    epochs = [h["epoch"] for h in hist]
    fig, ax = figure(6.0, 3.6)
    ax2 = ax.twinx()
    for key, style in (("train_loss", "-"), ("val_loss", "--")):
        ax.plot(epochs, [h.get(key, np.nan) for h in hist], style, color="tab:red", label=key.replace("_", " "))
    metric = card.get("metric", "acc")
    for key, style in ((f"train_{metric}", "-"), (f"val_{metric}", "--")):
        ax2.plot(epochs, [h.get(key, np.nan) for h in hist], style, color="tab:blue", label=key.replace("_", " "))
    ax.set_xlabel("epoch")
    ax.set_ylabel("cross-entropy loss" if metric == "acc" else "loss (1 - SSIM)", color="tab:red")
    ax2.set_ylabel("accuracy" if metric == "acc" else metric.upper(), color="tab:blue")
    ax2.set_ylim(0, 1)
    ax2.grid(False)
    lines = ax.get_lines() + ax2.get_lines()
    ax.legend(lines, [ln.get_label() for ln in lines], loc="center right", fontsize=8)
    ax.set_title("training curve")
    return svg(fig, prefix + "-curve")


def _confusion(card: dict, prefix: str) -> Markup | None:
    """The test confusion matrix, or the validation one when the card has no test split."""
    split = "test" if _get(card, "test", "confusion") else "val"
    conf = _get(card, split, "confusion")
    if not conf:
        return None
    m = np.asarray(conf, dtype=np.float64)
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        return None
    acc = np.trace(m) / max(m.sum(), 1)
    return confusion_plot(m, title=f"{split} confusion (accuracy {acc:.3f}, n {int(m.sum()):,})", prefix=prefix)


def cards_section(methods_meta: dict) -> Markup:
    """The "Learned methods" section (a note when no method of the run has a model card)."""
    cards = []
    with plot_context():
        for i, (card, rec, methods) in enumerate(_cards(methods_meta)):
            # a staged method ships one file merged from several runs: one card per run (``parts``)
            stages = card.get("parts") if isinstance(card.get("parts"), dict) else {"": card}
            parts = []
            for j, (stage, sub) in enumerate(stages.items()):
                if isinstance(sub, dict):
                    prefix = f"card{i}-{j}"
                    plots = [p for p in (_curve(sub, prefix), _confusion(sub, prefix)) if p]
                    parts.append({"stage": stage, "method": sub.get("method"), "facts": _facts(sub, rec, methods),
                                  "plots": plots})
            cards.append({"name": rec.get("name"), "parts": parts})
    return render("sections/cards.html.j2", cards=cards)
