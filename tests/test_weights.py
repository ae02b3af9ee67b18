"""bench.weights: folder, registry, import (conversion, sidecar, idempotence, validation, atomicity)."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from bench import weights as W
from datagen.errors import OutputError, UserError


@pytest.fixture
def wdir(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "weights"
    monkeypatch.setenv(W.ENV_VAR, str(folder))
    return folder


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fake_libsvm(path: Path, *, n_sv: int = 5, n_feat: int = 36, gamma: float = 0.05, rho: float = -153.591,
                total: int | None = None, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    lines = ["svm_type epsilon_svr", "kernel_type rbf", f"gamma {gamma}", "nr_class 2",
             f"total_sv {n_sv if total is None else total}", f"rho {rho}", "probA 5.71401", "SV"]
    for _ in range(n_sv):
        coef = rng.uniform(-1024, 1024)
        feats = " ".join(f"{j + 1}:{v:.6g}" for j, v in enumerate(rng.uniform(-1, 1, n_feat)))
        lines.append(f"{coef:.10g} {feats} ")
    path.write_text("\n".join(lines) + "\n")
    return path


def fake_npz(path: Path, *, mu_shape=(1, 36), cov_shape=(36, 36), keys=("mu_pris_param", "cov_pris_param"),
             seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(cov_shape[0], cov_shape[1]))
    cov = a @ a.T if cov_shape[0] == cov_shape[1] else a
    np.savez(path, **{keys[0]: rng.normal(size=mu_shape), keys[1]: cov, "gaussian_window": np.ones((7, 7))})
    return path


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# ------------------------------------------------------------------------------------ paths

def test_weights_dir_env_and_default(tmp_path, monkeypatch):
    monkeypatch.setenv(W.ENV_VAR, str(tmp_path / "w"))
    assert W.weights_dir() == tmp_path / "w"
    assert W.weight_path("niqe") == tmp_path / "w" / "niqe_modelparameters.mat"
    assert W.weight_path("brisque") == tmp_path / "w" / "brisque_svm_weights.pth"
    monkeypatch.delenv(W.ENV_VAR)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert W.weights_dir() == tmp_path / "home" / ".cache" / "defocusbench" / "weights"
    monkeypatch.setenv(W.ENV_VAR, "")
    assert W.weights_dir() == tmp_path / "home" / ".cache" / "defocusbench" / "weights"


def test_registry_and_status_when_absent(wdir):
    assert {"niqe", "brisque"} <= set(W.WEIGHTS)
    for name in ("niqe", "brisque"):
        spec = W.WEIGHTS[name]
        assert spec.name == name and name in spec.used_by and spec.sources and spec.description
        st = W.weight_status(name)
        assert st["present"] is False and st["sha256"] is None and st["source_sha256"] is None
        assert st["path"] == str(wdir / spec.filename)
        assert {"name", "path", "present", "sha256", "source_sha256", "imported_at", "used_by", "description"} <= set(st)
    assert [r["name"] for r in W.list_weights()] == sorted(W.WEIGHTS)
    assert not wdir.exists()          # status never creates the folder


def test_unknown_name(wdir, tmp_path):
    with pytest.raises(W.UnknownWeightError, match="did you mean niqe"):
        W.weight_status("niqee")
    with pytest.raises(UserError, match="unknown weight"):
        W.import_weights("nope", fake_libsvm(tmp_path / "m.txt"))


# ------------------------------------------------------------------------------------ import

def test_import_brisque_libsvm(wdir, tmp_path):
    import torch

    src = fake_libsvm(tmp_path / "allmodel", n_sv=7)
    path = W.import_weights("brisque", src)
    assert path == wdir / "brisque_svm_weights.pth" and path.is_file()
    coef, sv = torch.load(path, weights_only=False)           # exactly what pyiqa does
    assert coef.shape == (7,) and sv.shape == (7, 36) and coef.dtype == torch.float64
    first = src.read_text().splitlines()[8].split()
    assert coef[0].item() == pytest.approx(float(first[0]))
    assert sv[0, 35].item() == pytest.approx(float(first[36].split(":")[1]))

    side = json.loads((wdir / "brisque_svm_weights.pth.json").read_text())
    assert side["sha256"] == sha(path) and side["source_sha256"] == sha(src)
    assert side["source_file"] == "allmodel" and side["converter_version"] == 1 and side["imported_at"]
    st = W.weight_status("brisque")
    assert st["present"] and st["verified"] and st["sha256"] == sha(path) and st["source_sha256"] == sha(src)
    assert leftovers(wdir) == ["brisque_svm_weights.pth", "brisque_svm_weights.pth.json"]

    # a converted .pth is accepted too and converts to the same bytes
    again = tmp_path / "copy.pth"
    again.write_bytes(path.read_bytes())
    before = sha(path)
    W.import_weights("brisque", again)
    assert sha(path) == before


def test_import_niqe_npz_and_mat_agree(wdir, tmp_path):
    src = fake_npz(tmp_path / "pris.npz")
    path = W.import_weights("niqe", src)
    assert path == wdir / "niqe_modelparameters.mat"
    params = scipy.io.loadmat(path)                            # exactly what pyiqa does
    with np.load(src) as npz:
        np.testing.assert_array_equal(np.ravel(params["mu_prisparam"]), npz["mu_pris_param"].ravel())
        np.testing.assert_array_equal(params["cov_prisparam"], npz["cov_pris_param"])
        mu, cov = npz["mu_pris_param"], npz["cov_pris_param"]
    assert params["mu_prisparam"].shape == (1, 36)
    first = sha(path)

    mat = tmp_path / "niqe_modelparameters.mat"                # the MATLAB release's layout, mu as a column
    scipy.io.savemat(mat, {"mu_prisparam": mu.reshape(36, 1), "cov_prisparam": cov})
    W.import_weights("niqe", mat)
    assert sha(path) == first                                  # same model -> byte-identical file
    assert json.loads((wdir / "niqe_modelparameters.mat.json").read_text())["source_file"] == mat.name


def test_reimport_is_a_noop_and_new_source_replaces(wdir, tmp_path):
    src = fake_libsvm(tmp_path / "a.txt")
    path = W.import_weights("brisque", src)
    side = wdir / "brisque_svm_weights.pth.json"
    stamp = (path.stat().st_mtime_ns, path.stat().st_ino, side.read_text())
    assert W.import_weights("brisque", src) == path
    assert (path.stat().st_mtime_ns, path.stat().st_ino, side.read_text()) == stamp

    other = fake_libsvm(tmp_path / "b.txt", seed=1)
    W.import_weights("brisque", other)
    assert json.loads(side.read_text())["source_sha256"] == sha(other)
    assert W.weight_status("brisque")["verified"]

    path.write_bytes(b"tampered")                              # a damaged file is rewritten, not trusted
    assert W.weight_status("brisque")["verified"] is False
    W.import_weights("brisque", other)
    assert W.weight_status("brisque")["verified"]


# ------------------------------------------------------------------------------------ bad sources

def _npz_missing_keys(p: Path) -> Path:
    return fake_npz(p / "x.npz", keys=("mu", "cov"))


def _npz_bad_mu(p: Path) -> Path:
    return fake_npz(p / "x.npz", mu_shape=(1, 35))


def _npz_bad_cov(p: Path) -> Path:
    return fake_npz(p / "x.npz", cov_shape=(36, 35))


def _npz_truncated(p: Path) -> Path:
    good = fake_npz(p / "good.npz").read_bytes()
    (p / "x.npz").write_bytes(good[: len(good) // 2])
    return p / "x.npz"


def _npz_nan(p: Path) -> Path:
    cov = np.eye(36)
    cov[3, 3] = np.nan
    np.savez(p / "x.npz", mu_pris_param=np.zeros(36), cov_pris_param=cov)
    return p / "x.npz"


def _mat_v73(p: Path) -> Path:
    (p / "x.mat").write_bytes(b"MATLAB 7.3 MAT-file".ljust(512, b" ") + b"\x89HDF\r\n\x1a\n" + b"\0" * 64)
    return p / "x.mat"


def _binary_garbage(p: Path) -> Path:
    (p / "x.bin").write_bytes(bytes(range(256)) * 4)
    return p / "x.bin"


def _text_garbage(p: Path) -> Path:
    (p / "x.txt").write_text("svm_type epsilon_svr\nkernel_type rbf\ngamma 0.05\nrho -153.591\nSV\nhello world 1:2\n")
    return p / "x.txt"


def _not_libsvm(p: Path) -> Path:
    (p / "x.txt").write_text("this is just some text\nwithout any model in it\n")
    return p / "x.txt"


def _feature_index_37(p: Path) -> Path:
    return fake_libsvm(p / "x.txt", n_feat=37)


def _feature_count_18(p: Path) -> Path:
    return fake_libsvm(p / "x.txt", n_feat=18)


def _truncated_libsvm(p: Path) -> Path:
    return fake_libsvm(p / "x.txt", n_sv=5, total=774)


def _wrong_gamma(p: Path) -> Path:
    return fake_libsvm(p / "x.txt", gamma=0.1)


def _empty(p: Path) -> Path:
    (p / "x.txt").write_bytes(b"")
    return p / "x.txt"


def _pth_dict(p: Path) -> Path:
    import torch
    torch.save({"sv": torch.zeros(3, 36)}, p / "x.pth")
    return p / "x.pth"


def _pth_wrong_dims(p: Path) -> Path:
    import torch
    torch.save((torch.zeros(3), torch.zeros(3, 35)), p / "x.pth")
    return p / "x.pth"


def _pth_truncated(p: Path) -> Path:
    good = _pth_dict(p).read_bytes()
    (p / "x.pth").write_bytes(good[: len(good) // 2])
    return p / "x.pth"


def _npz_as_brisque(p: Path) -> Path:
    return fake_npz(p / "x.npz")


def _missing(p: Path) -> Path:
    return p / "does_not_exist.npz"


def _folder(p: Path) -> Path:
    (p / "a_folder").mkdir()
    return p / "a_folder"


BAD = [
    ("niqe", _missing, "not found"),
    ("brisque", _folder, "is a folder"),
    ("niqe", _npz_missing_keys, "has no mu_pris_param"),
    ("niqe", _npz_bad_mu, "NIQE expects 36 values"),
    ("niqe", _npz_bad_cov, "NIQE expects 36x36"),
    ("niqe", _npz_truncated, "not a readable .npz"),
    ("niqe", _npz_nan, "NaN"),
    ("niqe", _mat_v73, "v7.3"),
    ("niqe", _binary_garbage, "neither an .npz"),
    ("brisque", _text_garbage, "does not parse"),
    ("brisque", _not_libsvm, "no 'SV' line"),
    ("brisque", _binary_garbage, "neither text"),
    ("brisque", _feature_index_37, "BRISQUE expects 36 features"),
    ("brisque", _feature_count_18, "have 18 features; BRISQUE expects 36"),
    ("brisque", _truncated_libsvm, "truncated or corrupt"),
    ("brisque", _wrong_gamma, "gamma 0.05"),
    ("brisque", _empty, "is empty"),
    ("brisque", _pth_dict, "not the (sv_coef, sv) tuple"),
    ("brisque", _pth_wrong_dims, "expects 36 features"),
    ("brisque", _pth_truncated, "zip archive"),
    ("brisque", _npz_as_brisque, "numpy .npz archive"),
]


@pytest.mark.parametrize(("name", "make", "needle"), BAD, ids=[f"{n}-{m.__name__.strip('_')}" for n, m, _ in BAD])
def test_bad_source_is_one_line_user_error(wdir, tmp_path, name, make, needle):
    src_dir = tmp_path / "src"
    src_dir.mkdir()
    src = make(src_dir)
    with pytest.raises(W.WeightsSourceError) as info:
        W.import_weights(name, src)
    msg = str(info.value)
    assert isinstance(info.value, UserError)
    assert "\n" not in msg and needle in msg, msg
    assert src.name in msg and "give" in msg, msg           # names the file and says what to do
    assert leftovers(wdir) == []                              # nothing written, no temporaries


def test_failed_import_keeps_previous_file(wdir, tmp_path):
    good = fake_libsvm(tmp_path / "good.txt")
    path = W.import_weights("brisque", good)
    before = (sha(path), (wdir / "brisque_svm_weights.pth.json").read_text())
    with pytest.raises(UserError):
        W.import_weights("brisque", _feature_index_37(tmp_path))
    assert (sha(path), (wdir / "brisque_svm_weights.pth.json").read_text()) == before
    assert leftovers(wdir) == ["brisque_svm_weights.pth", "brisque_svm_weights.pth.json"]


@pytest.mark.parametrize("fail_on", [1, 2])
def test_atomic_write_leaves_no_temporaries(wdir, tmp_path, monkeypatch, fail_on):
    real_replace = os.replace
    calls = []

    def flaky_replace(a, b):
        calls.append(b)
        if len(calls) == fail_on:
            raise OSError(28, "No space left on device")
        return real_replace(a, b)

    monkeypatch.setattr(W.os, "replace", flaky_replace)
    with pytest.raises(OSError, match="No space left"):
        W.import_weights("niqe", fake_npz(tmp_path / "p.npz"))
    left = leftovers(wdir)
    assert not [n for n in left if n.endswith(".tmp")], left
    if fail_on == 1:
        assert left == []
    else:   # data renamed, sidecar not: the status says so and a re-import repairs it
        assert left == ["niqe_modelparameters.mat"]
        assert W.weight_status("niqe")["verified"] is None
        monkeypatch.setattr(W.os, "replace", real_replace)
        W.import_weights("niqe", tmp_path / "p.npz")
        assert W.weight_status("niqe")["verified"] is True


def test_unwritable_weights_dir(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    monkeypatch.setenv(W.ENV_VAR, str(blocker / "weights"))
    with pytest.raises(OutputError, match=W.ENV_VAR) as info:
        W.import_weights("niqe", fake_npz(tmp_path / "p.npz"))
    assert "\n" not in str(info.value)


def test_sidecar_is_json_with_versions(wdir, tmp_path):
    W.import_weights("niqe", fake_npz(tmp_path / "p.npz"))
    side = json.loads((wdir / "niqe_modelparameters.mat.json").read_text())
    assert set(side) >= {"name", "file", "sha256", "source_file", "source_sha256", "imported_at",
                         "converter", "converter_version"}
    assert side["file"] == "niqe_modelparameters.mat" and side["converter"].startswith("bench.weights:")
