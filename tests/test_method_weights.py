"""Method weights in the one weights catalog: import of a state dict, resolution order (user >
imported > shipped), ``bench run`` passing the resolved file and recording its sha256 (run.json,
job key), ``bench list methods`` / ``bench weights list`` with a method declaring weights."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import torch

from bench import weights as W
from bench.cli import main as bench_main
from datagen.errors import UserError
from methods.base import Method, check_image
from methods.nets.mobilenetv2 import MobileNetV2

REPO = Path(__file__).resolve().parents[1]
RECORD_ENV = "DEFOCUSBENCH_TEST_WEIGHTS_RECORD"


class WeightedMethod(Method):
    """Test plug-in: declares weights ``toyw``, records the path it was given, predicts a constant
    map equal to the sum of the weights' ``w`` tensor (so the output depends on the file)."""

    NAME = "toy_weighted"
    VERSION = "1"
    PROVIDES = "blur_map"
    UNITS = "score"
    HIGHER = "blurred"
    DESCRIPTION = "test plug-in with weights"
    WEIGHTS: ClassVar[dict[str, str]] = {"toyw": "a one-tensor state dict {'w': (4,)}"}

    def predict(self, image):
        img = check_image(image)
        folder = os.environ.get(RECORD_ENV)
        if folder:
            Path(folder, f"{os.getpid()}-{id(self)}.txt").write_text(str(self.weights))
        state = torch.load(self.weights, map_location="cpu", weights_only=True)
        return np.full(img.shape[:2], float(state["w"].sum()), dtype=np.float32)


class MissingWeightsMethod(WeightedMethod):
    NAME = "toy_missing"
    WEIGHTS: ClassVar[dict[str, str]] = {"toyw_absent": "weights nobody has"}


PLUGINS = ("toy_weighted=tests.test_method_weights:WeightedMethod,"
           "toy_missing=tests.test_method_weights:MissingWeightsMethod")


