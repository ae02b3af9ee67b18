"""SVBR-Net (methods/nets/svbr_net.py), its SSIM loss (methods/nets/ssim.py) and the svbr2022 method.

The network is an untrained SVBRNet with a fixed seed whose BN statistics are calibrated on one
random batch (see ``_net``): its outputs then span most of [0, 1] (a fresh network's stay near
0.5), so comparisons between code paths are not trivially satisfied.
"""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from datagen.errors import UserError
from methods.map_units import MapUnitsError
from methods.nets.ssim import gaussian_window, ssim, ssim_loss, ssim_map
from methods.nets.svbr_net import (
    HALO,
    MAP_SCALE,
    N_PARAMS,
    SVBRNet,
    Up,
    count_parameters,
    fold_batchnorm,
    forward_tiled,
)
from methods.svbr2022 import SVBR2022


def _net(seed: int = 0) -> SVBRNet:
    net = SVBRNet(seed=seed)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None          # cumulative average: one pass sets the batch statistics
            m.reset_running_stats()
    g = torch.Generator().manual_seed(seed)
    net.train()
    with torch.no_grad():
        net(torch.rand(4, 3, 64, 64, generator=g), torch.rand(4, 1, 64, 64, generator=g))
    return net.eval()


@pytest.fixture(scope="module")
def net():
    return _net()


@pytest.fixture(scope="module")
def weights(net, tmp_path_factory):
    path = tmp_path_factory.mktemp("w") / "svbr2022_test.pt"
    torch.save(net.state_dict(), path)
    return str(path)


def _inputs(h, w, n=1, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, h, w, generator=g), torch.rand(n, 1, h, w, generator=g)


