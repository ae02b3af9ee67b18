"""The one inference path shared by every torch method: device, threads, weights, inference mode.

Nothing here imports torch at module import time (``import methods`` stays light); each function
imports it when called.

Conventions
-----------
* **Device**: ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` (``bench run --device``).  ``"cuda"`` on a
  machine without a usable CUDA device is a one-line :class:`~datagen.errors.UserError`, never a
  silent fall-back to the CPU.
* **Threads**: torch's intra-op threads are matched to the cores this process may use
  (:func:`available_cores`): inside a Dask worker, the worker's ``nthreads`` (the cores the
  scheduler gave it: several workers on one machine then do not each take every core); elsewhere
  ``len(os.sched_getaffinity(0))`` (the CPUs this process is allowed on, which respects
  ``taskset`` and cgroup cpusets, unlike ``os.cpu_count()``).  :func:`configure_threads` only
  lowers or raises the count when it differs (``torch.set_num_threads`` is process-wide).
* **Determinism**: inference runs in eval mode under ``torch.inference_mode()``; on CUDA cuDNN is
  put in deterministic mode with autotuning off (:func:`inference`).  On CPU the kernels used by
  the methods here are deterministic for a fixed thread count, so the same input, weights, device
  and thread count give the same bytes.
* **Weights**: a ``state_dict`` saved with ``torch.save`` and read with ``torch.load(path,
  map_location=..., weights_only=True)`` -- only tensors and plain containers are unpickled, never
  arbitrary objects, so a weights file cannot run code.  A checkpoint dict holding the state dict
  under ``"state_dict"`` or ``"model"`` is accepted too.  A missing, unreadable, corrupt or
  non-state-dict file, or one whose keys or shapes do not match the network, is a one-line
  :class:`~datagen.errors.UserError` naming the file.
* **Shipped weights** live in the package folder ``methods/weights/`` and are located with
  :mod:`importlib.resources` (:func:`shipped_weights`).
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from datagen.errors import UserError

__all__ = ["available_cores", "configure_threads", "import_torch", "inference", "load_state_dict",
           "prepare_model", "resolve_device", "shipped_weights", "unwrap_state_dict"]

#: Package folder of the shipped weights (``methods/weights/``).
WEIGHTS_PACKAGE = "methods"
WEIGHTS_DIR = "weights"


def import_torch() -> Any:
    """``import torch``, or a one-line :class:`UserError` when it is not installed."""
    try:
        import torch
    except ImportError as err:  # pragma: no cover - torch is a project dependency
        raise UserError(f"this method needs PyTorch, which cannot be imported ({err}); install torch") from None
    return torch


def resolve_device(device: str | None = "cpu") -> Any:
    """``torch.device`` for ``"cpu"``, ``"cuda"`` or ``"cuda:N"``; one-line :class:`UserError` for
    anything else or when the CUDA device is not available."""
    torch = import_torch()
    name = "cpu" if device is None else str(device).strip().lower()
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        try:
            dev = torch.device(name)
        except RuntimeError:
            raise UserError(f"device {device!r} is not valid: use cpu, cuda or cuda:N") from None
        if not torch.cuda.is_available():
            raise UserError(f"device {device!r} requested but CUDA is not available on this machine "
                            f"(torch {torch.__version__}); use --device cpu")
        index = 0 if dev.index is None else dev.index
        if index >= torch.cuda.device_count():
            raise UserError(f"device {device!r} requested but this machine has "
                            f"{torch.cuda.device_count()} CUDA device(s)")
        return dev
    raise UserError(f"device {device!r} is not valid: use cpu, cuda or cuda:N")


def _affinity_cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)  # pragma: no cover - non-Linux


def _dask_worker_threads() -> int | None:
    """``nthreads`` of the Dask worker running the current task, or ``None`` outside one."""
    try:
        from distributed import get_worker
    except ImportError:  # pragma: no cover
        return None
    try:
        worker = get_worker()
    except ValueError:          # not inside a worker task
        return None
    n = getattr(worker, "nthreads", None)
    if n is None:  # pragma: no cover - older/newer distributed layouts
        n = getattr(getattr(worker, "state", None), "nthreads", None)
    return int(n) if n else None


def available_cores() -> int:
    """Cores this process may use for one inference: the Dask worker's ``nthreads`` inside a worker
    (capped at the CPUs the process may run on), else ``len(os.sched_getaffinity(0))``; >= 1."""
    cores = _affinity_cores()
    worker = _dask_worker_threads()
    return max(1, min(worker, cores)) if worker else cores


def configure_threads(n: int | None = None) -> int:
    """Set torch's intra-op threads to ``n`` (default :func:`available_cores`) when it differs;
    returns the count in effect.  Never more threads than cores: no oversubscription."""
    torch = import_torch()
    n = available_cores() if n is None else max(1, min(int(n), _affinity_cores()))
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


@contextlib.contextmanager
def inference(device: Any = None) -> Iterator[None]:
    """``torch.inference_mode()``, plus deterministic cuDNN (no autotuning) on a CUDA device;
    the previous cuDNN flags are restored on exit."""
    torch = import_torch()
    cuda = device is not None and getattr(device, "type", str(device)).startswith("cuda")
    if cuda:
        old = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        with torch.inference_mode():
            yield
    finally:
        if cuda:
            torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = old


def shipped_weights(filename: str, *, method: str) -> Path:
    """Path of the weights file ``methods/weights/<filename>`` shipped inside the package;
    one-line :class:`UserError` ``"no shipped weights ..."`` when it is not there."""
    from importlib import resources

    try:
        res = resources.files(WEIGHTS_PACKAGE) / WEIGHTS_DIR / filename
        path = Path(str(res))
        found = res.is_file()
    except (ModuleNotFoundError, OSError):  # pragma: no cover
        found, path = False, Path(WEIGHTS_PACKAGE) / WEIGHTS_DIR / filename
    if not found:
        raise UserError(f"no shipped weights for {method} (expected {WEIGHTS_PACKAGE}/{WEIGHTS_DIR}/{filename} "
                        f"inside the installed package); pass your own with --weights PATH "
                        f"(e.g. trained with `bench train {method}`)")
    return path


def _read_state_dict(path: Path, torch: Any) -> dict:
    if not path.exists():
        raise UserError(f"weights file {path} not found")
    if not path.is_file():
        raise UserError(f"weights path {path} is not a file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except PermissionError:
        raise UserError(f"weights file {path} cannot be read (permission denied)") from None
    except Exception as err:  # noqa: BLE001 - corrupt zip, truncated file, forbidden pickle global, ...
        first = " ".join(str(err).split())[:160] or type(err).__name__
        raise UserError(f"weights file {path} is not a torch state dict readable with weights_only=True "
                        f"({type(err).__name__}: {first})") from None
    state = unwrap_state_dict(obj, torch)
    if state is None:
        raise UserError(f"weights file {path} does not hold a state dict (a mapping of parameter names "
                        f"to tensors); got {type(obj).__name__}")
    return state


def unwrap_state_dict(obj: Any, torch: Any) -> dict | None:
    """The ``{name: tensor}`` state dict in what ``torch.load`` returned: a plain state dict, or a
    checkpoint ``{"state_dict": sd}`` / ``{"model": sd}``; ``None`` when it holds anything else
    (an empty dict, non-string keys, values that are not tensors)."""
    if isinstance(obj, dict):
        for key in ("state_dict", "model"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if isinstance(obj, dict) and obj and all(isinstance(k, str) and torch.is_tensor(v) for k, v in obj.items()):
        return obj
    return None


def load_state_dict(model: Any, path: str | os.PathLike, *, device: Any = "cpu") -> Any:
    """Load the weights file ``path`` into ``model`` (strictly: same keys, same shapes), move it to
    ``device`` and return it in eval mode.  One-line :class:`UserError` for a missing, corrupt or
    mismatching file; the tensors are read with ``weights_only=True`` (no code can run)."""
    torch = import_torch()
    path = Path(path)
    state = _read_state_dict(path, torch)
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [k for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape)]
    if missing or unexpected or shapes:
        parts = []
        for what, keys in (("missing", missing), ("unexpected", unexpected), ("wrong-shape", shapes)):
            if keys:
                parts.append(f"{len(keys)} {what} key(s), e.g. {keys[0]!r}")
        raise UserError(f"weights file {path} does not match the {type(model).__name__} architecture: "
                        + "; ".join(parts))
    model.load_state_dict(state, strict=True)
    return model.to(device).eval()


def prepare_model(model: Any, *, device: Any = "cpu", channels_last: bool = False) -> Any:
    """``model`` in eval mode on ``device``, in channels-last memory format when asked; gradients off."""
    torch = import_torch()
    model = model.eval().to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    for p in model.parameters():
        p.requires_grad_(False)
    return model
