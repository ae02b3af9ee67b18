"""Training SVBR-Net (svbr2022) with ``bench train`` on an svpsf39 corpus: the two stages of the paper
(GT maps, then the propagated maps from the first stage's weights), restoration metrics in the card,
deterministic weights, the sample numbering of the restoration adapter."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from datagen.manifest import load_manifest
from datagen.runner import build
from methods import training
from methods.recipes import get_recipe
from methods.training_data import RestorationPairs

from .conftest import run_bench
from .test_generator_contract import QUIET, REPO


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    manifest = load_manifest(REPO / "manifests" / "demo_svpsf39.yaml")
    return build(manifest, out=tmp_path_factory.mktemp("svp") / "svp.h5", workers=1, limit=6, **QUIET).path


def test_restoration_samples_number_rows_maps_and_map_fields(corpus):
    hp = {"maps": "dt,matting", "crop": 32}
    recipe = get_recipe("svbr2022")
    data = RestorationPairs(recipe, corpus, "train", samples=None, device="cpu", hp=hp)
    rows, per_row = data.blurred.shape[:2]
    assert len(data) == rows * per_row * 2 == RestorationPairs.count(recipe, corpus, "train", hp)
    k = 2 * per_row + 2 * 5 + 1                         # row 1, map 5, the second field (matting)
    (img, radius), sharp = data.batch(np.array([k]), train=False, seed=0, epoch=0, step=0)
    assert img.shape == (1, 3, 96, 96) and radius.shape == (1, 1, 96, 96) and sharp.shape == (1, 3, 96, 96)
    assert torch.equal((img[0] * 255).round().to(torch.uint8).permute(1, 2, 0), torch.from_numpy(data.blurred[1, 5]))
    assert torch.equal((radius[0, 0] * 24).round().to(torch.uint8), torch.from_numpy(data.map_arrays[1][1, 5]))
    # training crops: the same (seed, epoch, step) draw the same windows, another step others
    a = data.batch(np.arange(4), train=True, seed=1, epoch=2, step=3)
    b = data.batch(np.arange(4), train=True, seed=1, epoch=2, step=3)
    c = data.batch(np.arange(4), train=True, seed=1, epoch=2, step=4)
    assert a[0][0].shape == (4, 3, 32, 32) and torch.equal(a[0][0], b[0][0]) and not torch.equal(a[0][0], c[0][0])
    with pytest.raises(KeyError, match="maps"):
        RestorationPairs.map_fields({"maps": "gt,blurry"})


def test_two_stages_train_and_the_card_reports_ssim_and_psnr(corpus, tmp_path):
    first, second = tmp_path / "gt", tmp_path / "est"
    proc = run_bench("train", "svbr2022_gt", "--corpus", str(corpus), "--profile", "smoke", "--out", str(first))
    assert proc.returncode == 0, proc.stderr
    assert "best val ssim" in proc.stdout and "test ssim" in proc.stdout
    card = json.loads((first / "model_card.json").read_text())
    assert card["metric"] == "ssim" and card["hyperparameters"]["maps"] == "gt"
    assert 0 < card["val"]["best"]["ssim"] <= 1 and card["test"]["psnr"] > 0 and card["test"]["n"] > 0
    assert {"train_ssim", "val_ssim", "val_psnr"} <= set(card["history"][0])
    # stage 2 needs stage 1
    proc = run_bench("train", "svbr2022", "--corpus", str(corpus), "--profile", "smoke", "--out", str(second))
    assert proc.returncode == 2 and "--init" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    proc = run_bench("train", "svbr2022", "--corpus", str(corpus), "--profile", "smoke", "--out", str(second),
                     "--init", str(first / "model.pt"))
    assert proc.returncode == 0, proc.stderr
    card2 = json.loads((second / "model_card.json").read_text())
    assert card2["hyperparameters"]["maps"] == "dt,matting" and card2["init"]["sha256"] == card["weights"]["sha256"]
    # stage 2 starts from stage 1's weights: after its first epoch it is still close to them
    w1 = torch.load(first / "model.pt", weights_only=True)
    w2 = torch.load(second / "model.pt", weights_only=True)
    fresh = get_recipe("svbr2022").make_model(seed=0).state_dict()
    key = "out.weight"
    assert (w2[key] - w1[key]).abs().mean() < (w2[key] - fresh[key]).abs().mean()


def test_same_corpus_recipe_and_seed_give_the_same_weights(corpus, tmp_path):
    recipe = get_recipe("svbr2022_gt")
    cards = []
    for i in range(2):
        (tmp_path / str(i)).mkdir()
        cards.append(training.train(recipe, corpus, out=tmp_path / str(i), profile="smoke", seed=3, threads=1,
                                    overrides={"epochs": 1}, log=lambda m: None))
    assert cards[0]["weights"]["sha256"] == cards[1]["weights"]["sha256"]


def test_the_second_stage_continues_the_papers_learning_rate_schedule():
    hp = get_recipe("svbr2022").hparams("full")
    assert hp["lr_epoch_offset"] == 32
    lrs = [training.learning_rate(hp, step=e, total=32, steps_per_epoch=1) for e in (0, 7, 8, 27, 28)]
    assert lrs == pytest.approx([1e-4, 1e-4, 1e-5, 1e-5, 1e-6])   # epochs 32, 39, 40, 59, 60 of the paper's 64
