"""Blur-detection metrics (bench.metrics.detection): HiFST PR protocol, accuracy protocols."""
from __future__ import annotations

import numpy as np
import pytest

from bench.datasets.base import Sample
from bench.metrics import PredInfo, create_metric, get_metric
from bench.metrics.detection import (
    ALPHAS,
    AccuracyGlobalAlpha,
    AccuracyOracle,
    PRHiFST,
    accuracy_curve_alpha,
    average_precision,
    best_f,
    normalize_map,
    oracle_accuracy,
    pr_curve,
    pr_image,
)

from .conftest import shared_data

BLUR = PredInfo(provides="blur_map", units="score", higher="blurred")
SHARP = PredInfo(provides="blur_map", units="score", higher="sharp")

# a 2x2 map whose normalisation is exact in binary floating point: 0, 63.75, 127.5, 255
EXACT_MAP = np.array([[0.0, 64.0], [128.0, 256.0]])


def _sample(key: str, mask: np.ndarray) -> Sample:
    return Sample(key=key, image=np.zeros((*mask.shape, 3), np.float32), targets={"blur_mask": mask.astype(bool)})


def _half_mask(h: int = 8, w: int = 10) -> np.ndarray:
    mask = np.zeros((h, w), bool)
    mask[:, : w // 2] = True
    return mask


def _random_case(seed: int, shape=(24, 32)) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    mask = rng.random(shape) < 0.4
    blur = rng.random(shape) + 0.6 * mask          # informative but imperfect
    return blur, mask


# ---------------------------------------------------------------------------------------------
# normalisation and per-image PR
# ---------------------------------------------------------------------------------------------
def test_normalize_map_minmax_and_polarity():
    assert np.array_equal(normalize_map(EXACT_MAP), [[0, 63.75], [127.5, 255]])
    assert np.array_equal(normalize_map(256 - EXACT_MAP, higher="sharp"), [[0, 63.75], [127.5, 255]])
    assert np.array_equal(normalize_map(np.full((3, 3), 7.0)), np.zeros((3, 3)))            # constant -> zeros
    assert np.array_equal(normalize_map(np.full((3, 3), 7.0), higher="sharp"), np.zeros((3, 3)))
    with pytest.raises(ValueError, match="higher"):
        normalize_map(EXACT_MAP, higher="n/a")


def test_pr_image_counts_on_an_exact_map():
    res = pr_image(EXACT_MAP, np.array([[0, 0], [255, 255]]))
    p, r, valid = res["precision"], res["recall"], res["valid"]
    assert res["n_blurred"] == 2 and valid.all()
    assert p[0] == 0.5 and np.allclose(p[1:64], 2 / 3) and np.all(p[64:] == 1)
    assert np.all(r[:128] == 1) and np.all(r[128:] == 0.5)
    assert np.array_equal(res["detected"][[0, 1, 63, 64, 127, 128, 255]], [4, 3, 3, 2, 2, 1, 1])


def test_perfect_map_gives_precision_recall_and_accuracy_one():
    mask = _half_mask()
    perfect = mask.astype(float) * 3.0 + 1.0                  # any units
    res = pr_image(perfect, mask)
    assert res["precision"][0] == 0.5 and res["recall"][0] == 1
    assert np.all(res["precision"][1:] == 1) and np.all(res["recall"][1:] == 1)
    assert average_precision(res["precision"], res["recall"]) == 1.0
    assert best_f(res["precision"], res["recall"]) == (1.0, 1)
    acc = accuracy_curve_alpha(perfect, mask)
    assert acc[0] == 0.5 and np.all(acc[1:] == 1)               # alpha = 0 predicts all blurred
    assert oracle_accuracy(perfect, mask) == 1.0


def test_sharpness_map_with_higher_sharp_equals_the_inverted_blur_map():
    blur, mask = _random_case(1)
    sharp = 5.0 - 2.0 * blur                                  # other units, other direction
    assert np.allclose(normalize_map(sharp, higher="sharp"), normalize_map(blur), atol=1e-9)
    a, b = pr_image(sharp, mask, higher="sharp"), pr_image(blur, mask)
    for key in ("precision", "recall", "valid", "tp", "detected"):
        assert np.array_equal(a[key], b[key]), key
    assert np.array_equal(accuracy_curve_alpha(sharp, mask, higher="sharp"), accuracy_curve_alpha(blur, mask))
    assert oracle_accuracy(sharp, mask, higher="sharp") == oracle_accuracy(blur, mask)
    # read with the wrong polarity the same map scores worse
    assert average_precision(**_pr(pr_image(sharp, mask))) < average_precision(**_pr(b))


def _pr(res: dict) -> dict:
    return {"precision": res["precision"], "recall": res["recall"]}


def test_map_is_resized_to_the_mask():
    mask = _half_mask(16, 20)
    small = _half_mask(8, 10).astype(float)
    res = pr_image(small, mask)
    assert res["n_blurred"] == mask.sum() and res["tp"].shape == (256,)
    assert res["precision"][128] == 1.0 and res["recall"][128] == 1.0
    # normalised first, then resized (as HiFST): cubic undershoot below 0 is kept, so not every pixel is >= 0
    assert res["detected"][0] < mask.size
    assert accuracy_curve_alpha(small, mask)[50] == 1.0
    assert oracle_accuracy(small, mask) == 1.0


# ---------------------------------------------------------------------------------------------
# dataset curve, AP, F
# ---------------------------------------------------------------------------------------------
def test_pr_curve_adds_points_only_when_tp_positive_and_divides_by_image_count():
    a = pr_image(EXACT_MAP, np.array([[0, 0], [1, 1]]))
    b = pr_image(EXACT_MAP, np.array([[0, 1], [0, 0]]))       # only the 63.75 pixel blurred: TP = 0 for t >= 64
    assert b["valid"][:64].all() and not b["valid"][64:].any()
    p, r = pr_curve([a, b], 2)
    assert p[0] == 0.375 and np.allclose(p[1:64], 0.5) and np.allclose(p[64:], 0.5)
    assert np.all(r[:64] == 1) and np.all(r[64:128] == 0.5) and np.all(r[128:] == 0.25)
    p3, r3 = pr_curve([a, b], 3)                              # a third image that never contributes
    assert np.allclose(p3, p * 2 / 3) and np.allclose(r3, r * 2 / 3)
    assert np.array_equal(pr_curve([a, b])[0], p)             # default divisor = number of results
    with pytest.raises(ValueError, match="n_images"):
        pr_curve([a, b], 1)


def test_average_precision_is_the_step_sum_over_decreasing_recall():
    p, r = [0.5, 0.8, 1.0], [1.0, 0.6, 0.2]                     # thresholds increasing
    assert average_precision(p, r) == pytest.approx(0.4 * 0.5 + 0.4 * 0.8 + 0.2 * 1.0)   # 0.72
    assert average_precision(p[::-1], r[::-1]) == pytest.approx(0.72)                  # order-free
    # tied recall: the gain goes to the last point of the run (the highest threshold)
    assert average_precision([0.5, 0.9, 0.7], [1.0, 0.5, 0.5]) == pytest.approx(0.5 * 0.5 + 0.5 * 0.7)
    assert average_precision([], []) == 0.0
    assert average_precision([0.0, 0.0], [0.0, 0.0]) == 0.0


def test_best_f_hand_computed():
    p, r = [0.5, 0.8, 1.0], [1.0, 0.6, 0.2]
    f, i = best_f(p, r)
    assert i == 1 and f == pytest.approx(2 * 0.8 * 0.6 / 1.4)
    f03, i03 = best_f(p, r, beta2=0.3)
    assert i03 == 1 and f03 == pytest.approx(1.3 * 0.48 / (0.3 * 0.8 + 0.6))
    assert best_f([0.0, 0.0], [0.0, 0.0]) == (0.0, 0)


# ---------------------------------------------------------------------------------------------
# accuracy protocols
# ---------------------------------------------------------------------------------------------
def test_alpha_threshold_rule():
    row = np.array([[0.0, 0.3, 0.9, 1.0]])
    mask = np.array([[False, False, True, True]])
    acc = accuracy_curve_alpha(row, mask, alphas=[0.0, 0.3, 0.31, 0.9, 0.91, 1.0])
    # alpha 0.3: tau = 0.3, the 0.3 pixel is >= tau -> blurred (wrong); 0.91: only 1.0 blurred
    assert np.allclose(acc, [0.5, 0.75, 1.0, 1.0, 0.75, 0.75])
    assert oracle_accuracy(row, mask) == 1.0
    assert oracle_accuracy(np.zeros((1, 4)), mask) == 0.5     # constant map: all / nothing blurred


def test_oracle_bounds_every_alpha():
    for seed in range(5):
        blur, mask = _random_case(seed)
        assert oracle_accuracy(blur, mask) >= accuracy_curve_alpha(blur, mask).max()


def test_global_alpha_is_one_alpha_for_all_images_and_below_the_oracle():
    mask = np.array([[False, False, True, True]])
    # image 1 is right for alpha in (0.3, 0.9], image 2 for alpha in (0.1, 0.2]: no common alpha
    maps = {"one": np.array([[0.0, 0.3, 0.9, 1.0]]), "two": np.array([[0.0, 0.1, 0.2, 1.0]])}
    metric = AccuracyGlobalAlpha()
    states = {k: metric.per_sample(m, _sample(k, mask), BLUR) for k, m in maps.items()}
    assert all(s["acc"].shape == (101,) for s in states.values())
    res = metric.reduce(states)
    # both plateaus reach mean 0.875; ties go to the smallest alpha: 0.11
    assert res.extras == {"alpha": 0.11}
    assert res.value == pytest.approx(0.875)
    assert res.per_sample == {"one": 0.75, "two": 1.0}
    assert len(res.curves["accuracy_alpha"]["alpha"]) == 101
    oracle = AccuracyOracle()
    ores = oracle.reduce({k: oracle.per_sample(m, _sample(k, mask), BLUR) for k, m in maps.items()})
    assert ores.value == 1.0 > res.value
    assert ores.per_sample == {"one": 1.0, "two": 1.0}


# ---------------------------------------------------------------------------------------------
# Metric classes
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, cls", [("accuracy_alpha", AccuracyGlobalAlpha), ("accuracy_oracle", AccuracyOracle),
                                       ("pr_hifst", PRHiFST)])
