"""MobileNetV2 (Keras-applications variant, methods/nets/mobilenetv2.py) and the Galetto sliding-window
map (methods/galetto_windows.py): shapes, parameter count, deterministic init, BN folding, window
grid coverage, exact accumulation, border padding against numpy's 'symmetric' pad."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from methods.galetto_windows import (
    accumulate_map,
    blur_map_windows,
    extract_windows,
    predict_windows,
    presmooth_gray,
    window_positions,
)
from methods.nets.mobilenetv2 import (
    N_PARAMS_GRAY_20,
    ConvBN,
    MobileNetV2,
    count_parameters,
    fold_batchnorm,
)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return MobileNetV2(seed=0)


def _randomise_bn(model, seed=1):
    """Non-trivial BN statistics and affine parameters, so that folding is really exercised."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=g) * 0.5 + 0.5)
                m.weight.copy_(torch.rand(n, generator=g) * 0.5 + 0.75)
                m.bias.copy_(torch.randn(n, generator=g) * 0.1)
    return model


# ---------------------------------------------------------------------------- network
def test_output_shape(model):
    model.eval()
    with torch.inference_mode():
        assert model(torch.rand(5, 1, 32, 32)).shape == (5, 20)
        assert model(torch.rand(1, 1, 32, 32)).shape == (1, 20)


@pytest.mark.parametrize("padding", ["symmetric", "keras"])
def test_parameter_count(padding):
    n = count_parameters(MobileNetV2(padding=padding))
    assert n == N_PARAMS_GRAY_20 == 2_248_916          # Keras: 3,504,872 - top/3-channel diff
    assert abs(n - 2.25e6) / 2.25e6 < 0.02
    buffers = sum(b.numel() for k, b in MobileNetV2().named_buffers() if "running" in k)
    assert buffers == 34_112                           # Keras' non-trainable count


def test_final_feature_map_is_1x1(model):
    with torch.inference_mode():
        assert model.eval().features(torch.rand(2, 1, 32, 32)).shape == (2, 1280, 1, 1)
        k = MobileNetV2(padding="keras").eval()
        assert k.features(torch.rand(2, 1, 32, 32)).shape == (2, 1280, 1, 1)
    with pytest.raises(ValueError):
        MobileNetV2(padding="same")


def test_deterministic_init():
    a, b, c = MobileNetV2(seed=3), MobileNetV2(seed=3), MobileNetV2(seed=4)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["classifier.weight"], sc["classifier.weight"])
    # the global RNG plays no part
    torch.manual_seed(123)
    d = MobileNetV2(seed=3)
    assert torch.equal(d.state_dict()["features.0.conv.weight"], sa["features.0.conv.weight"])


def test_glorot_bound():
    m = MobileNetV2(seed=0)
    w = m.features[0].conv.weight                      # (32, 1, 3, 3): fan_in 9, fan_out 288
    bound = (6.0 / (9 + 288)) ** 0.5
    assert w.abs().max() <= bound and w.abs().max() > 0.8 * bound


def test_keras_padding_matches_pad_then_valid_conv():
    torch.manual_seed(0)
    layer = ConvBN(4, 8, 3, stride=2, padding="keras").eval()
    x = torch.rand(2, 4, 16, 16)
    with torch.inference_mode():
        ref = layer.act(layer.bn(torch.nn.functional.conv2d(
            torch.nn.functional.pad(x, (0, 1, 0, 1)), layer.conv.weight, stride=2)))
        assert torch.allclose(layer(x), ref, atol=1e-6)
        sym = ConvBN(4, 8, 3, stride=2, padding="symmetric").eval()
        sym.load_state_dict(layer.state_dict())
        assert not torch.allclose(sym(x), ref, atol=1e-4)


