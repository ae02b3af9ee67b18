"""Plug-ins and the Python API: datasets registered through an entry point and through ``register_dataset``,
then run by ``bench`` (in process and on the command line); methods and metrics registered in process, and
shared with Dask workers; taken names are one-line errors.

The entry point is real: a ``*.dist-info`` folder on the path is what ``pip install`` of a third-party
package leaves in site-packages, and :mod:`importlib.metadata` reads it as it reads any installed one.
"""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from bench.datasets import (
    DATASETS,
    dataset_table,
    list_datasets,
    needs_root,
    open_dataset,
    register_dataset,
)
from bench.harness import EXIT_OK, run
from bench.metrics import (
    Metric,
    MetricSpec,
    create_metric,
    list_metrics,
    register_metric,
)
from bench.metrics.base import mean_result
from datagen import registry
from datagen.errors import UserError
from methods.classical.local_stats import LocalStd
from methods.registry import create_method, get_method, register_method, select_methods

from .conftest import REPO, run_bench
from .plugins import HalfBlurNoise

QUIET = {"workers": 1, "report": False, "log": lambda m: None}


class NotebookSet(HalfBlurNoise):
    """What a notebook defines: a dataset class of its own (here the plug-in's data under another name)."""

    NAME = "notebook_set"


class NotebookStd(LocalStd):
    NAME = "notebook_std"


class MeanMap(Metric):
    spec = MetricSpec(name="mean_map", task="detection", needs=(), accepts=("blur_map",), higher_is_better=True,
                      unit="score", version="1", threshold=0.0, description="test metric: the map's mean")

    def per_sample(self, pred, sample, info):
        return {"value": float(np.mean(pred))}

    def reduce(self, states):
        return mean_result(states)


@pytest.fixture
def fresh_registrations(monkeypatch):
    """No in-process registrations before or after the test."""
    monkeypatch.setattr(registry, "_REGISTERED", {})


@pytest.fixture
def plugin_site(tmp_path, monkeypatch):
    """A site folder holding an installed distribution's metadata, whose ``defocusbench.datasets`` entry
    points name the datasets of tests/plugins.py and one that cannot be imported; on ``sys.path`` here
    (``PYTHONPATH`` for the console scripts)."""
    info = tmp_path / "site" / "defocusbench_testplugins-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: defocusbench-testplugins\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[defocusbench.datasets]\n"
                                           "plug_halfblur = tests.plugins:HalfBlurNoise\n"
                                           "plug_npz = tests.plugins:NpzMaps\n"
                                           "plug_broken = tests.no_such_module:Nothing\n")
    monkeypatch.syspath_prepend(str(info.parent))
    registry._plugins.cache_clear()      # entry points are scanned once per process
    yield info.parent
    registry._plugins.cache_clear()


def _npz_folder(folder, n=2):
    folder.mkdir()
    for i in range(n):
        image = np.random.default_rng(i).random((40, 48, 3), np.float32)
        np.savez(folder / f"s{i}.npz", image=image, radius_map=np.full((40, 48), 1.5 + i, np.float32))
    return folder


def _ok(out) -> pd.DataFrame:
    s = pd.read_parquet(out / "summary.parquet")
    return s[s.status == "ok"]


def test_datasets_from_an_entry_point_are_listed_opened_and_run(plugin_site, tmp_path):
    assert {"plug_halfblur", "plug_npz", "plug_broken", "cuhk"} <= set(list_datasets())
    rows = {r["name"]: r for r in dataset_table()}
    assert rows["plug_npz"]["needs_root"] and not rows["plug_halfblur"]["needs_root"] and rows["cuhk"]["needs_root"]
    assert rows["plug_halfblur"]["task"] == "detection" and rows["plug_halfblur"]["targets"] == ["blur_mask"]
    assert rows["plug_broken"]["description"].startswith("cannot be loaded:") and "no_such_module" in \
        rows["plug_broken"]["description"]
    # "needs a root" is read from the constructor: the plug-in declares nothing else
    assert needs_root("plug_npz") and not needs_root("plug_halfblur") and "plug_npz" in DATASETS
    with pytest.raises(UserError, match="needs its folder: pass --root plug_npz=DIR"):
        open_dataset("plug_npz")
    with pytest.raises(UserError, match="takes no --root"):
        open_dataset("plug_halfblur", root=tmp_path)
    assert len(open_dataset("plug_halfblur", profile="quick")) == 3   # the profile's limit=4; it has 3
    npz = _npz_folder(tmp_path / "npz")
    assert open_dataset("plug_npz", root=npz).keys() == ["s0", "s1"]
    out, code = run(methods="local_std,zhuo_sim2011", datasets=["plug_halfblur"], roots={"plug_npz": str(npz)},
                    out=tmp_path / "run", **QUIET)
    ok = _ok(out)
    assert code == EXIT_OK and set(ok.dataset) == {"plug_halfblur", "plug_npz"}
    assert {"accuracy_alpha"} <= set(ok[ok.dataset == "plug_halfblur"].metric)
    assert set(ok[ok.dataset == "plug_npz"].metric) >= {"mae_radius"}
    run_json = json.loads((out / "run.json").read_text())
    assert set(run_json["datasets"]) == {"plug_halfblur", "plug_npz"}