@pytest.fixture
def wdir(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "weights"
    monkeypatch.setenv(W.ENV_VAR, str(folder))
    return folder


@pytest.fixture
def shipped(tmp_path, monkeypatch) -> Path:
    """A stand-in for the package's methods/weights/ folder (the real one is filled by training)."""
    folder = tmp_path / "shipped"
    folder.mkdir()
    monkeypatch.setattr(W, "_shipped_dir", lambda: folder)
    return folder


def sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def mobilenet_file(path: Path, *, seed: int = 0, wrap: bool = False) -> Path:
    sd = MobileNetV2(seed=seed).state_dict()
    torch.save({"state_dict": sd, "epoch": 3} if wrap else sd, path)
    return path


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err, err
    return err


# ------------------------------------------------------------------------------ import

def test_bench_weights_import_stores_a_mobilenetv2_state_dict_for_galetto2022(wdir, tmp_path, capsys):
    src = mobilenet_file(tmp_path / "mine.pt", wrap=True)       # a checkpoint {"state_dict": ..., "epoch": 3}
    assert bench_main(["weights", "import", "galetto2022", str(src)]) == 0
    stored = wdir / "galetto2022.pt"
    assert capsys.readouterr().out.strip() == str(stored)
    side = json.loads((wdir / "galetto2022.pt.json").read_text())
    assert side["sha256"] == sha(stored) and side["source_sha256"] == sha(src)
    st = W.weight_status("galetto2022")
    assert (st["kind"], st["state"], st["origin"], st["sha256"]) == ("method", "verified", "imported", sha(stored))
    assert st["used_by"] == ["galetto2022", "galetto2022_sdof", "galetto2022_um"]
    # the stored file is the plain state dict, and galetto2022 loads it strictly
    from methods.galetto2022 import Galetto2022
    net = Galetto2022(weights=str(stored)).model()
    ref = MobileNetV2(seed=0).state_dict()
    back = torch.load(stored, weights_only=True)
    assert back.keys() == ref.keys() and all(torch.equal(back[k], ref[k]) for k in ref)
    assert net is not None
    # re-importing the same source changes nothing
    before = stored.stat().st_mtime_ns
    W.import_weights("galetto2022", src)
    assert stored.stat().st_mtime_ns == before


class _Evil:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.mark.parametrize("kind", ["tensor", "list", "text", "code"])
def test_importing_a_non_state_dict_fails_in_one_line_without_running_code(wdir, tmp_path, capsys, kind):
    src, marker = tmp_path / f"bad-{kind}.pt", tmp_path / "code-ran"
    if kind == "tensor":
        torch.save(torch.zeros(3), src)
    elif kind == "list":
        torch.save([torch.zeros(3)], src)
    elif kind == "text":
        src.write_text("not a torch file\n")
    else:
        torch.save({"w": torch.zeros(2), "payload": _Evil(marker)}, src)
    assert bench_main(["weights", "import", "galetto2022", str(src)]) == 2
    err = one_line_error(capsys)
    assert err.startswith("bench: error: galetto2022 weights: ") and src.name in err
    assert ("not a state dict" in err) if kind in ("tensor", "list") else ("weights_only=True" in err)
    assert not marker.exists()                       # the pickle's code never ran
    assert not wdir.exists() or not any(wdir.iterdir())
    assert W.weight_status("galetto2022")["origin"] == "shipped"      # nothing imported: the shipped file stays in use


def test_unknown_weight_is_one_line(wdir):
    with pytest.raises(W.UnknownWeightError, match=r"^unknown weight 'galeto2022'; did you mean galetto2022[,?]"):
        W.weight_status("galeto2022")


# ------------------------------------------------------------------------------ resolution order

def test_resolution_order_user_then_imported_then_shipped(wdir, shipped, tmp_path):
    with pytest.raises(W.WeightsMissing) as missing:
        W.resolve_weights("galetto2022")
    assert "bench weights import galetto2022 FILE" in str(missing.value) and "\n" not in str(missing.value)

    ship = mobilenet_file(shipped / "galetto2022.pt", seed=1)
    card = {"method": "galetto2022", "profile": "cpu", "epochs_run": 12, "val": {"best": {"acc": 0.875, "epoch": 9}},
            "test": {"acc": 0.81}, "weights": {"file": "model.pt", "sha256": sha(ship)}}
    (shipped / "galetto2022.json").write_text(json.dumps(card))
    r = W.resolve_weights("galetto2022")
    assert (r.origin, r.path, r.sha256) == ("shipped", ship, sha(ship))
    st = W.weight_status("galetto2022")
    assert (st["state"], st["origin"], st["card_matches"]) == ("verified", "shipped", True)
    assert st["card_summary"]["val_acc"] == 0.875 and st["card"] == card

    W.import_weights("galetto2022", mobilenet_file(tmp_path / "imp.pt", seed=2))
    r = W.resolve_weights("galetto2022")
    assert (r.origin, r.path, r.sha256) == ("imported", wdir / "galetto2022.pt", sha(wdir / "galetto2022.pt"))
    assert r.sha256 != sha(ship)

    mine = mobilenet_file(tmp_path / "user.pt", seed=3)
    r = W.resolve_method_weights("galetto2022_um", {"galetto2022": str(mine)})["galetto2022"]
    assert (r.origin, r.path, r.sha256) == ("user", mine, sha(mine))
    assert r.record() == {"origin": "user", "path": str(mine), "sha256": sha(mine)}

    # a damaged imported file is refused, never silently replaced by the shipped one
    (wdir / "galetto2022.pt").write_bytes(b"changed")
    with pytest.raises(W.WeightsUnusable, match="re-import it"):
        W.resolve_weights("galetto2022")
    assert W.weight_status("galetto2022")["state"] == "unverified"


def test_list_methods_and_weights_list_show_a_method_with_weights(wdir, shipped, tmp_path, capsys):
    assert bench_main(["list", "methods"]) == 0
    out = capsys.readouterr().out
    assert "galetto2022      v1    blur_map [sigma_px, higher = blurred]; galetto2022 MISSING" in out

    ship = mobilenet_file(shipped / "galetto2022.pt")
    card = {"profile": "cpu", "epochs_run": 12, "val": {"best": {"acc": 0.875}}, "weights": {"sha256": "0" * 64},
            "hyperparameters": {"lr": 0.001}}
    (shipped / "galetto2022.json").write_text(json.dumps(card))
    assert bench_main(["list", "methods", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["galetto2022"]["weights_state"]["galetto2022"]["sha256"] == sha(ship)
    assert rows["galetto2022"]["weights_state"]["galetto2022"]["origin"] == "shipped"
    assert rows["local_std"]["weights_state"] == {}

    assert bench_main(["weights", "list"]) == 0
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if ln.startswith("galetto2022"))
    assert line.split()[:5] == ["galetto2022", "method", "verified", "shipped", sha(ship)[:12]]
    assert "model card: profile cpu, epochs 12, val_acc 0.8750, card describes other weights" in out
    assert any(ln.startswith("niqe") for ln in out.splitlines())
    assert bench_main(["weights", "list", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["galetto2022"]["card"] == card and rows["niqe"]["kind"] == "metric"


# ------------------------------------------------------------------------------ bench run

def test_job_key_carries_the_weights_sha256():
    from bench.datasets import open_dataset
    from bench.harness import Job, job_key
    from bench.metrics import PredInfo

    dset = open_dataset("synth_detection", profile="quick")
    job = Job("local_std", {}, "cpu", dset, "synth_detection", dset.keys()[:1], [], [], PredInfo())
    plain = job_key(job)
    job.weights_sha256 = {"toyw": "a" * 64}
    with_a = job_key(job)
    job.weights_sha256 = {"toyw": "b" * 64}
    assert len({plain, with_a, job_key(job)}) == 3


def test_metric_weights_in_use_are_recorded_and_in_the_job_key(tmp_path, monkeypatch):
    """run.json says which NIQE / BRISQUE file scored a run; a task never reuses a result scored
    with another metric file (e.g. after `bench weights import niqe FILE`)."""
    from bench.datasets import open_dataset
    from bench.harness import Job, _metric_weights, job_key, metric_spec_dict
    from bench.metrics import PredInfo

    monkeypatch.setenv(W.ENV_VAR, str(tmp_path / "w"))
    metrics = {m: metric_spec_dict(m) for m in ("niqe", "brisque", "piqe")}
    shas = _metric_weights(metrics)
    assert shas == {n: W.WEIGHTS[n].shipped_sha256 for n in ("niqe", "brisque")}
    rec = metrics["niqe"]["weights_used"]["niqe"]
    assert (rec["origin"], rec["sha256"]) == ("shipped", W.WEIGHTS["niqe"].shipped_sha256)
    assert "weights_used" not in metrics["piqe"]

    dset = open_dataset("synth_detection", profile="quick")
    job = Job("local_std", {}, "cpu", dset, "synth_detection", dset.keys()[:1], ["niqe"], [], PredInfo())
    plain = job_key(job)
    job.metric_weights_sha256 = {"niqe": "a" * 64}
    keyed = job_key(job)
    job.metric_weights_sha256 = {"niqe": "b" * 64}
    assert len({plain, keyed, job_key(job)}) == 3


def _toy_file(path: Path, value: float) -> Path:
    torch.save({"w": torch.full((4,), value)}, path)
    return path


def test_bench_run_passes_the_resolved_weights_and_records_their_sha256(wdir, tmp_path, monkeypatch):
    from bench.harness import EXIT_OK, EXIT_PARTIAL, run
    from bench.store import load_run

    monkeypatch.setenv("DEFOCUSBENCH_METHODS", PLUGINS)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    record = tmp_path / "record"
    record.mkdir()
    monkeypatch.setenv(RECORD_ENV, str(record))
    W.import_weights("toyw", _toy_file(tmp_path / "toy.pt", 0.25))
    stored = wdir / "toyw.pt"
    logs: list[str] = []

    # toy_missing has no weights anywhere: one-line failure for it, the rest of the run goes on
    path, code = run(methods="toy_weighted,toy_missing", datasets=["synth_detection"], out=tmp_path / "r1",
                     workers=1, report=False, log=logs.append)
    assert code == EXIT_PARTIAL
    meta = json.loads((path / "run.json").read_text())
    assert meta["methods"]["toy_weighted"]["weights"]["toyw"] == {
        "origin": "imported", "path": str(stored), "sha256": sha(stored), "description": WeightedMethod.WEIGHTS["toyw"]}
    miss = meta["methods"]["toy_missing"]["weights"]["toyw_absent"]
    assert miss["sha256"] is None and miss["error"].startswith("WeightsMissing: weights missing: toyw_absent")
    got = load_run(path)
    summary = got.summary.set_index(["method", "metric"])
    assert (summary.loc["toy_weighted", "status"] == "ok").all()
    assert (summary.loc["toy_missing", "status"] == "failed").all()
    assert all("toyw_absent" in r for r in summary.loc["toy_missing", "reason"])
    assert [f["stage"] for f in got.failures] == ["weights"] and got.failures[0]["method"] == "toy_missing"
    assert {p.read_text() for p in record.iterdir()} == {str(stored)}

    # the user's file (--weights PATH) wins, and the run records it
    for p in record.iterdir():
        p.unlink()
    mine = _toy_file(tmp_path / "mine.pt", 0.5)
    path, code = run(methods="toy_weighted", datasets=["synth_detection"], out=tmp_path / "r2", workers=1,
                     report=False, weights=[str(mine)], log=logs.append)
    assert code == EXIT_OK
    rec = json.loads((path / "run.json").read_text())["methods"]["toy_weighted"]["weights"]["toyw"]
    assert (rec["origin"], rec["path"], rec["sha256"]) == ("user", str(mine), sha(mine))
    assert {p.read_text() for p in record.iterdir()} == {str(mine)}


def test_run_weights_option_is_checked_up_front(wdir, tmp_path, monkeypatch):
    from bench.harness import parse_weights

    monkeypatch.setenv("DEFOCUSBENCH_METHODS", PLUGINS)
    assert parse_weights(["/x/y.pt"], ["toy_weighted", "local_std"]) == {"toyw": "/x/y.pt"}
    assert parse_weights(["toyw=/x/y.pt"], ["toy_weighted"]) == {"toyw": "/x/y.pt"}
    with pytest.raises(UserError, match="give NAME=PATH"):
        parse_weights(["/x/y.pt"], ["toy_weighted", "toy_missing"])
    with pytest.raises(UserError, match="no selected method uses weights 'other'"):
        parse_weights(["other=/x/y.pt"], ["toy_weighted"])
    with pytest.raises(UserError, match="no selected method uses weights"):
        parse_weights(["/x/y.pt"], ["local_std"])


def test_a_task_refuses_weights_that_changed_after_the_driver_resolved_them(tmp_path, monkeypatch):
    from bench.datasets import open_dataset
    from bench.harness import Job, run_job
    from bench.metrics import PredInfo

    monkeypatch.setenv("DEFOCUSBENCH_METHODS", PLUGINS)
    f = _toy_file(tmp_path / "toy.pt", 0.25)
    dset = open_dataset("synth_detection", profile="quick")
    info = PredInfo(provides="blur_map", units="score", higher="blurred")
    job = Job("toy_weighted", {}, "cpu", dset, "synth_detection", dset.keys()[:2], [], [], info,
              weights=str(f), weights_sha256={"toyw": sha(f)})
    assert run_job(job)["failures"] == [] and len(run_job(job)["timings"]) == 2
    _toy_file(f, 0.5)                                   # replaced between resolution and the task
    failures = run_job(job)["failures"]
    assert len(failures) == 2 and all("changed during the run" in x["error"] for x in failures)
