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
from datagen.safe_read import UnreadableFile, read_regular_file


@pytest.fixture
def wdir(tmp_path, monkeypatch, no_shipped_metric_files) -> Path:
    """An empty weights folder in an installation without shipped metric files (the import path)."""
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
        assert st["state"] == "missing"
        assert st["path"] == str(wdir / spec.filename)
        assert {"name", "path", "present", "sha256", "source_sha256", "imported_at", "used_by", "description"} <= set(st)
    rows = W.list_weights()           # the catalog: metric weights and those methods declare
    assert [r["name"] for r in rows] == sorted(W.catalog()) and set(W.WEIGHTS) <= {r["name"] for r in rows}
    assert {r["name"] for r in rows if r["kind"] == "metric"} == set(W.WEIGHTS)
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
    coef, sv = torch.load(path, weights_only=True)            # loads as plain tensors (no code)
    assert coef.shape == (7,) and sv.shape == (7, 36) and coef.dtype == torch.float64
    first = src.read_text().splitlines()[8].split()
    assert coef[0].item() == pytest.approx(float(first[0]))
    assert sv[0, 35].item() == pytest.approx(float(first[36].split(":")[1]))

    side = json.loads((wdir / "brisque_svm_weights.pth.json").read_text())
    assert side["sha256"] == sha(path) and side["source_sha256"] == sha(src)
    assert side["source_file"] == "allmodel" and side["converter_version"] == 1 and side["imported_at"]
    st = W.weight_status("brisque")
    assert st["present"] and st["verified"] and st["sha256"] == sha(path) and st["source_sha256"] == sha(src)
    assert st["state"] == "verified"
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


# ------------------------------------------------------------------------------------ only regular, bounded files

def _limited_memory() -> None:          # a /dev/zero reader must die of MemoryError, not take the machine
    import resource
    resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))


@pytest.mark.parametrize("kind", ["dev-zero", "fifo"])
def test_import_of_a_device_or_fifo_fails_in_one_line(wdir, tmp_path, kind):
    """`bench weights import NAME /dev/zero` or a FIFO: exit 2 and one line, at once (no hang, no memory blow-up)."""
    import subprocess

    from tests.conftest import BIN

    if kind == "fifo":
        src = tmp_path / "model.fifo"
        os.mkfifo(src)                  # nobody ever writes to it: a blocking open would wait forever
    else:
        src = Path("/dev/zero")
    r = subprocess.run([str(BIN / "bench"), "weights", "import", "brisque", str(src)], check=False, timeout=60,
                       capture_output=True, text=True, preexec_fn=_limited_memory,
                       env=dict(os.environ, **{W.ENV_VAR: str(wdir)}))
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr, r.stderr
    assert "is not a regular file" in r.stderr and str(src) in r.stderr, r.stderr
    assert leftovers(wdir) == []


def test_import_refuses_a_file_over_the_size_cap(wdir, tmp_path):
    big = tmp_path / "huge.txt"
    with open(big, "wb") as fh:         # sparse: costs no disk
        fh.truncate(W.MAX_WEIGHT_BYTES + 1)
    with pytest.raises(W.WeightsSourceError, match=f"larger than {W.MAX_WEIGHT_BYTES} bytes") as info:
        W.import_weights("brisque", big)
    assert "\n" not in str(info.value) and leftovers(wdir) == []
    assert W.MAX_WEIGHT_BYTES >= 4 * 2**20          # generous for the real files (all under 1 MB)


def test_read_regular_file_is_bounded(tmp_path):
    f = tmp_path / "f.bin"
    f.write_bytes(b"x" * 3000)
    assert read_regular_file(f, limit=3000) == b"x" * 3000
    with pytest.raises(UnreadableFile, match="larger than 2999 bytes"):
        read_regular_file(f, limit=2999)
    with pytest.raises(UnreadableFile, match="is a folder"):
        read_regular_file(tmp_path, limit=10)
    with pytest.raises(UnreadableFile, match="not found"):
        read_regular_file(tmp_path / "nope", limit=10)


# ------------------------------------------------------------------------------------ only verified files are used

