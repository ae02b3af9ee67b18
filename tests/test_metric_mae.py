"""bench.metrics.mae: unit conversion, hand-computed MAE values, crop, n/a rules, reduction."""
from __future__ import annotations

import numpy as np
import pytest

from bench.datasets.base import Sample
from bench.metrics import create_metric, get_metric
from bench.metrics.base import PredInfo
from bench.metrics.mae import (
    MAEDMENet,
    MAERadius,
    MAERelative,
    mae,
    to_radius,
    to_sigma,
)
from datagen.psf import MAX_SIGMA

GT = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], dtype=np.float32)
PRED = np.array([[1.5, 2.0, 2.0], [4.0, 6.0, 6.0]], dtype=np.float32)
RAW = 2.5 / 6          # |diff| = 0.5, 0, 1, 0, 1, 0

RADIUS = PredInfo(provides="blur_map", units="radius_px", higher="blurred")
SIGMA = PredInfo(provides="blur_map", units="sigma_px", higher="blurred")
RELATIVE = PredInfo(provides="blur_map", units="relative", higher="blurred")


def sample(gt=GT, key="s0") -> Sample:
    return Sample(key, np.zeros((*gt.shape, 3), np.float32), {"radius_map": np.asarray(gt, np.float32)})


def test_registry_names():
    assert get_metric("mae_radius") is MAERadius
    assert get_metric("mae_relative") is MAERelative
    assert get_metric("mae_dmenet") is MAEDMENet
    for cls in (MAERadius, MAERelative, MAEDMENet):
        assert cls.spec.needs == ("radius_map",) and cls.spec.accepts == ("blur_map",)
        assert cls.spec.higher_is_better is False and cls.spec.threshold > 0


def test_mae_hand_computed():
    assert mae(PRED, GT) == pytest.approx(RAW)
    assert mae(GT, GT) == 0.0
    with pytest.raises(ValueError, match=r"shape \(2, 2\).*shape \(2, 3\)") as err:
        mae(PRED[:, :2], GT)
    assert "\n" not in str(err.value)


def test_to_radius_units_and_modes():
    # table rows map exactly; between rows linear vs nearest differ
    assert to_radius([0.3, 1.65, 3.275], "sigma_px") == pytest.approx([0.5, 3.0, 6.0])
    assert to_radius(0.45, "sigma_px", mode="linear") == pytest.approx(0.5 + 0.75 * 0.25)
    assert to_radius(0.45, "sigma_px", mode="nearest") == pytest.approx(0.75)
    assert to_radius(5.0, "sigma_px") == pytest.approx(6.0)             # clamped above the table
    assert to_radius(0.15, "sigma_px") == pytest.approx(0.25)           # linear to 0 below it
    assert to_radius([0.0, 0.5, 1.0], "relative") == pytest.approx([0.0, 3.0, 6.0])
    assert to_radius(2.5, "radius_px") == 2.5
    assert to_sigma(6.0, "radius_px") == pytest.approx(MAX_SIGMA)
    assert to_sigma(1.0, "relative") == pytest.approx(MAX_SIGMA)
    with pytest.raises(ValueError, match="score"):
        to_radius(np.ones(3), "score")
    with pytest.raises(ValueError, match="mode"):
        to_radius(np.ones(3), "sigma_px", mode="cubic")


def test_mae_radius_metric_units():
    m = MAERadius()
    assert m.per_sample(PRED, sample(), RADIUS)["value"] == pytest.approx(RAW)
    # the same prediction expressed as sigma (via the table) or as a relative map scores the same
    sig = to_sigma(PRED, "radius_px")
    assert m.per_sample(sig, sample(), SIGMA)["value"] == pytest.approx(RAW)
    assert m.per_sample(PRED / 6, sample(), RELATIVE)["value"] == pytest.approx(RAW)


def test_mae_relative_is_raw_over_six():
    assert MAERelative().per_sample(PRED, sample(), RADIUS)["value"] == pytest.approx(RAW / 6)


def test_mae_dmenet_hand_computed():
    # GT radius 3 -> sigma 1.65 (table row); GT radius 6 -> sigma 3.275
    gt = np.array([[3.0, 6.0]], np.float32)
    pred_sigma = np.array([[1.65 + 0.3275, 4.0]], np.float32)    # 0.1 relative error, then clipped to 0
    v = MAEDMENet().per_sample(pred_sigma, sample(gt), SIGMA)["value"]
    assert v == pytest.approx((0.3275 / 3.275 + 0.0) / 2, abs=1e-6)
    # a relative map is read as sigma / 3.275
    v = MAEDMENet().per_sample(np.array([[1.65 / 3.275, 1.0]]), sample(gt), RELATIVE)["value"]
    assert v == pytest.approx(0.0, abs=1e-7)


