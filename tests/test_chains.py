"""Chains in bench: a map consumer after a map method or the ground truth (``kf_layered@zhuo_sim2011``,
``svbr2022@gt``), the unit conversion on the way, the plan's n/a reasons, the job key, run.json."""
from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

from bench import chains
from bench.datasets import open_dataset
from bench.execute import Job, Stage, job_key
from bench.harness import EXIT_OK, run
from bench.metrics import PredInfo
from bench.plan import plan, select_methods
from datagen.errors import UserError
from datagen.psf import SIGMA_RADIUS_TABLE
from methods.map_units import MapUnitsError, convert_map

from .conftest import run_bench


# ----------------------------------------------------------------------------- unit conversion
def test_sigma_maps_become_radii_by_the_table_and_back():
    sigma = SIGMA_RADIUS_TABLE[:, 0].reshape(1, -1)
    radius = convert_map(sigma, units="sigma_px", to="radius_px")
    assert np.allclose(radius, SIGMA_RADIUS_TABLE[:, 1], atol=1e-6)
    assert np.allclose(convert_map(radius, units="radius_px", to="sigma_px"), sigma, atol=1e-6)
    assert convert_map(np.array([[5.0]]), units="sigma_px", to="radius_px")[0, 0] == 6.0     # clamped at the table's end


def test_relative_maps_are_times_six_radius():
    rel = np.array([[0.0, 0.5, 1.0]])
    assert np.allclose(convert_map(rel, units="relative", to="radius_px"), [[0.0, 3.0, 6.0]])
    assert np.allclose(convert_map(rel, units="relative", to="sigma_px"),
                       convert_map(np.array([[0.0, 3.0, 6.0]]), units="radius_px", to="sigma_px"))


@pytest.mark.parametrize("kwargs, words", [
    ({"units": "score"}, "score without physical units"),
    ({"units": "radius_px", "higher": "sharp"}, "higher where the image is sharp"),
    ({"units": "image"}, "not a blur map"),
])
def test_maps_that_cannot_feed_a_consumer_are_refused_with_the_reason(kwargs, words):
    with pytest.raises(MapUnitsError, match=words):
        convert_map(np.ones((4, 4)), to="radius_px", **kwargs)


def test_a_map_of_another_size_or_with_nan_is_one_line():
    with pytest.raises(MapUnitsError, match=r"the blur map is 5x4 but the image is 6x4"):
        convert_map(np.ones((4, 5)), units="radius_px", to="radius_px", shape=(4, 6))
    bad = np.ones((4, 4))
    bad[1, 2] = np.nan
    with pytest.raises(MapUnitsError, match="1 NaN or infinite"):
        convert_map(bad, units="radius_px", to="radius_px")


# ----------------------------------------------------------------------------- selection
def test_selection_expands_chains_globs_and_bare_consumers():
    assert select_methods("kf_layered@zhuo_sim2011") == ["kf_layered@zhuo_sim2011"]
    assert select_methods("kf_layered") == ["kf_layered@gt"]
    every = select_methods("kf_layered@*")
    assert every[:3] == ["kf_layered@gt", "kf_layered@dt", "kf_layered@matting"]     # the dataset maps first
    assert "kf_layered@karaali2022" in every and "kf_layered@zhuo_sim2011" in every
    assert not any(n.endswith(("@local_std", "@var_laplacian")) for n in every)      # score maps: not by glob
    assert set(select_methods("*@gt")) == {"kf_layered@gt", "svbr2022@gt", "galetto2022_um@gt", "galetto2022_sdof@gt"}
    all_names = select_methods("all")
    assert "kf_layered@gt" in all_names and "kf_layered" not in all_names and "zhuo_sim2011" in all_names
    # a consumer alone takes its default map source: the Galetto enhancers their own map method
    assert select_methods("galetto2022_um") == ["galetto2022_um@galetto2022"]
    assert "galetto2022_sdof@galetto2022" in all_names