def test_registry_and_specs(name, cls):
    assert get_metric(name) is cls
    spec = cls.spec
    assert spec.name == name and spec.task == "detection" and spec.needs == ("blur_mask",)
    assert spec.accepts == ("blur_map",) and spec.higher_is_better and spec.unit == "fraction"
    assert spec.version == "1" and 0 < spec.threshold <= 0.01 and spec.conventions
    metric = create_metric(name)
    assert metric.applicable(BLUR) is None and metric.applicable(SHARP) is None
    assert "polarity" in metric.applicable(PredInfo(higher="n/a"))
    assert metric.applicable(PredInfo(provides="restored_image", higher="n/a"))


def test_pr_metric_reduce_on_perfect_and_reversed_maps():
    mask = _half_mask()
    metric = PRHiFST()
    good = metric.per_sample(mask * 2.0, _sample("a", mask), BLUR)
    flipped = metric.per_sample(mask * 2.0, _sample("b", mask), SHARP)   # reads the map the wrong way round
    res = metric.reduce({"a": good, "b": flipped})
    assert res.per_sample["a"] == 1.0 and res.per_sample["b"] == 0.5    # b: only t = 0 has TP > 0 (P = 0.5)
    curve = res.curves["pr"]
    assert curve["threshold"] == list(range(256))
    assert len(curve["precision"]) == len(curve["recall"]) == 256
    assert all(type(x) is float for x in curve["precision"] + curve["recall"])
    assert curve["precision"][0] == 0.5 and curve["recall"][0] == 1.0
    assert curve["precision"][1] == 0.5 and curve["recall"][1] == 0.5     # divided by 2 images
    assert res.extras["best_f_threshold"] == 0.0 and res.extras["best_f"] == pytest.approx(2 / 3)
    assert res.value == pytest.approx(0.5 * 0.5 + 0.5 * 0.5)            # (1 - 0.5) * 0.5 + 0.5 * 0.5
    alone = metric.reduce({"a": good})
    assert alone.value == 1.0 and alone.extras == {"best_f": 1.0, "best_f_threshold": 1.0}