def test_only_files_matching_their_sidecar_are_loaded(wdir, tmp_path):
    src = fake_npz(tmp_path / "p.npz")
    with pytest.raises(W.WeightsMissing, match="weights missing: .*run: bench weights import niqe FILE"):
        W.load_weights("niqe")
    path = W.import_weights("niqe", src)
    arrays = W.load_weights("niqe")
    with np.load(src) as npz:
        np.testing.assert_array_equal(arrays["mu"], npz["mu_pris_param"].ravel())
        np.testing.assert_array_equal(arrays["cov"], npz["cov_pris_param"])
    assert arrays["mu"].dtype == np.float64 and arrays["mu"].shape == (36,)
    assert W.verify_weights("niqe") == path

    side = wdir / "niqe_modelparameters.mat.json"
    side_text = side.read_text()
    side.unlink()                                              # a file placed by hand: no sidecar
    for call in (W.load_weights, W.verify_weights):
        with pytest.raises(W.WeightsUnusable, match="not verified: .*has no sidecar niqe_modelparameters.mat.json"
                                                    ".*re-import it: bench weights import niqe FILE") as info:
            call("niqe")
        assert "\n" not in str(info.value) and not isinstance(info.value, W.WeightsMissing)
    side.write_text("{not json")
    with pytest.raises(W.WeightsUnusable, match="unreadable sidecar"):
        W.load_weights("niqe")

    side.write_text(side_text)
    data = bytearray(path.read_bytes())
    data[-1] ^= 1                                               # changed after import
    path.write_bytes(bytes(data))
    with pytest.raises(W.WeightsUnusable, match="does not match the sha256 in its sidecar"):
        W.load_weights("niqe")
    assert W.weight_status("niqe")["verified"] is False and W.weight_status("niqe")["state"] == "unverified"


def test_a_fifo_planted_as_the_stored_file_does_not_hang(wdir):
    import threading

    wdir.mkdir()
    os.mkfifo(wdir / "niqe_modelparameters.mat")
    outcome: list = []

    def check():
        try:
            W.load_weights("niqe")
        except W.WeightsUnusable as err:
            outcome.append(str(err))

    t = threading.Thread(target=check, daemon=True)
    t.start()
    t.join(20)
    assert outcome and "is not a regular file" in outcome[0], outcome
    assert W.weight_status("niqe")["present"] is False


def test_stored_brisque_is_loaded_without_unpickling_code(wdir, tmp_path):
    """A .pth whose sidecar was forged to match still never runs code: it is read with weights_only=True."""
    import torch

    wdir.mkdir()
    marker = tmp_path / "code-ran"
    path = wdir / "brisque_svm_weights.pth"
    torch.save((RunsCode(marker), torch.zeros(3, 36)), path)
    forge_sidecar(path)
    assert W.verify_weights("brisque") == path                 # the digest matches: only loading can refuse it
    with pytest.raises(W.WeightsUnusable, match="weights unusable: .*re-import it: bench weights import brisque"):
        W.load_weights("brisque")
    assert not marker.exists()


