"""NIQE / BRISQUE / PIQE through pyiqa: offline, lazy, weights from bench.weights, calibrated values."""
from __future__ import annotations

import csv
import socket
import subprocess
import sys
from importlib.metadata import version

import numpy as np
import pytest
from PIL import Image

from bench.metrics import create_metric, get_metric
from bench.metrics.base import PredInfo
from bench.weights import ENV_VAR, import_weights, weight_path
from datagen.errors import UserError
from tests.conftest import REPO, shared_data, synthetic_photo
from tests.test_weights import RunsCode, fake_libsvm, fake_npz, forge_sidecar

CALIBRATION = ("I03", "I04", "I06", "I08", "I19")
# pyiqa 0.1.16 with the official model files (NIQE: MATLAB pristine model; BRISQUE: LIVE allmodel)
EXPECTED = {
    "niqe": (15.6538, 3.6549, 3.2342, 3.1921, 9.0722),
    "brisque": (94.645, -0.108, 1.077, 5.142, 66.839),
}


def _no_network(*args, **kwargs):
    raise RuntimeError("IQA test tried to use the network")


@pytest.fixture(scope="module")
def offline_pyiqa():
    """Import pyiqa once for the module, with every socket connection refused (no hidden downloads)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(socket.socket, "connect", _no_network)
        mp.setattr(socket.socket, "connect_ex", _no_network)
        mp.setattr(socket, "create_connection", _no_network)
        import pyiqa
        yield pyiqa


@pytest.fixture
def empty_weights(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "weights"))
    return tmp_path / "weights"


def rgb01(seed: int = 0, height: int = 160, width: int = 224) -> np.ndarray:
    return synthetic_photo(seed, height, width).astype(np.float32) / 255.0


def test_import_is_lazy():
    code = ("import sys, bench.metrics.iqa as m; m.NIQE().unavailable(); "
            "assert 'pyiqa' not in sys.modules and 'torch' not in sys.modules, 'heavy import'")
    done = subprocess.run([sys.executable, "-c", code], check=False, cwd=REPO, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr


def test_specs_match_pyiqa_metadata(offline_pyiqa):
    from pyiqa.default_model_configs import DEFAULT_CONFIGS

    for name in ("niqe", "brisque", "piqe"):
        spec = get_metric(name).spec
        assert spec.name == name and spec.task == "nr_iqa" and spec.needs == ()
        assert spec.accepts == ("enhanced_image", "restored_image") and spec.unit == "score"
        assert spec.higher_is_better is (not DEFAULT_CONFIGS[name]["lower_better"]) is False
        assert spec.version == f"pyiqa-{version('pyiqa')}/1" and spec.threshold > 0 and spec.conventions
    assert get_metric("niqe").spec.weights == ("niqe",) and get_metric("brisque").spec.weights == ("brisque",)
    assert get_metric("piqe").spec.weights == ()
    assert create_metric("piqe").applicable(PredInfo(provides="blur_map"))
    assert create_metric("piqe").applicable(PredInfo(provides="restored_image", units="image")) is None


def test_piqe_needs_no_weights(offline_pyiqa, empty_weights):
    metric = create_metric("piqe")
    assert metric.unavailable() is None
    states = {f"s{i}": metric.per_sample(rgb01(i), None, PredInfo(provides="enhanced_image")) for i in range(2)}
    values = [s["value"] for s in states.values()]
    assert all(isinstance(v, float) and np.isfinite(v) and 0 <= v <= 100 for v in values), values
    result = metric.reduce(states)
    assert result.value == pytest.approx(np.mean(values)) and set(result.per_sample) == set(states)
    assert not empty_weights.exists()


def test_threads_share_the_cached_metric_safely(offline_pyiqa):
    from concurrent.futures import ThreadPoolExecutor

    from bench.metrics.iqa import score_image

    images = [rgb01(i, 96, 128) for i in range(6)]
    serial = [score_image("piqe", im) for im in images]
    with ThreadPoolExecutor(3) as pool:
        threaded = list(pool.map(lambda im: score_image("piqe", im), images))
    assert threaded == serial


@pytest.mark.parametrize("name", ["niqe", "brisque"])
def test_missing_weights_are_reported_not_fetched(offline_pyiqa, empty_weights, no_shipped_metric_files, name):
    from bench.metrics.iqa import WeightsMissing, score_image

    path = weight_path(name)
    assert create_metric(name).unavailable() == (
        f"unavailable (weights missing: {path}; run: bench weights import {name} FILE)")
    with pytest.raises(WeightsMissing) as info:
        score_image(name, rgb01())
    assert str(path) in str(info.value) and "\n" not in str(info.value)
    assert not empty_weights.exists()


@pytest.mark.parametrize("sidecar", ["none", "stale", "forged"])
def test_planted_pickle_never_runs(offline_pyiqa, empty_weights, tmp_path, sidecar):
    """A brisque_svm_weights.pth put in the weights folder by hand (issue 8 #7) is never unpickled.

    Without a sidecar, or with one that does not match, the metric is unavailable with a reason
    saying to re-import; with a sidecar forged to match, loading (weights_only=True) refuses it.
    """
    import torch

    canary = tmp_path / "canary-ran"                     # the planted file is a live exploit:
    torch.save((RunsCode(canary), torch.zeros(3, 36)), tmp_path / "canary.pth")
    torch.load(tmp_path / "canary.pth", weights_only=False)   # ...this is what pyiqa does with a path
    assert canary.exists()

    marker = tmp_path / "code-ran"
    if sidecar == "stale":
        import_weights("brisque", fake_libsvm(tmp_path / "allmodel"))
    path = weight_path("brisque")
    path.parent.mkdir(exist_ok=True)
    torch.save((RunsCode(marker), torch.zeros(3, 36)), path)
    if sidecar == "forged":
        forge_sidecar(path)

    metric = create_metric("brisque")
    reason = metric.unavailable()
    error = None
    try:
        metric.per_sample(rgb01(), None, PredInfo(provides="restored_image", units="image"))
    except Exception as err:  # noqa: BLE001 - whatever today's code raises, the marker decides
        error = err
    assert not marker.exists(), "unpickling the planted weights file ran its code"
    assert isinstance(error, UserError) and "\n" not in str(error), repr(error)
    assert "re-import it: bench weights import brisque FILE" in str(error) and str(path) in str(error)
    if sidecar == "forged":
        assert reason is None and "weights unusable" in str(error)   # the digest matches; only loading refuses
    else:
        assert reason is not None and reason.startswith(f"unavailable (weights not verified: {path} "), reason
        assert reason.endswith("re-import it: bench weights import brisque FILE)") and "\n" not in reason


def test_hand_placed_niqe_file_is_not_used(offline_pyiqa, empty_weights, tmp_path):
    """Only files stored by `bench weights import` (sha256 = sidecar) are used, even harmless ones."""
    path = import_weights("niqe", fake_npz(tmp_path / "p.npz"))
    assert create_metric("niqe").unavailable() is None
    path.with_name(path.name + ".json").unlink()
    reason = create_metric("niqe").unavailable()
    assert reason == (f"unavailable (weights not verified: {path} has no sidecar {path.name}.json (only files "
                      "stored by bench weights import are used); re-import it: bench weights import niqe FILE)")


def test_imported_weights_reach_pyiqa_as_arrays(offline_pyiqa, empty_weights, tmp_path):
    """pyiqa's nets hold exactly the imported numbers, and score offline (no real model files needed)."""
    import torch

    from bench.metrics.iqa import _pyiqa_metric, score_image
    from bench.weights import load_weights

    import_weights("brisque", fake_libsvm(tmp_path / "allmodel", n_sv=9))
    import_weights("niqe", fake_npz(tmp_path / "p.npz"))
    brisque, niqe = _pyiqa_metric("brisque", "cpu").net, _pyiqa_metric("niqe", "cpu").net
    want = load_weights("brisque")
    assert torch.equal(brisque.sv_coef, torch.from_numpy(want["sv_coef"])) and brisque.sv.shape == (9, 36)
    assert torch.equal(niqe.cov_pris_param, torch.from_numpy(load_weights("niqe")["cov"]))
    assert np.isfinite(score_image("brisque", rgb01())) and np.isfinite(score_image("niqe", rgb01()))

    import_weights("brisque", fake_libsvm(tmp_path / "other", n_sv=4, seed=1))   # a re-import is picked up
    assert _pyiqa_metric("brisque", "cpu").net.sv.shape == (4, 36)


def test_bad_images(offline_pyiqa):
    from bench.metrics.iqa import ImageTooSmall, score_image

    with pytest.raises(ImageTooSmall, match="piqe needs images of at least 16x16"):
        score_image("piqe", np.zeros((8, 40, 3), np.float32))
    with pytest.raises(ValueError, match="RGB"):
        score_image("piqe", np.zeros((40, 40), np.float32))
    with pytest.raises(KeyError, match="unknown IQA metric"):
        score_image("nique", rgb01())
    with pytest.raises(ValueError, match="expected a float image"):
        score_image("piqe", (rgb01() * 255).astype(np.uint8))
    with pytest.raises(ValueError, match="0..255 image"):
        score_image("piqe", rgb01() * 255)
    # tiny overshoot from a method is clipped, not an assertion error inside pyiqa
    image = rgb01()
    assert score_image("piqe", np.clip(image * 1.01, 0, 1.01)) == pytest.approx(
        score_image("piqe", np.clip(image * 1.01, 0, 1)))


# ------------------------------------------------------------------------------ real model files

@pytest.fixture(scope="module")
def real_weights(offline_pyiqa, tmp_path_factory):
    niqe_src = shared_data("iqa", "niqe", "niqe_pris_params.npz")
    brisque_src = shared_data("iqa", "brisque", "brisque_allmodel_live.txt")
    folder = tmp_path_factory.mktemp("weights")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(ENV_VAR, str(folder))
        import_weights("niqe", niqe_src)
        import_weights("brisque", brisque_src)
        yield folder


@pytest.fixture(scope="module")
def calibration():
    folder = shared_data("iqa", "calibration")
    with open(folder / "results_original.csv", newline="") as fh:
        matlab = {row["Method"]: row for row in csv.DictReader(fh)}
    images = {}
    for key in CALIBRATION:
        path = next((folder / "dist").glob(f"{key}.*"))
        images[path.name] = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0
    return images, matlab


@pytest.fixture(params=["imported", "shipped"])
def weights_origin(request, offline_pyiqa, tmp_path, monkeypatch):
    """The real model files, imported from ../shared/data or as shipped in the package."""
    if request.param == "imported":
        request.getfixturevalue("real_weights")
    else:
        monkeypatch.setenv(ENV_VAR, str(tmp_path / "empty-weights"))
    return request.param


@pytest.mark.realdata
@pytest.mark.parametrize("name", ["niqe", "brisque"])
def test_calibration_values(weights_origin, calibration, name):
    from bench.weights import resolve_weights

    assert resolve_weights(name).origin == weights_origin
    images, matlab = calibration
    metric = create_metric(name)
    assert metric.unavailable() is None
    print(f"\n{name}: image  ours  expected(pyiqa)  MATLAB")
    for (fname, image), want in zip(images.items(), EXPECTED[name], strict=True):
        got = metric.per_sample(image, None, PredInfo(provides="restored_image", units="image"))["value"]
        print(f"  {fname}  {got:9.4f}  {want:9.4f}  {float(matlab[name][fname]):9.4f}")
        assert got == pytest.approx(want, abs=0.01), (name, fname, got, want)


@pytest.mark.realdata
def test_piqe_calibration_images(offline_pyiqa, calibration):
    from bench.metrics.iqa import score_image

    images, _ = calibration
    values = {f: score_image("piqe", im) for f, im in images.items()}
    print("\npiqe:", {f: round(v, 4) for f, v in values.items()})
    assert all(np.isfinite(v) and 0 <= v <= 100 for v in values.values())
    assert values["I04.bmp"] < values["I03.bmp"]      # mild distortion scores better than the worst


@pytest.mark.realdata
def test_brisque_matches_plain_pyiqa(real_weights, calibration):
    """Our float64 SVR only removes pyiqa's float32 rounding noise (a few 1e-3)."""
    import torch

    from bench.metrics.iqa import _pyiqa_metric, score_image

    images, _ = calibration
    plain = _pyiqa_metric("brisque", "cpu")
    for image in images.values():
        x = torch.from_numpy(image.transpose(2, 0, 1).copy())[None]
        assert score_image("brisque", image) == pytest.approx(float(plain(x)), abs=0.02)


@pytest.mark.realdata
@pytest.mark.parametrize("name", ["niqe", "brisque", "piqe"])
def test_flat_image_is_nan_not_a_crash(real_weights, name):
    from bench.metrics.iqa import score_image

    for value in (0.0, 0.5, 1.0):
        assert np.isnan(score_image(name, np.full((128, 160, 3), value, np.float32)))
    assert np.isfinite(score_image(name, rgb01()))


@pytest.mark.realdata
def test_metric_cache_follows_the_weights_file(real_weights, calibration):
    from bench.metrics.iqa import _pyiqa_metric

    assert _pyiqa_metric("niqe", "cpu") is _pyiqa_metric("niqe", "cpu")     # created once per process
    assert _pyiqa_metric("piqe", "cpu") is _pyiqa_metric("piqe", "cpu")


@pytest.mark.gpu
@pytest.mark.realdata
def test_cuda_matches_cpu(real_weights, calibration):
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    from bench.metrics.iqa import score_image

    image = next(iter(calibration[0].values()))
    for name in ("niqe", "brisque", "piqe"):
        assert score_image(name, image, device="cuda") == pytest.approx(score_image(name, image), abs=0.01)