@pytest.mark.parametrize("spec, words", [
    ("kf_layerd@gt", "did you mean"),
    ("zhuo_sim2011@gt", "take(s) no blur map"),
    ("kf_layered@unsharp_mask", "provides enhanced_image, not a blur map"),
    ("kf_layered@karali2022", "did you mean"),
    ("kf_layered@", "a chain is CONSUMER@SOURCE"),
    ("kf_layered@gt@gt", "a chain is CONSUMER@SOURCE"),
    ("kf_layered@nothing*", "matches no blur-map method"),
])
def test_bad_chains_are_one_line_errors(spec, words):
    with pytest.raises(UserError, match=words.replace("(", r"\(").replace(")", r"\)")) as err:
        select_methods(spec)
    assert "\n" not in str(err.value)


def test_bad_chains_exit_2_from_the_cli_with_one_line(tmp_path):
    proc = run_bench("run", "--methods", "kf_layered@unsharp_mask", "--datasets", "synth_defocus", "--out",
                     str(tmp_path / "r"))
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not (tmp_path / "r").exists()


# ----------------------------------------------------------------------------- plan
def test_plan_gives_reasons_and_scores_the_input_map_of_map_chains():
    sets = {"synth_defocus": open_dataset("synth_defocus"), "synth_enhance": open_dataset("synth_enhance")}
    pairs = {(p.method, p.dataset): p for p in
             plan(["kf_layered@gt", "kf_layered@zhuo_sim2011", "kf_layered@local_std", "identity"], sets, None)}
    on_gt = pairs["kf_layered@gt", "synth_defocus"]
    assert not on_gt.reason and on_gt.task == "restoration" and "psnr" in on_gt.metrics and not on_gt.map_metrics
    assert "no ground-truth blur map" in pairs["kf_layered@gt", "synth_enhance"].reason
    dt = {(p.method, p.dataset): p for p in plan(["kf_layered@dt"], sets, None)}["kf_layered@dt", "synth_defocus"]
    assert dt.reason == "synth_defocus has no domain-transform-propagated blur map (@dt)"
    zhuo = pairs["kf_layered@zhuo_sim2011", "synth_defocus"]
    assert zhuo.map_metrics == ["mae_radius"] and "mae_radius" in zhuo.metrics
    assert not pairs["kf_layered@zhuo_sim2011", "synth_enhance"].map_metrics       # no GT map to score it against
    assert "score without physical units" in pairs["kf_layered@local_std", "synth_defocus"].reason
    assert not pairs["identity", "synth_defocus"].reason                         # the blurry-input reference row


def test_the_job_key_identifies_both_stages():
    dset = open_dataset("synth_defocus")
    info = PredInfo(provides="restored_image", units="image")

    def key(**source):
        stage = Stage("zhuo_sim2011", {"lam": 1e-3, **source.pop("params", {})}, **source)
        return job_key(Job("kf_layered@zhuo_sim2011", {"lam": 0.01}, "cpu", dset, "synth_defocus", ["a"], ["psnr"],
                           [], info, source=stage, map_metrics=[]))

    base = key()
    assert key(params={"lam": 2e-3}) != base
    assert key(weights="w.pt", weights_sha256={"w": "ab"}) != base
    assert key() == base


# ----------------------------------------------------------------------------- run
def test_a_run_with_chains_scores_the_restoration_and_the_map_and_records_both_stages(tmp_path):
    out, code = run(methods="kf_layered@gt,kf_layered@zhuo_sim2011,identity", datasets=["synth_defocus"],
                    out=tmp_path / "run", workers=1, report=False, params={"zhuo_sim2011": {"max_blur": 2.5}},
                    log=lambda m: None)
    assert code == EXIT_OK
    s = pd.read_parquet(out / "summary.parquet")
    val = {(r.method, r.metric): r.value for r in s.itertuples() if r.status == "ok"}
    assert val["kf_layered@gt", "psnr"] > val["identity", "psnr"] + 0.5           # the true map helps: +0.8 dB
    assert val["kf_layered@gt", "psnr"] > val["kf_layered@zhuo_sim2011", "psnr"]
    assert val["kf_layered@zhuo_sim2011", "mae_radius"] > 0.2                      # the map's own error
    meta = json.loads((out / "run.json").read_text())
    chain = meta["methods"]["kf_layered@zhuo_sim2011"]["chain"]
    assert chain["consumer"] == "kf_layered" and chain["source"] == "zhuo_sim2011"
    assert chain["source_info"]["params"]["max_blur"] == 2.5 and chain["source_info"]["version"]
    assert meta["methods"]["kf_layered@gt"]["chain"]["source_info"] is None