def _photo(h, w, seed=0):
    """Smooth colour field plus texture, float32 (H, W, 3) in [0, 1], and a radius map (px) 0..7."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    base = np.stack([0.5 + 0.4 * np.sin(6 * x), 0.5 + 0.4 * np.cos(5 * y), 0.3 + 0.5 * x * y], -1)
    img = np.clip(base + 0.15 * rng.standard_normal((h, w, 3)), 0, 1).astype(np.float32)
    radius = (7.0 * x * w / max(w - 1, 1)).astype(np.float32)     # 0 .. 7 px left to right
    return img, radius


# ---------------------------------------------------------------------------- network
@pytest.mark.parametrize("align", ["symmetric", "keras"])
def test_parameter_count(align):
    net = SVBRNet(transpose_align=align)
    assert count_parameters(net) == N_PARAMS == 362_099          # METHODS.md 7.1, BN gamma/beta included
    bn = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert all(m.eps == 1e-3 and m.momentum == 0.01 for m in bn)  # Keras defaults
    assert sum(2 * m.num_features for m in bn) == sum(b.numel() for k, b in net.named_buffers() if "running" in k)


@pytest.mark.parametrize("hw", [(64, 48), (37, 50), (5, 3), (1, 1)])
def test_output_shape_any_size(net, hw):
    x, m = _inputs(*hw, n=2)
    with torch.inference_mode():
        y = net(x, m)
    assert y.shape == x.shape and y.dtype == torch.float32


def test_output_in_unit_range(net):
    x, m = _inputs(48, 40, n=2)
    with torch.inference_mode():
        y = net(x * 50 - 25, m * 50)           # far outside the training range: still a sigmoid
        z = net(x, m)
    assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0
    assert float(z.max() - z.min()) > 0.5        # the calibrated net is not a constant


def test_padding_is_replicate_bottom_right(net):
    x, m = _inputs(37, 50)
    xp = torch.nn.functional.pad(x, (0, 2, 0, 3), mode="replicate")
    mp = torch.nn.functional.pad(m, (0, 2, 0, 3), mode="replicate")
    with torch.inference_mode():
        y, yp = net(x, m), net(xp, mp)
    assert torch.allclose(y, yp[..., :37, :50], atol=1e-6)


def test_forward_checks_shapes(net):
    x, m = _inputs(16, 16)
    with pytest.raises(ValueError, match="blur_map"):
        net(x, m[..., :8])
    with pytest.raises(ValueError, match="image"):
        net(x[:, :1], m)
    with pytest.raises(ValueError):
        SVBRNet(transpose_align="same")


def test_deterministic_init():
    a, b, c = SVBRNet(seed=3).state_dict(), SVBRNet(seed=3).state_dict(), SVBRNet(seed=4).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    for key in ("x01.conv.weight", "b14.up.weight", "out.weight"):
        assert not torch.equal(a[key], c[key])
    torch.manual_seed(123)                                  # the global RNG plays no part
    d = SVBRNet(seed=3).state_dict()
    assert all(torch.equal(a[k], d[k]) for k in a)
    assert torch.count_nonzero(a["b14.up.bias"]) == 0 and float(a["b14.up.weight"].abs().max()) > 0
    bound = (6 / (9 * (32 + 32))) ** 0.5                     # Glorot-uniform, both frameworks
    assert float(a["b14.up.weight"].abs().max()) <= bound


@pytest.mark.parametrize("align, first", [("symmetric", -1), ("keras", 0)])
def test_transpose_alignment(align, first):
    """Low-resolution pixel i feeds outputs 2i-1..2i+1 (symmetric) or 2i..2i+2 (Keras 'same')."""
    up = Up(1, 1, transpose_align=align).up
    with torch.no_grad():
        up.weight.fill_(1.0)
        up.bias.zero_()
        x = torch.zeros(1, 1, 6, 6)
        x[0, 0, 2, 3] = 1.0
        y = up(x)
        if align == "keras":
            y = y[..., :12, :12]
    assert y.shape[-2:] == (12, 12)
    rows = torch.nonzero(y[0, 0].sum(1)).flatten().tolist()
    cols = torch.nonzero(y[0, 0].sum(0)).flatten().tolist()
    assert rows == [4 + first, 5 + first, 6 + first] and cols == [6 + first, 7 + first, 8 + first]


def test_fold_batchnorm_matches_eval(net):
    x, m = _inputs(40, 44, n=2, seed=1)
    folded = fold_batchnorm(net)
    assert not any(isinstance(mod, torch.nn.BatchNorm2d) for mod in folded.modules())
    with torch.inference_mode():
        # float32 reassociation over 23 folded layers of untrained weights: measured up to 1.8e-5
        assert torch.allclose(folded(x, m), net(x, m), atol=5e-5)
    assert any(isinstance(mod, torch.nn.BatchNorm2d) for mod in net.modules())    # original untouched


def test_forward_tiled_equals_whole(net):
    x, m = _inputs(70, 138, seed=2)                           # padded 72 x 140: 2 x 3 blocks of 36 x 48
    seen = []
    hook = net.x01.register_forward_hook(lambda mod, inp, out: seen.append(tuple(inp[0].shape[-2:])))
    try:
        with torch.inference_mode():
            whole = net(x, m)
            seen.clear()
            tiled = forward_tiled(net, x, m, tile=64)
            blocks = list(seen)
            short = forward_tiled(net, x, m, tile=64, halo=8)     # overlap below the receptive field
    finally:
        hook.remove()
    # cols [0, 48) + 88 px; [48, 96) + 88 px each side, clipped to [0, 140); [96, 140) - 88 px; rows clipped
    assert len(blocks) == 6 and blocks[:3] == [(72, 48 + HALO), (72, 140), (72, 140 - (96 - HALO))]
    assert tiled.shape == whole.shape
    assert float((tiled - whole).abs().max()) < 1e-5
    assert float((short - whole).abs().max()) > 1e-3          # the halo matters: the test can fail
    assert HALO % 4 == 0 and HALO >= 86
    with pytest.raises(ValueError, match="multiples of 4"):
        forward_tiled(net, x, m, tile=66)


# ---------------------------------------------------------------------------- SSIM loss
def _pair(seed=0, h=40, w=52):
    rng = np.random.default_rng(seed)
    a, _ = _photo(h, w, seed)
    b = np.clip(a + 0.2 * rng.standard_normal(a.shape), 0, 1)
    return a.astype(np.float64), b.astype(np.float64)


def _t(a):
    return torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)))[None]


def test_ssim_against_skimage():
    """tf.image.ssim semantics (valid 11x11 windows) = skimage's reflect-padded map with the 5-px
    border dropped: every value skimage keeps comes from a window inside the image."""
    from skimage.metrics import structural_similarity

    from bench.metrics.fidelity import ssim as bench_ssim

    a, b = _pair(0)
    c, d = _pair(1)
    ref = [structural_similarity(x, y, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                 data_range=1.0, channel_axis=-1) for x, y in ((a, b), (c, d))]
    pred, target = torch.cat([_t(b), _t(d)]), torch.cat([_t(a), _t(c)])
    per_image = ssim(pred, target).numpy()
    np.testing.assert_allclose(per_image, ref, rtol=0, atol=1e-12)              # float64: exact
    assert abs(float(ssim_loss(pred, target)) - (1 - np.mean(ref))) < 1e-12     # batch mean
    assert abs(float(ssim_loss(pred.float(), target.float())) - (1 - np.mean(ref))) < 1e-5   # float32
    assert abs(per_image[0] - bench_ssim(a, b)) < 1e-12                         # the benchmark's metric
    assert ref[0] < 0.9                                                         # the pair is not trivial
    # skimage's map in the valid region equals ours pixel by pixel
    _, full = structural_similarity(a[..., 0], b[..., 0], gaussian_weights=True, sigma=1.5,
                                    use_sample_covariance=False, data_range=1.0, full=True)
    ours = ssim_map(_t(b)[:, :1], _t(a)[:, :1])[0, 0].numpy()
    np.testing.assert_allclose(ours, full[5:-5, 5:-5], rtol=0, atol=1e-12)


def test_ssim_window_is_tensorflows():
    g = gaussian_window(dtype=torch.float64).numpy()
    x = np.arange(11) - 5.0
    np.testing.assert_allclose(g, np.exp(-x ** 2 / (2 * 1.5 ** 2)) / np.exp(-x ** 2 / 4.5).sum(), atol=1e-15)


def test_ssim_loss_identical_is_zero_and_differentiable():
    a, b = _pair(2)
    t = _t(a).float()
    assert abs(float(ssim_loss(t, t.clone()))) < 1e-6
    p = _t(b).float().requires_grad_(True)
    loss = ssim_loss(p, t)
    loss.backward()
    assert float(loss.detach()) > 0.05 and torch.isfinite(p.grad).all() and float(p.grad.abs().max()) > 0


def test_ssim_rejects_bad_shapes():
    with pytest.raises(ValueError, match="smaller than"):
        ssim_loss(torch.rand(1, 3, 10, 30), torch.rand(1, 3, 10, 30))
    with pytest.raises(ValueError, match="shape"):
        ssim_loss(torch.rand(1, 3, 20, 30), torch.rand(1, 3, 20, 31))


# ---------------------------------------------------------------------------- method
def test_method_info():
    info = SVBR2022.info()
    assert (info["name"], info["provides"], info["units"], info["higher"], info["needs_map"]) == \
        ("svbr2022", "restored_image", "image", "n/a", "radius_px")
    assert "svbr2022" in info["weights"]


@pytest.mark.parametrize("params", [{}, {"fold_bn": False, "channels_last": False}])
def test_method_round_trip_matches_module(net, weights, params):
    img, radius = _photo(45, 62)
    out = SVBR2022(params, weights=weights).predict_with_map(img, radius)
    assert out.shape == img.shape and out.dtype == np.float32
    assert 0.0 <= out.min() and out.max() <= 1.0
    x = torch.from_numpy(img.transpose(2, 0, 1).copy())[None]
    m = torch.from_numpy(np.clip(radius, 0, 6) / MAP_SCALE)[None, None].float()
    with torch.inference_mode():
        ref = net(x, m)[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(out, ref, atol=1e-4)             # BN folding rounds differently (~2e-5)
    assert float(np.abs(out - img).max()) > 0.05                 # not the identity


def test_method_clips_map_to_training_range(weights):
    img, radius = _photo(40, 40, seed=3)
    method = SVBR2022(weights=weights)
    a = method.predict_with_map(img, radius)                      # radius 0..7 px
    b = method.predict_with_map(img, np.clip(radius, 0, 6))
    c = method.predict_with_map(img, radius * 0)
    assert np.array_equal(a, b)
    assert float(np.abs(a - c).max()) > 1e-3                      # the map does reach the network


def test_method_tiles_and_bfloat16(weights):
    img, radius = _photo(40, 150, seed=4)
    whole = SVBR2022(weights=weights).predict_with_map(img, radius)
    tiled = SVBR2022({"tile": 48}, weights=weights).predict_with_map(img, radius)
    assert float(np.abs(tiled - whole).max()) < 1e-5
    half = SVBR2022({"precision": "bfloat16"}, weights=weights).predict_with_map(img, radius)
    assert half.dtype == np.float32 and 0.0 <= half.min() and half.max() <= 1.0
    # this calibrated untrained net has large gains (outputs near 0 / 1), so bfloat16 rounding shows
    # (mean ~0.02 here, ~1e-4 for a fresh net); only a bound that catches a wrong path
    err = float(np.abs(half - whole).mean())
    assert 0.0 < err < 0.06


def test_method_bad_map_is_one_line(weights):
    img, radius = _photo(32, 40)
    method = SVBR2022(weights=weights)
    with pytest.raises(MapUnitsError) as err:
        method.predict_with_map(img, radius[:, :39])
    assert "\n" not in str(err.value) and "40x32" in str(err.value)
    bad = radius.copy()
    bad[3, 4] = np.nan
    with pytest.raises(MapUnitsError, match="NaN"):
        method.predict_with_map(img, bad)
    with pytest.raises(UserError, match="needs a blur map"):
        method.predict(img)


def test_method_weights_errors(tmp_path):
    img, radius = _photo(16, 16)
    with pytest.raises(UserError, match="not found"):
        SVBR2022(weights=str(tmp_path / "missing.pt")).predict_with_map(img, radius)
    other = tmp_path / "other.pt"
    torch.save({"x01.conv.weight": torch.zeros(8, 3, 3, 3)}, other)
    with pytest.raises(UserError, match="does not match"):
        SVBR2022(weights=str(other)).predict_with_map(img, radius)