def test_empty_reduce_is_nan():
    for cls in (AccuracyGlobalAlpha, AccuracyOracle, PRHiFST):
        res = cls().reduce({})
        assert np.isnan(res.value) and res.per_sample == {}


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_maps_raise(bad):
    mask = _half_mask()
    blur = mask.astype(float)
    blur[2, 3] = bad
    for fn in (normalize_map, lambda m: pr_image(m, mask), lambda m: accuracy_curve_alpha(m, mask),
               lambda m: oracle_accuracy(m, mask)):
        with pytest.raises(ValueError, match="NaN or infinite"):
            fn(blur)
    for cls in (AccuracyGlobalAlpha, AccuracyOracle, PRHiFST):
        with pytest.raises(ValueError, match="NaN or infinite"):
            cls().per_sample(blur, _sample("k", mask), BLUR)


def test_non_2d_inputs_raise():
    mask = _half_mask()
    with pytest.raises(ValueError, match="2-D"):
        pr_image(np.zeros((*mask.shape, 3)), mask)
    with pytest.raises(ValueError, match="2-D"):
        oracle_accuracy(mask.astype(float), mask[None])
    with pytest.raises(ValueError, match="blur_mask"):
        PRHiFST().per_sample(mask.astype(float), Sample(key="k", image=np.zeros((8, 10, 3), np.float32)), BLUR)


