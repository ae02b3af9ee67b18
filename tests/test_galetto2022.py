"""galetto2022 / galetto2022_um / galetto2022_sdof and the shared torch inference path.

The network is an untrained MobileNetV2 with a fixed seed and BN statistics calibrated on random
windows (see ``_net``), saved with ``torch.save`` and passed as ``weights=``.
"""
from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
from pydantic import ValidationError

torch = pytest.importorskip("torch")

from datagen.errors import UserError
from methods import torch_inference as ti
from methods.base import to_gray
from methods.galetto2022 import Galetto2022, Galetto2022SDoF, Galetto2022UM
from methods.galetto_windows import blur_map_windows
from methods.nets.mobilenetv2 import MobileNetV2


def _net(seed: int = 0) -> MobileNetV2:
    """Untrained, seeded network whose BN statistics are calibrated on 128 random windows (noise
    blurred by 0..8 px), so activations and logits are of order one (a fresh network's logits are
    ~1e-8, where argmaxes are rounding noise) and folding has non-trivial statistics to fold."""
    from scipy import ndimage

    net = MobileNetV2(in_channels=1, num_classes=20, seed=seed)
    rng = np.random.default_rng(seed)
    win = np.stack([ndimage.gaussian_filter(rng.random((32, 32)), s, mode="reflect")
                    for s in np.linspace(0, 8, 128)]).astype(np.float32)[:, None]
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None          # cumulative average: one pass sets the batch statistics
            m.reset_running_stats()
    net.train()
    with torch.no_grad():
        net(torch.from_numpy(win))
    return net.eval()


@pytest.fixture(scope="module")
def net():
    return _net()


@pytest.fixture(scope="module")
def weights(net, tmp_path_factory):
    path = tmp_path_factory.mktemp("w") / "galetto2022_test.pt"
    torch.save(net.state_dict(), path)
    return str(path)


@pytest.fixture(scope="module")
def method(weights):
    return Galetto2022(weights=weights)


@pytest.fixture(scope="module")
def raw(weights):
    return Galetto2022({"refine": False, "fold_bn": False, "channels_last": False}, weights=weights)