def test_bench_lists_and_runs_an_entry_point_dataset(plugin_site, tmp_path):
    env = {"PYTHONPATH": f"{plugin_site}:{REPO}"}
    r = run_bench("list", "datasets", "--json", env=env)
    assert r.returncode == 0, r.stderr
    rows = {row["name"]: row for row in json.loads(r.stdout)}
    assert rows["plug_npz"]["needs_root"] is True and rows["plug_halfblur"]["needs_root"] is False
    assert rows["plug_broken"]["description"].startswith("cannot be loaded:")
    r = run_bench("list", "datasets", env=env)
    line = next(x for x in r.stdout.splitlines() if x.startswith("plug_npz"))
    assert "needs --root" in line and "disk-radius map" in line
    r = run_bench("run", "--methods", "local_std", "--datasets", "plug_halfblur", "--workers", "1", "--no-report",
                  "--out", tmp_path / "run", env=env)
    assert r.returncode == 0, r.stderr
    assert set(_ok(tmp_path / "run").dataset) == {"plug_halfblur"}
    r = run_bench("run", "--methods", "local_std", "--datasets", "plug_halfblur", "--out", tmp_path / "run2")
    assert r.returncode == 2 and "unknown dataset 'plug_halfblur'" in r.stderr and "Traceback" not in r.stderr


def test_register_dataset_then_run_it_in_process(fresh_registrations, tmp_path):
    assert register_dataset(NotebookSet) is NotebookSet
    assert "notebook_set" in list_datasets() and DATASETS["notebook_set"] is NotebookSet
    assert next(r for r in dataset_table() if r["name"] == "notebook_set")["needs_root"] is False
    out, code = run(methods="local_std", datasets=["notebook_set"], out=tmp_path / "run", **QUIET)
    ok = _ok(out)
    assert code == EXIT_OK and set(ok.dataset) == {"notebook_set"} and "accuracy_alpha" in set(ok.metric)
    assert register_dataset(NotebookSet) is NotebookSet       # the same class again: nothing to do


def test_taken_or_invalid_names_are_one_line_errors(fresh_registrations, plugin_site):
    register_dataset(NotebookSet)
    clash = type("Other", (HalfBlurNoise,), {"NAME": "notebook_set"})
    with pytest.raises(UserError, match=r"dataset 'notebook_set' is already registered \(-> tests.test_plugins_api"
                                        r":NotebookSet\); .*replace=True"):
        register_dataset(clash)
    for taken in ("cuhk", "plug_halfblur"):   # built in; an entry point
        with pytest.raises(UserError, match=f"dataset '{taken}' is already registered"):
            register_dataset(type("T", (HalfBlurNoise,), {"NAME": taken}))
    with pytest.raises(UserError, match="method 'local_std' is already registered"):
        register_method(type("S", (LocalStd,), {"NAME": "local_std"}))
    with pytest.raises(UserError, match="not a subclass of Dataset"):
        register_dataset(LocalStd)
    with pytest.raises(UserError, match="name 'a/b' .* is invalid"):
        register_dataset(type("Bad", (HalfBlurNoise,), {"NAME": "a/b"}))
    assert register_dataset(clash, replace=True) is clash and DATASETS["notebook_set"] is clash


def test_register_method_and_metric_in_process_and_on_dask_workers(fresh_registrations):
    from datagen.registry import share_registrations
    from datagen.runner import connect

    register_method(NotebookStd)
    register_metric(MeanMap)
    assert select_methods("notebook_*") == ["notebook_std"] and "mean_map" in list_metrics()
    image = np.random.default_rng(0).random((24, 24, 3), np.float32)
    pred = create_method("notebook_std", {"window": 5}).predict(image)
    assert pred.shape == (24, 24) and create_metric("mean_map").spec.unit == "score"

    def names_on_the_worker():
        from bench.metrics import get_metric
        from methods.registry import get_method
        return get_method("notebook_std").__qualname__, get_metric("mean_map").spec.name

    client, cluster = connect(None, 1)
    try:
        share_registrations(client)
        assert client.submit(names_on_the_worker, pure=False).result() == ("NotebookStd", "mean_map")
    finally:
        client.close()
        cluster.close()
    assert get_method("notebook_std") is NotebookStd


def test_a_registered_method_and_metric_run_in_bench(fresh_registrations, tmp_path):
    register_method(NotebookStd)
    register_metric(MeanMap)
    out, code = run(methods="notebook_std", datasets=["synth_detection"], metrics="accuracy_alpha,mean_map",
                    out=tmp_path / "run", **QUIET)
    ok = _ok(out)
    assert code == EXIT_OK and set(ok.metric) == {"accuracy_alpha", "mean_map"} and set(ok.method) == {"notebook_std"}
