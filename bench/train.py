"""``bench train``: check the user's input, then :func:`methods.training.train` under the output lock.

Every problem with the input is one line (:class:`datagen.errors.UserError`, exit 2) raised before
anything is written: unknown method, profile or ``--set`` key; a missing, corrupt or truncated
corpus, one of another generator, a missing or empty split; an unwritable ``--out``; an ``--out``
holding a finished run (without ``--resume``) or a checkpoint of another recipe or corpus.
"""
from __future__ import annotations

import os
from pathlib import Path

from datagen.errors import (
    OutputError,
    SourceError,
    UserError,
    unknown_name,
    writable_dir,
)

PROFILES = ("smoke", "cpu", "full")


def default_out(method: str, profile: str, seed: int) -> Path:
    return Path("runs") / "train" / f"{method}-{profile}-{seed}"


def train(method: str, corpus: str | os.PathLike, *, profile: str = "smoke", device: str = "cpu",
          out: str | os.PathLike | None = None, resume: bool = False, seed: int = 0,
          overrides: dict | None = None, test_corpus: str | os.PathLike | None = None,
          init: str | os.PathLike | None = None, progress: bool | None = None) -> dict:
    """Train ``method`` on ``corpus``; returns the model card (see :mod:`methods.training`).

    ``test_corpus``: a corpus of the same generator whose ``test`` split gives the card's test metrics.
    ``progress``: each epoch's progress on stderr as a bar (True), a line every ~10 % (False) or a bar
    on a terminal (None; :class:`datagen.progress.Progress`).
    """
    from datagen.corpus import info
    from datagen.lock import output_lock
    from methods import recipes, training

    from .store import git_info

    if method not in recipes.RECIPES:
        raise UserError(unknown_name("trainable method", method, recipes.RECIPES))
    recipe = recipes.get_recipe(method)
    if profile not in recipe.profiles:
        raise UserError(unknown_name("profile", profile, recipe.profiles))
    if seed < 0:
        raise UserError(f"--seed must be >= 0, got {seed}")
    if device not in ("cpu", "cuda") and not str(device).startswith("cuda:"):
        raise UserError(f"--device must be cpu or cuda, got {device!r}")
    if str(device).startswith("cuda"):
        import torch
        if not torch.cuda.is_available():
            raise UserError("--device cuda: no CUDA device is available here; use --device cpu")
    try:
        hp = recipe.hparams(profile, overrides)
    except KeyError as err:
        raise UserError(f"--set: {err.args[0]}") from None
    meta = info(corpus)   # missing / corrupt / truncated: one-line SourceError
    if meta["generator"] != recipe.generator:
        raise SourceError(f"{corpus}: a {meta['generator']!r} corpus; {method} trains on {recipe.generator!r} "
                          f"corpora (build one with `datagen build` and a {recipe.generator} manifest)")
    for split in ("train", "val"):
        if meta["counts"][split]["samples"] == 0:
            raise SourceError(f"{corpus}: the {split} split is empty; {method} needs train and val samples")
    if test_corpus is not None:
        tmeta = info(test_corpus)
        if tmeta["generator"] != recipe.generator:
            raise SourceError(f"--test-corpus {test_corpus}: a {tmeta['generator']!r} corpus; {method} is tested "
                              f"on {recipe.generator!r} corpora")
        if tmeta["counts"]["test"]["samples"] == 0:
            raise SourceError(f"--test-corpus {test_corpus}: the test split is empty")
        if tmeta["dataset_id"] == meta["dataset_id"]:
            raise SourceError("--test-corpus is the training corpus; give a corpus never used in training")
    ident = training.corpus_identity(corpus)
    missing = [s for s in ("train", "val") if ident["counts"][s] == 0]
    if missing:
        raise SourceError(f"{corpus}: no {' or '.join(missing)} samples stored; rebuild the corpus")
    from methods.training_data import adapter
    try:
        adapter(recipe).count(recipe, corpus, "train", hp)
    except KeyError as err:
        raise SourceError(f"{corpus}: {err.args[0]}") from None
    if recipe.init is not None and init is None:
        raise UserError(f"{method} continues an earlier stage: give --init FILE ({recipe.init[0]})")
    if recipe.init is None and init is not None:
        raise UserError(f"--init: {method} trains from scratch; drop --init")
    init_sha = None
    if init is not None:
        try:
            _, init_sha = training.load_init(init)
        except training.TrainingInputError as err:
            raise SourceError(str(err)) from None
    out = Path(out) if out is not None else default_out(method, profile, seed)
    fingerprint = recipe.fingerprint(profile, hp, seed, init_sha256=init_sha)
    if out.exists():   # checks that need no writing come first: nothing is touched on refusal
        try:
            training.check_out(out, fingerprint=fingerprint, dataset_id=meta["dataset_id"], resume=resume)
        except training.TrainingInputError as err:
            raise OutputError(str(err)) from None
    writable_dir(out, hint="choose another --out")
    with output_lock(out):
        try:
            return training.train(recipe, corpus, out=out, profile=profile, device=device, resume=resume, seed=seed,
                                  overrides=overrides, extra_card={"git": git_info()},
                                  test_corpus=test_corpus, init=init, progress=progress)
        except training.TrainingInputError as err:
            raise OutputError(str(err)) from None