def _image(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    # a smooth half and a noisy half, so windows differ
    img = np.repeat(np.linspace(0, 1, w, dtype=np.float32)[None, :, None], h, 0).repeat(3, 2)
    img[:, w // 2:] = rng.random((h, w - w // 2, 3), dtype=np.float32)
    return img


@pytest.mark.parametrize("shape", [(1, 1), (20, 30), (32, 32), (100, 130)])
def test_map_shape_dtype_range(method, shape):
    img = _image(*shape)
    out = method.predict(img)
    assert out.shape == shape and out.dtype == np.float32
    assert np.isfinite(out).all() and out.min() >= 0.0 and out.max() <= 19.0


def test_unrefined_map_is_the_networks_mean_class(raw, net):
    img = _image(100, 130)
    out = raw.predict(img)
    ref = blur_map_windows(net, to_gray(img), stride=16)
    np.testing.assert_array_equal(out, ref)
    assert out.min() >= 0 and out.max() <= 19
    assert len(np.unique(out)) > 1          # the test image gives more than one class


@pytest.mark.parametrize("shape", [(1, 1), (16, 16), (20, 30)])
def test_unrefined_small_images_in_class_range(raw, shape):
    out = raw.predict(_image(*shape))
    assert out.shape == shape and out.min() >= 0 and out.max() <= 19
    if max(shape) <= 16:    # a single (padded) window at stride 16: one class, a constant integer map
        assert np.all(out == out.flat[0]) and out.flat[0] == np.round(out.flat[0])
    else:                   # 2 x 2 windows: a mean of up to four classes
        assert np.all(out * 4 == np.round(out * 4))


def test_deterministic_bytes(method):
    img = _image(60, 70, seed=3)
    a = method.predict(img)
    b = Galetto2022(weights=method.weights).predict(img)
    assert a.tobytes() == method.predict(img).tobytes() == b.tobytes()


def test_fold_bn_and_channels_last_do_not_change_the_map(weights):
    img = _image(64, 80, seed=5)
    maps = [Galetto2022({"fold_bn": f, "channels_last": c}, weights=weights).predict(img)
            for f, c in ((False, False), (True, False), (True, True))]
    for m in maps[1:]:
        np.testing.assert_allclose(m, maps[0], atol=1e-4, rtol=0)


def test_stride_and_refine_params(weights):
    img = _image(48, 48, seed=2)
    m8 = Galetto2022({"stride": 8, "refine": False}, weights=weights).predict(img)
    assert m8.shape == (48, 48) and m8.min() >= 0 and m8.max() <= 19
    with pytest.raises(ValidationError):
        Galetto2022({"stride": 0})
    with pytest.raises(ValidationError):
        Galetto2022({"no_such_param": 1})


def test_model_built_once_per_instance(weights):
    m = Galetto2022({"refine": False}, weights=weights)
    m.predict(_image(8, 8))
    first = m.model()
    m.predict(_image(9, 9))
    assert m.model() is first


# ---- weights errors: one line, UserError --------------------------------------------------------------

def _one_line_error(weights_path, match: str):
    with pytest.raises(UserError, match=match) as info:
        Galetto2022({"refine": False}, weights=str(weights_path)).predict(_image(4, 4))
    assert "\n" not in str(info.value)
    return str(info.value)


def test_missing_weights_file(tmp_path):
    msg = _one_line_error(tmp_path / "nope.pt", "not found")
    assert "nope.pt" in msg


def test_weights_not_a_state_dict(tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(np.random.default_rng(0).bytes(4096))
    _one_line_error(junk, "not a torch state dict")
    tensor = tmp_path / "tensor.pt"
    torch.save(torch.zeros(3), tensor)
    _one_line_error(tensor, "does not hold a state dict")
    _one_line_error(tmp_path, "not a file")


def test_weights_of_another_architecture(tmp_path, net):
    other = tmp_path / "linear.pt"
    torch.save(torch.nn.Linear(3, 2).state_dict(), other)
    _one_line_error(other, "does not match the MobileNetV2 architecture")
    state = dict(net.state_dict())
    state["classifier.weight"] = torch.zeros(10, 1280)
    state["classifier.bias"] = torch.zeros(10)
    ten = tmp_path / "ten_classes.pt"
    torch.save(state, ten)
    msg = _one_line_error(ten, "wrong-shape")
    assert "classifier" in msg


def test_checkpoint_dict_with_state_dict_key(tmp_path, net, raw):
    ckpt = tmp_path / "ckpt.pt"
    torch.save({"state_dict": net.state_dict(), "epoch": 3}, ckpt)
    img = _image(40, 40)
    out = Galetto2022({"refine": False, "fold_bn": False, "channels_last": False}, weights=str(ckpt)).predict(img)
    np.testing.assert_array_equal(out, raw.predict(img))
    half = tmp_path / "half.pt"                 # fp16 tensors load, cast to the float32 network
    torch.save({k: v.half() if v.is_floating_point() else v for k, v in net.state_dict().items()}, half)
    m = Galetto2022({"refine": False}, weights=str(half))
    assert m.predict(img).shape == (40, 40)
    assert all(p.dtype == torch.float32 for p in m.model().parameters())


class _Payload:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('pwned')",))


def test_malicious_pickle_does_not_run(tmp_path):
    marker = tmp_path / "marker.txt"
    evil = tmp_path / "evil.pt"
    torch.save({"features.0.conv.weight": _Payload(marker)}, evil)
    raw_pickle = tmp_path / "evil.pkl"
    raw_pickle.write_bytes(pickle.dumps(_Payload(marker), protocol=2))
    for path in (evil, raw_pickle):
        _one_line_error(path, "weights_only")
        assert not marker.exists()
    # control: the payload is live (an unrestricted unpickler runs it)
    pickle.loads(raw_pickle.read_bytes())
    assert marker.read_text() == "pwned"


def test_no_shipped_weights_is_one_line(monkeypatch):
    """An installation without the shipped file (the package data left out) fails in one line."""
    import methods.galetto2022 as g

    monkeypatch.setattr(g, "WEIGHTS_FILE", "absent-galetto2022.pt")
    with pytest.raises(UserError, match="no shipped weights for galetto2022") as info:
        Galetto2022().predict(_image(4, 4))
    assert "\n" not in str(info.value)


# ---- the shared inference path ------------------------------------------------------------------------

def test_device_errors():
    assert ti.resolve_device("cpu").type == "cpu"
    with pytest.raises(UserError, match="not valid"):
        ti.resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="CUDA is not available"):
            ti.resolve_device("cuda")
        with pytest.raises(UserError, match="CUDA is not available"):
            Galetto2022(device="cuda", weights="unused.pt").model()


def test_threads_match_affinity_outside_dask():
    cores = len(os.sched_getaffinity(0))
    assert ti.available_cores() == cores
    before = torch.get_num_threads()
    try:
        assert ti.configure_threads() == cores and torch.get_num_threads() == cores
        assert ti.configure_threads(10 * cores) == cores          # never more than the cores
        assert ti.configure_threads(1) == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_threads_inside_dask_worker_follow_nthreads():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        assert client.submit(ti.available_cores, pure=False).result() == 1

        def threads_after_configure():
            ti.configure_threads()
            return torch.get_num_threads()

        assert client.submit(threads_after_configure, pure=False).result() == 1


# ---- enhancers ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("cls", [Galetto2022UM, Galetto2022SDoF])
@pytest.mark.parametrize("shape", [(1, 1), (20, 30), (33, 41)])
def test_enhancers_shape_and_range(cls, shape, weights):
    img = _image(*shape, seed=4)
    out = cls({"refine": shape != (33, 41)}, weights=weights).predict(img)
    assert out.shape == shape + (3,) and out.dtype == np.float32
    assert np.isfinite(out).all() and out.min() >= 0.0 and out.max() <= 1.0


def test_enhancers_use_the_galetto_map(weights, method):
    img = _image(40, 48, seed=6)
    um = Galetto2022UM(weights=weights)
    np.testing.assert_array_equal(um.predict(img), um.enhance_with_map(img, method.predict(img)))


def test_enhance_with_any_map_needs_no_weights():
    img = _image(30, 40, seed=1)
    sharp_map = np.zeros((30, 40), np.float32)            # all in focus
    mid_map = np.full((30, 40), 3.0, np.float32)           # M/19 ~ 0.16: inside the UM band
    um = Galetto2022UM()                                   # no weights anywhere: never loaded
    flat = um.enhance_with_map(img, sharp_map)
    boosted = um.enhance_with_map(img, mid_map)
    assert np.abs(flat - img).max() < 0.05 < np.abs(boosted - img).max()
    sdof = Galetto2022SDoF()
    out = sdof.enhance_with_map(img, sharp_map)          # W ~ 1: the sharpened layer
    assert out.shape == img.shape and out.dtype == np.float32
    far = sdof.enhance_with_map(img, np.full((30, 40), 12.0, np.float32))   # W = 0: blurred layer
    assert np.abs(np.diff(far, axis=1)).mean() < np.abs(np.diff(img, axis=1)).mean()


def test_sdof_params_validated():
    with pytest.raises(ValidationError, match="c0 < c1"):
        Galetto2022SDoF({"c0": 5.0, "c1": 3.0})
    info = Galetto2022SDoF.info()
    assert info["name"] == "galetto2022_sdof" and info["provides"] == "enhanced_image"
    assert Galetto2022.info()["units"] == "sigma_px" and Galetto2022.info()["higher"] == "blurred"