@pytest.mark.parametrize("padding", ["symmetric", "keras"])
def test_fold_batchnorm_equivalence(padding):
    m = _randomise_bn(MobileNetV2(seed=5, padding=padding)).eval()
    f = fold_batchnorm(m)
    assert not any(isinstance(x, torch.nn.BatchNorm2d) for x in f.modules())
    assert any(isinstance(x, torch.nn.BatchNorm2d) for x in m.modules())   # original untouched
    x = torch.rand(16, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        ya, yb = m(x), f(x)
        assert torch.allclose(ya, yb, rtol=1e-4, atol=1e-5), (ya - yb).abs().max()
        assert torch.equal(ya.argmax(1), yb.argmax(1))
        xc = x.contiguous(memory_format=torch.channels_last)
        fc = fold_batchnorm(m).to(memory_format=torch.channels_last)
        assert torch.allclose(fc(xc), ya, rtol=1e-4, atol=1e-5)


def test_train_step_changes_weights():
    m = MobileNetV2(seed=0).train()
    opt = torch.optim.Adam(m.parameters(), lr=1e-3)
    x = torch.rand(8, 1, 32, 32)
    y = torch.arange(8) % 20
    before = m.classifier.weight.clone()
    loss = torch.nn.functional.cross_entropy(m(x), y)
    loss.backward()
    opt.step()
    assert torch.isfinite(loss) and not torch.equal(before, m.classifier.weight)


# ---------------------------------------------------------------------------- windows
@pytest.mark.parametrize("shape", [(32, 32), (33, 47), (100, 64), (5, 70), (1, 1)])
@pytest.mark.parametrize("stride", [8, 16, 32])
@pytest.mark.parametrize("trim", [False, True])
def test_window_positions_cover_every_pixel(shape, stride, trim):
    h, w = shape
    pos = window_positions(h, w, stride=stride, trim=trim)
    assert pos.dtype == np.int64 and pos.shape[1] == 2
    assert (pos[:, 0] < h).all() and (pos[:, 1] < w).all() and (pos >= 0).all()
    assert set(np.unique(pos[:, 0]) % stride) == {0} and tuple(pos[0]) == (0, 0)
    cover = np.zeros(shape, dtype=np.int64)
    for y, x in pos:
        cover[y:y + 32, x:x + 32] += 1
    assert (cover > 0).all()


def test_window_positions_counts():
    assert len(window_positions(1000, 1000, stride=16)) == 63 * 63          # the code's 1:16:H
    assert len(window_positions(1000, 1000, stride=16, trim=True)) == 62 * 62
    assert len(window_positions(32, 32, stride=16, trim=True)) == 1
    assert len(window_positions(32, 32, stride=16)) == 4
    with pytest.raises(ValueError):
        window_positions(0, 10)
    with pytest.raises(ValueError, match="uncovered"):
        window_positions(100, 100, stride=33)


def test_extract_windows_matches_numpy_symmetric_pad():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, size=(45, 37), dtype=np.uint8)
    pos = window_positions(*img.shape, stride=8)
    win = extract_windows(img, pos)
    assert win.shape == (len(pos), 1, 32, 32) and win.dtype == np.float32
    ref_img = img.astype(np.float32) / 255
    for (y, x), wnd in zip(pos, win):
        p = ref_img[y:y + 32, x:x + 32]
        ref = np.pad(p, ((0, 32 - p.shape[0]), (0, 32 - p.shape[1])), mode="symmetric")
        np.testing.assert_array_equal(wnd[0], ref)
    # the padding mirrors the truncated window, not the image: a window 5 px wide repeats
    # a b c d e e d c b a a b ... (MATLAB padarray 'symmetric' 'post', period 2u)
    last = win[np.flatnonzero((pos[:, 0] == 0) & (pos[:, 1] == 32))[0], 0, 0]
    row = ref_img[0, 32:37]
    np.testing.assert_array_equal(last[:10], np.concatenate([row, row[::-1]]))
    np.testing.assert_array_equal(last[10:15], row)


def test_extract_windows_small_image_is_padded_to_32():
    img = np.arange(6, dtype=np.float32).reshape(2, 3) / 10
    win = extract_windows(img, window_positions(2, 3))
    assert win.shape == (1, 1, 32, 32)
    np.testing.assert_array_equal(win[0, 0], np.pad(img, ((0, 30), (0, 29)), mode="symmetric"))