def test_chains_parse_and_list_their_parts():
    c = chains.parse("svbr2022@karaali2022")
    assert (c.consumer, c.source, c.on_gt, c.on_dataset) == ("svbr2022", "karaali2022", False, False)
    assert chains.parse("svbr2022@matting").on_dataset and not chains.parse("svbr2022@matting").on_gt
    assert chains.parse("karaali2022") is None
    assert chains.components(["svbr2022@karaali2022", "svbr2022@gt", "karaali2022", "kf_layered@gt",
                              "kf_layered@dt"]) == ["svbr2022", "karaali2022", "kf_layered"]


def test_compare_calls_a_chain_not_comparable_when_its_map_method_changed():
    from bench.compare import _changes

    def meta(penalty, version="1"):
        src = {"version": version, "params": {"penalty": penalty}, "weights": {}}
        return {"datasets": {"d": {"dataset_id": "x"}}, "metrics": {"psnr": {"version": "1"}},
                "methods": {"kf_layered@karaali2022": {"version": "1", "params": {}, "weights": {},
                                                      "chain": {"consumer": "kf_layered", "source": "karaali2022",
                                                                "source_info": src}}}}

    assert _changes(meta(100), meta(100), "kf_layered@karaali2022", "d", "psnr") == []
    why = _changes(meta(100), meta(20), "kf_layered@karaali2022", "d", "psnr")
    assert any("map method params changed" in w and "penalty" in w for w in why)
    assert any("map method version changed" in w for w in _changes(meta(100), meta(100, "2"), "kf_layered@karaali2022",
                                                                    "d", "psnr"))


def test_an_svpsf39_test_split_is_a_restoration_and_defocus_map_set(tmp_path):
    from datagen.manifest import load_manifest
    from datagen.runner import build

    from .test_generator_contract import QUIET, REPO
    corpus = build(load_manifest(REPO / "manifests" / "demo_svpsf39.yaml"), out=tmp_path / "svp.h5", workers=1,
                   limit=4, **QUIET).path
    dset = open_dataset("svpsf39", root=corpus, profile="quick")
    import h5py
    with h5py.File(corpus, "r") as f:
        rows = f["test"]["blurred"].shape[0]
    assert dset.tasks() == ("restoration", "defocus_map") and rows and len(dset.keys()) == 2 * rows  # 2 maps each
    s = dset.load(dset.keys()[1])
    assert s.image.shape == s.targets["sharp"].shape == (96, 96, 3) and s.targets["radius_map"].shape == (96, 96)
    assert set(np.unique(s.targets["radius_map"])) <= set(np.arange(0, 6.01, 0.25))
    other = build(load_manifest(REPO / "manifests" / "demo_gauss20.yaml"), out=tmp_path / "g.h5", workers=1, limit=2,
                  **QUIET).path
    with pytest.raises(UserError, match="a 'gauss20' corpus, not svpsf39"):
        open_dataset("svpsf39", root=other)
    # the corpus's propagated maps are chain sources too (SVBR-Net's "estimated-like" maps)
    for name, field in (("dt_radius_map", "dt"), ("matting_radius_map", "matting")):
        with h5py.File(corpus, "r") as f:
            stored = f["test"][field][0, int(dset.keys()[1].split(":")[2])]
        np.testing.assert_array_equal(s.targets[name], stored / np.float32(4.0))
    out, code = run(methods="kf_layered@gt,kf_layered@dt,kf_layered@matting,identity", datasets=["svpsf39"],
                    roots={"svpsf39": str(corpus)}, out=tmp_path / "run", workers=1, report=False, log=lambda m: None)
    s = pd.read_parquet(out / "summary.parquet")
    ok = s[s.status == "ok"]
    assert code == EXIT_OK and set(ok.method) == {"kf_layered@gt", "kf_layered@dt", "kf_layered@matting", "identity"}
    val = {(r.method, r.metric): r.value for r in ok.itertuples()}
    # each propagated map is scored against the GT beside what it restored; the GT map is not
    assert val["kf_layered@dt", "mae_radius"] > 0 and val["kf_layered@matting", "mae_radius"] > 0
    assert ("kf_layered@gt", "mae_radius") not in val
    assert val["kf_layered@dt", "psnr"] != val["kf_layered@gt", "psnr"]