class RunsCode:
    """Unpickling this creates the folder ``marker``: a harmless stand-in for a planted pickle's payload."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def forge_sidecar(path: Path) -> None:
    """What someone who can write the weights folder can also do: a sidecar whose sha256 matches."""
    (path.parent / (path.name + ".json")).write_text(json.dumps({"sha256": sha(path)}))


# ------------------------------------------------------------------------------------ audit

def _code_tokens(path: Path) -> list[str]:
    """The code tokens of a Python file: no comments, no strings (so docstrings may name what they avoid)."""
    import tokenize

    skip = {tokenize.COMMENT, tokenize.STRING, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT,
            tokenize.ENCODING, tokenize.ENDMARKER}
    skip |= {getattr(tokenize, n) for n in ("FSTRING_START", "FSTRING_MIDDLE", "FSTRING_END") if hasattr(tokenize, n)}
    with open(path, "rb") as fh:
        return [t.string for t in tokenize.tokenize(fh.readline) if t.type not in skip]


#: token sequences of calls that can run code named by a file's (or a string's) content
_CODE_RUNNERS = [
    ("pickle", ".", "load"), ("pickle", ".", "loads"), ("pickle", ".", "Unpickler"),
    ("weights_only", "=", "False"), ("allow_pickle", "=", "True"), ("shell", "=", "True"),
    ("yaml", ".", "load"), ("yaml", ".", "unsafe_load"), ("yaml", ".", "full_load"),
    ("os", ".", "system"), ("marshal", ".", "load"), ("marshal", ".", "loads"),
    ("cloudpickle",), ("dill",), ("joblib",), ("eval", "("), ("exec", "("),
]


def test_no_loader_in_the_package_runs_code_from_files():
    """The audit of issue 8, kept: package code never unpickles files, evals strings or runs a shell."""
    from tests.conftest import REPO

    found = []
    for folder in ("datagen", "methods", "bench", "benchmarks", "scripts"):
        for path in sorted((REPO / folder).rglob("*.py")):
            toks = _code_tokens(path)
            for pattern in _CODE_RUNNERS:
                n = len(pattern)
                found += [f"{path.relative_to(REPO)}: {' '.join(pattern)}" for i in range(len(toks) - n + 1)
                          if tuple(toks[i:i + n]) == pattern
                          and not (i and toks[i - 1] == ".")]   # a method such as module.eval(), not the builtin
    assert not found, found


# ------------------------------------------------------------------------------------ shipped metric files

@pytest.fixture
def shipped_only(tmp_path, monkeypatch) -> Path:
    """An empty weights folder: the package's own NIQE / BRISQUE files are used."""
    folder = tmp_path / "weights"
    monkeypatch.setenv(W.ENV_VAR, str(folder))
    return folder


@pytest.mark.parametrize("name", ["niqe", "brisque"])
def test_shipped_metric_files_are_used_without_import(shipped_only, name):
    spec = W.WEIGHTS[name]
    shipped = W.shipped_file(name)
    assert shipped is not None and shipped.parent.name == W.METRIC_MODELS_DIR and shipped.name == spec.shipped
    assert sha(shipped) == spec.shipped_sha256
    assert (shipped.parent / "README.md").read_text().count(spec.shipped_sha256) == 1   # source and terms noted
    st = W.weight_status(name)
    assert (st["state"], st["origin"], st["path"], st["sha256"]) == ("verified", "shipped", str(shipped), sha(shipped))
    got = W.resolve_weights(name)
    assert (got.origin, got.path, got.sha256) == ("shipped", shipped.absolute(), spec.shipped_sha256)
    arrays = W.load_weights(name)
    want = {"niqe": {"mu": (36,), "cov": (36, 36)}, "brisque": {"sv_coef": (774,), "sv": (774, 36)}}[name]
    assert {k: v.shape for k, v in arrays.items()} == want
    assert W.verify_weights(name) == shipped and not shipped_only.exists()


def test_an_imported_file_takes_precedence_over_the_shipped_one(shipped_only, tmp_path):
    shipped_mu = W.load_weights("niqe")["mu"]
    W.import_weights("niqe", fake_npz(tmp_path / "mine.npz", seed=3))
    assert W.resolve_weights("niqe").origin == "imported" and W.weight_status("niqe")["origin"] == "imported"
    assert not np.array_equal(W.load_weights("niqe")["mu"], shipped_mu)


def test_a_damaged_shipped_file_is_refused_in_one_line(shipped_only, tmp_path, monkeypatch):
    bad = tmp_path / "niqe_pris_params.npz"
    bad.write_bytes(W.shipped_file("niqe").read_bytes()[:-1] + b"x")
    monkeypatch.setattr(W, "_shipped_metric_file", lambda spec: bad if spec.name == "niqe" else None)
    with pytest.raises(W.WeightsUnusable, match="does not match its pinned sha256.*reinstall") as info:
        W.load_weights("niqe")
    assert "\n" not in str(info.value)
    assert W.weight_status("niqe")["state"] == "unverified"


@pytest.mark.realdata
@pytest.mark.parametrize(("name", "parts"), [("niqe", ("iqa", "niqe", "niqe_pris_params.npz")),
                                             ("brisque", ("iqa", "brisque", "brisque_allmodel_live.txt"))])
def test_shipped_files_are_the_published_ones(name, parts):
    from tests.conftest import shared_data

    assert sha(W.shipped_file(name)) == sha(shared_data(*parts))