def test_alpha_grid():
    assert ALPHAS.shape == (101,) and ALPHAS[0] == 0 and ALPHAS[-1] == 1 and ALPHAS[37] == 0.37


# ---------------------------------------------------------------------------------------------
# real data: the published HiFST curve on all 1000 CUHK images
# ---------------------------------------------------------------------------------------------
@pytest.mark.realdata
def test_hifst_maps_reproduce_the_published_pr_curve():
    import cv2

    gt_dir, map_dir = shared_data("cuhk", "gt"), shared_data("cuhk", "hifst_maps")
    ref = np.loadtxt(shared_data("cuhk", "reference_pr", "BlurDetection_HiFSTBlurMap_PRCurve.txt"))
    gts = sorted(gt_dir.glob("*.png"))
    assert len(gts) == 1000 and ref.shape == (256, 2)
    results = []
    for gt in gts:
        mask = cv2.imread(str(gt), cv2.IMREAD_GRAYSCALE)
        blur_map = cv2.imread(str(map_dir / f"{gt.stem}_HiFSTBlurMap.png"), cv2.IMREAD_GRAYSCALE)
        assert mask is not None and blur_map is not None, gt.stem
        results.append(pr_image(blur_map, mask, higher="sharp"))          # HiFST maps: high = sharp
    precision, recall = pr_curve(results, len(gts))
    dev = max(np.abs(precision - ref[:, 0]).max(), np.abs(recall - ref[:, 1]).max())
    assert dev < 0.005, f"max deviation from the published curve: {dev:.3g}"
    assert dev < 1e-6, f"max deviation {dev:.3g}: the exact protocol reproduces the curve to its 6 printed decimals"
    assert average_precision(precision, recall) == pytest.approx(average_precision(ref[:, 0], ref[:, 1]), abs=1e-5)