def test_bench_predict_takes_a_map_per_image_and_refuses_bad_ones_in_one_line(tmp_path):
    from PIL import Image

    img = (np.random.default_rng(0).random((40, 48, 3)) * 255).astype(np.uint8)
    Image.fromarray(img).save(tmp_path / "a.png")
    good, small, nan = tmp_path / "good.npy", tmp_path / "small.npy", tmp_path / "nan.npy"
    np.save(good, np.full((40, 48), 2.0, np.float32))
    np.save(small, np.full((40, 40), 2.0, np.float32))
    bad = np.full((40, 48), 2.0, np.float32)
    bad[3, 3] = np.nan
    np.save(nan, bad)
    Image.fromarray(np.full((40, 48), 85, np.uint8)).save(tmp_path / "map.png")     # radius 85 / 255 * 6 = 2 px
    base = ["predict", "kf_layered", str(tmp_path / "a.png"), "--out", str(tmp_path / "out")]
    ok = run_bench(*base, "--map", str(good))
    assert ok.returncode == 0, ok.stderr
    from_png = run_bench(*base[:-1], str(tmp_path / "out2"), "--map", str(tmp_path / "map.png"))
    assert from_png.returncode == 0, from_png.stderr
    assert np.allclose(np.load(tmp_path / "out" / "a.npy"), np.load(tmp_path / "out2" / "a.npy"), atol=1e-5)
    (tmp_path / "empty.npy").write_bytes(b"")
    np.save(tmp_path / "text.npy", np.array([["a", "b"]]))
    for args, words in ((["--map", str(tmp_path / "empty.npy")], "not a numpy array file"),
                        (["--map", str(tmp_path / "text.npy")], "not numbers"),
                        (["--map", str(small)], "the blur map is 40x40 but the image is 48x40"),
                        (["--map", str(nan)], "NaN"),
                        ([], "needs a blur map"),
                        (["--map", str(good), "--map", str(good)], "2 map(s) for 1 image(s)")):
        proc = run_bench(*base, *args)
        assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert words in proc.stderr, proc.stderr
    proc = run_bench("predict", "local_std", str(tmp_path / "a.png"), "--out", str(tmp_path / "o3"), "--map", str(good))
    assert proc.returncode == 2 and "takes no blur map" in proc.stderr


def test_the_report_matrix_puts_consumers_by_map_sources_with_each_maps_error():
    from bench.report.chains import _matrix

    def row(method, metric, value, status="ok"):
        return {"method": method, "dataset": "d", "metric": metric, "value": value, "status": status, "reason": ""}

    rows = pd.DataFrame([row("identity", "ssim", 0.6), row("identity", "psnr", 22.0),
                         row("kf_layered@gt", "ssim", 0.75), row("kf_layered@gt", "psnr", 23.3),
                         row("kf_layered@zhuo_sim2011", "ssim", 0.63), row("kf_layered@zhuo_sim2011", "psnr", 22.5),
                         row("kf_layered@zhuo_sim2011", "mae_radius", 1.545),
                         row("svbr2022@gt", "ssim", float("nan"), "failed"), row("svbr2022@gt", "psnr", float("nan"), "failed")])
    order = ["identity", "kf_layered@gt", "kf_layered@zhuo_sim2011", "svbr2022@gt"]
    html = _matrix(rows, "d", order)
    text = " ".join(re.sub(r"<[^>]+>", " ", html).split())
    assert "deblurring \\ map gt zhuo_sim2011" in text and "map MAE (radius px) 0 1.545" in text
    assert "kf_layered 0.750 / 23.30 0.630 / 22.50" in text and "blurry input (identity) 0.600 / 22.00" in text
    assert "svbr2022" not in text                       # no cell restored anything: not a row
    na_only = rows.assign(status="n/a")
    assert _matrix(na_only, "d", order) is None
