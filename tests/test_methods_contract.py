"""The method protocol, checked on every registered method (methods.list_methods())."""
from __future__ import annotations

import numpy as np
import pytest

from methods import base, create_method, get_method, list_methods

NAMES = list_methods()
INFO_KEYS = {"name", "version", "provides", "units", "higher", "description", "reference", "weights", "params"}


def _image(height: int = 48, width: int = 64) -> np.ndarray:
    """Small RGB in [0, 1] with edges, texture and a smooth part, so every method has something to see."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:height, 0:width]
    checker = ((x // 8 + y // 6) % 2).astype(np.float64)
    noise = rng.random((height, width))
    gray = np.where(x < width // 2, 0.6 * checker + 0.4 * noise, 0.3 + 0.4 * x / width)
    rgb = np.stack([gray, 0.8 * gray + 0.1, 1.0 - gray], axis=-1)
    return np.clip(rgb, 0, 1).astype(np.float32)


def _predict(method, img):
    """predict, or predict_with_map with a constant 2 px map for map consumers (NEEDS_MAP)."""
    if method.NEEDS_MAP:
        return method.predict_with_map(img, np.full(np.shape(img)[:2], 2.0, np.float32))
    return method.predict(img)


def _needs_weights(name: str) -> bool:
    return bool(get_method(name).WEIGHTS)


def test_registry_lists_the_classical_methods():
    for name in ("zhuo_sim2011", "var_laplacian", "local_entropy", "local_std", "unsharp_mask"):
        assert name in NAMES


@pytest.mark.parametrize("name", NAMES)
def test_info_and_declarations(name):
    method = create_method(name)
    info = method.info()
    assert INFO_KEYS <= set(info)
    assert info["name"] == name == method.NAME
    assert isinstance(info["version"], str) and info["version"]
    assert info["provides"] in base.PROVIDES
    assert info["units"] in base.UNITS
    assert info["higher"] in base.HIGHER
    assert info["description"] and isinstance(info["reference"], str)
    if info["provides"] == "blur_map":
        assert info["higher"] in ("blurred", "sharp") and info["units"] != "image"
    else:
        assert info["units"] == "image"
    # Params: defaults round-trip, unknown keys are rejected, instances are immutable
    assert create_method(name, info["params"]).params == method.params
    with pytest.raises(ValueError):
        create_method(name, {"no_such_parameter": 1})


def test_learned_methods_ship_their_weights_and_model_card():
    """Every registered method that declares weights runs out of the box: the file is shipped."""
    from bench.weights import model_card, resolve_weights, shipped_file

    learned = [n for n in NAMES if _needs_weights(n)]
    assert {"galetto2022", "galetto2022_um", "galetto2022_sdof"} <= set(learned)
    for name in learned:
        for weight in get_method(name).WEIGHTS:
            assert shipped_file(weight) is not None, f"{name}: no shipped file for weights {weight}"
            card = model_card(weight)
            assert card and card["weights"]["sha256"] == resolve_weights(weight).sha256 or \
                resolve_weights(weight).origin != "shipped"


@pytest.mark.parametrize("name", NAMES)
def test_predict_shape_dtype_finite_and_deterministic(name):
    """Learned methods run with their shipped weights (no import step)."""
    method = create_method(name)
    img = _image()
    before = img.copy()
    out = _predict(method, img)
    assert np.array_equal(img, before), "predict must not modify its input"
    expected = (48, 64) if method.PROVIDES == "blur_map" else (48, 64, 3)
    assert isinstance(out, np.ndarray) and out.shape == expected and out.dtype == np.float32
    assert np.isfinite(out).all()
    if method.PROVIDES != "blur_map":
        assert out.min() >= 0.0 and out.max() <= 1.0
    elif method.UNITS in ("sigma_px", "radius_px"):
        assert out.min() >= 0.0, "a blur size in pixels is never negative"
    again = _predict(method, img.copy())
    np.testing.assert_array_equal(out, again)
    # float64 input is accepted the same way
    np.testing.assert_allclose(_predict(method, img.astype(np.float64)), out, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("shape", [(48, 64), (48, 64, 4), (48, 64, 1), (2, 48, 64, 3)])
def test_wrong_shape_raises_value_error(name, shape):
    method = create_method(name)
    with pytest.raises(ValueError):
        _predict(method, np.zeros(shape, dtype=np.float32))


@pytest.mark.parametrize("name", NAMES)
def test_non_finite_input_raises_value_error(name):
    img = _image()
    img[3, 4, 1] = np.nan
    with pytest.raises(ValueError):
        _predict(create_method(name), img)


def test_every_registered_name_matches_the_one_pattern():
    from methods.registry import NAME_PATTERN
    assert all(NAME_PATTERN.fullmatch(n) for n in NAMES)


@pytest.mark.parametrize("name", ["a/b", "../up", "$x^$", "a.b", "-lead", "x" * 65, "sp ace"])
def test_invalid_registered_names_are_refused_in_one_line(name, monkeypatch):
    """Names become preview file names, HTML ids, plot labels and --set METHOD.KEY: one pattern for all."""
    from datagen.errors import UserError

    from .conftest import run_bench

    monkeypatch.setenv("DEFOCUSBENCH_METHODS", f"{name}=methods.classical.local_stats:LocalStd")
    with pytest.raises(UserError, match="invalid"):
        list_methods()
    if name == "a/b":   # and through the console scripts, as a user meets it
        for args in (("list", "methods"), ("run", "--methods", "local_std", "--datasets", "synth_detection")):
            r = run_bench(*args)
            lines = r.stderr.strip().splitlines()
            assert r.returncode == 2 and len(lines) == 1 and "'a/b'" in lines[0] and "Traceback" not in r.stderr, r.stderr