def test_conversion_mode_changes_sigma_predictions():
    gt = np.full((2, 2), 0.75, np.float32)
    pred = np.full((2, 2), 0.45, np.float32)       # sigma between rows 0.3 and 0.5 (nearer 0.5)
    lin = MAERadius(mode="linear").per_sample(pred, sample(gt), SIGMA)
    near = MAERadius(mode="nearest").per_sample(pred, sample(gt), SIGMA)
    assert lin["value"] == pytest.approx(0.75 - 0.6875)
    assert near["value"] == pytest.approx(0.0)
    assert lin["mode"] == "linear" and near["mode"] == "nearest"
    assert MAERadius(mode="nearest").spec.conventions["conversion"] == "nearest"
    with pytest.raises(ValueError, match="mode"):
        MAERadius(mode="cubic")


def test_crop_rtf340_drops_the_rightmost_20_columns():
    gt = np.full((3, 25), 2.0, np.float32)
    pred = gt.copy()
    pred[:, -20:] += 1.0          # errors only in the columns the crop drops
    pred[0, 0] += 0.5
    full = MAERadius().per_sample(pred, sample(gt), RADIUS)["value"]
    cropped = MAERadius(crop="rtf340").per_sample(pred, sample(gt), RADIUS)
    assert full == pytest.approx((60 + 0.5) / 75)
    assert cropped["value"] == pytest.approx(0.5 / 15)
    assert cropped["crop"] == "rtf340"
    assert mae(pred, gt, crop="rtf340") == pytest.approx(0.5 / 15)
    assert MAERadius(crop="rtf340").spec.conventions["crop"] == "rtf340"
    assert MAERadius(crop="none").crop is None
    with pytest.raises(ValueError, match="crop"):
        MAERadius(crop="rtf300")
    with pytest.raises(ValueError, match="crop"):
        mae(np.ones((2, 20)), np.ones((2, 20)), crop="rtf340")


def test_shape_mismatch_is_one_line():
    with pytest.raises(ValueError) as err:
        MAERadius().per_sample(PRED[:, :2], sample(), RADIUS)
    assert "shape" in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("cls", [MAERadius, MAERelative, MAEDMENet])
def test_not_applicable(cls):
    m = cls()
    assert m.applicable(RADIUS) is None and m.applicable(SIGMA) is None and m.applicable(RELATIVE) is None
    score = PredInfo(provides="blur_map", units="score", higher="blurred")
    assert "score" in m.applicable(score)
    assert "sharp" in m.applicable(PredInfo(provides="blur_map", units="radius_px", higher="sharp"))
    assert m.applicable(PredInfo(provides="restored_image", units="image", higher="n/a"))
    with pytest.raises(ValueError, match="score"):
        m.per_sample(PRED, sample(), score)


def test_reduce_mean_std_and_options():
    m = create_metric("mae_radius")
    states = {f"s{i}": m.per_sample(PRED + i * 0.5, sample(key=f"s{i}"), RADIUS) for i in range(3)}
    res = get_metric("mae_radius")().reduce(states)     # the harness reduces on a fresh instance
    per = [mae(PRED + i * 0.5, GT) for i in range(3)]
    assert res.per_sample == pytest.approx(dict(zip(states, per)))
    assert res.value == pytest.approx(np.mean(per))
    assert res.extras["std"] == pytest.approx(np.std(per, ddof=1))
    assert res.extras["crop"] == "none" and res.extras["mode"] == "linear"
    one = m.reduce({"s0": states["s0"]})
    assert "std" not in one.extras and one.value == pytest.approx(per[0])
    assert np.isnan(m.reduce({}).value)


def test_relative_maps_also_report_per_image_gt_max():
    m = MAERadius()
    rel = PRED / 6
    st = m.per_sample(rel, sample(), RELATIVE)
    assert st["value"] == pytest.approx(RAW)
    assert st["value_gt_max"] == pytest.approx(mae(rel * GT.max(), GT))
    gt2 = GT / 2                                  # GT max 3: the two protocols differ
    st2 = m.per_sample(rel, sample(gt2, key="s1"), RELATIVE)
    assert st2["value_gt_max"] == pytest.approx(mae(rel * 3.0, gt2))
    res = m.reduce({"s0": st, "s1": st2})
    assert res.extras["mean_gt_max"] == pytest.approx((st["value_gt_max"] + st2["value_gt_max"]) / 2)
    assert "value_gt_max" not in m.per_sample(PRED, sample(), RADIUS)


def test_unknown_option_is_rejected():
    with pytest.raises(ValueError, match="unknown option"):
        MAERadius(croop="rtf340")