def test_presmooth_is_normalised_3x3_gaussian():
    img = np.zeros((7, 7), np.float32)
    img[3, 3] = 1.0
    out = presmooth_gray(img)
    t = np.exp(-0.5 * np.array([1.0, 0.0, 1.0]))
    k = np.outer(t, t) / np.outer(t, t).sum()
    np.testing.assert_allclose(out[2:5, 2:5], k, rtol=1e-6)
    assert out.sum() == pytest.approx(1.0, rel=1e-6)
    win = extract_windows(img, np.array([[0, 0]]), presmooth=True)
    np.testing.assert_allclose(win[0, 0, :7, :7], out, rtol=1e-6)


@pytest.mark.parametrize("shape,stride", [((33, 47), 16), ((100, 64), 8), ((20, 20), 16)])
def test_accumulate_map_constant(shape, stride):
    pos = window_positions(*shape, stride=stride)
    m = accumulate_map(np.full(len(pos), 7), pos, shape)
    assert m.shape == shape and m.dtype == np.float32
    np.testing.assert_array_equal(m, 7.0)
    np.testing.assert_array_equal(accumulate_map(np.full(len(pos), 1), pos, shape, s0=1), 0.0)


def test_accumulate_map_two_windows_exact():
    # 32 x 48 image, windows at x = 0 and x = 16 (stride 16, trimmed): columns 0..15 only see
    # the first (class 3), 16..31 both (mean 5.5), 32..47 only the second (class 8)
    pos = window_positions(32, 48, stride=16, trim=True)
    assert pos.tolist() == [[0, 0], [0, 16]]
    m = accumulate_map(np.array([3, 8]), pos, (32, 48))
    np.testing.assert_array_equal(m[:, :16], 3.0)
    np.testing.assert_array_equal(m[:, 16:32], 5.5)
    np.testing.assert_array_equal(m[:, 32:], 8.0)
    m1 = accumulate_map(np.array([3, 8]), pos, (32, 48), s0=4)       # max(c - 4, 0): 0 and 4
    np.testing.assert_array_equal(m1[:, 16:32], 2.0)


def test_accumulate_map_matches_loop_reference():
    rng = np.random.default_rng(1)
    shape = (70, 53)
    pos = window_positions(*shape, stride=8)
    cls = rng.integers(0, 20, len(pos))
    s, c = np.zeros(shape), np.zeros(shape)
    for (y, x), k in zip(pos, cls):
        s[y:y + 32, x:x + 32] += k
        c[y:y + 32, x:x + 32] += 1
    np.testing.assert_allclose(accumulate_map(cls, pos, shape), s / c, rtol=1e-6)


def test_predict_windows_and_full_map(model):
    f = fold_batchnorm(_randomise_bn(MobileNetV2(seed=2)).eval())
    rng = np.random.default_rng(0)
    img = rng.random((40, 50)).astype(np.float32)
    pos = window_positions(*img.shape, stride=16)
    win = extract_windows(img, pos)
    cls = predict_windows(f, win, batch=3)
    assert cls.dtype == np.int64 and cls.shape == (len(pos),)
    assert ((cls >= 0) & (cls < 20)).all()
    with torch.inference_mode():
        ref = f(torch.from_numpy(win)).argmax(1).numpy()
    np.testing.assert_array_equal(cls, ref)
    np.testing.assert_array_equal(predict_windows(f, win, batch=4096), cls)
    np.testing.assert_array_equal(predict_windows(f, win, batch=4, fixed_batch=True), cls)
    np.testing.assert_array_equal(predict_windows(f, win), cls)
    m = blur_map_windows(f, img, stride=16)
    np.testing.assert_array_equal(m, accumulate_map(cls, pos, img.shape))
    np.testing.assert_array_equal(blur_map_windows(f, img, stride=16, chunk=2), m)
    ms = blur_map_windows(f, img, stride=16, presmooth=True, s0=1)
    cs = predict_windows(f, extract_windows(img, pos, presmooth=True))
    np.testing.assert_array_equal(ms, accumulate_map(cs, pos, img.shape, s0=1))
    assert blur_map_windows(f, img[:10, :7]).shape == (10, 7)
