"""Sliding-window blur map of Galetto & Deng 2022 (METHODS.md §5.3): pure functions, no weights.

Conventions
-----------
* **Grid.** Window top-left corners ``(y, x)`` are ``0, s, 2s, ...`` along each axis, every
  position *inside* the image (``y < H``, ``x < W``), as the authors' ``get_blurmap.m`` loops
  ``1:step:H``.  A 1000x1000 image at stride 16 gives 63 x 63 = 3,969 windows.  With
  ``trim=True`` the grid stops at the first position whose window reaches the image end (the
  smallest grid of this step that still covers every pixel: 62 x 62 there).
* **Border windows** are truncated at the image edge and then padded at the end ("post") to
  ``size x size`` by symmetric reflection *of the truncated window itself*: MATLAB
  ``padarray(p, [32-u 0], 'symmetric', 'post')`` then the same along columns, which is
  ``numpy.pad(p, ((0, 32-u), (0, 32-v)), mode="symmetric")`` -- the edge sample is repeated
  (``a b c | c b a a b c ...``), and pads longer than the window repeat the mirror periodically
  (period ``2u``) in both libraries.  Images smaller than one window (``H < size`` or
  ``W < size``) are thus a single truncated window padded the same way.
* **Map.** Each window's predicted class is added to the image pixels it covers (the padded part
  covers none) and the map is the mean over covering windows: ``float32 (H, W)`` in the class
  units (Gaussian sigma 0..19 px for Galetto's 20 classes).
* **Input scale.** Gray images as ``uint8`` (divided by 255) or float in ``[0, 1]``; windows are
  ``float32 (N, 1, size, size)`` in ``[0, 1]``, as the authors' code passes ``double/255``.

Code-only extras (off by default, METHODS.md ambiguity 18)
----------------------------------------------------------
``presmooth=True``: 3x3 Gaussian, sigma 1 (MATLAB ``fspecial('gaussian', [3 3], 1)``, normalised
to sum 1), boundary ``'symmetric'`` (= ``scipy.ndimage`` mode ``"reflect"``), applied to the gray
image before windowing.  The authors filter the uint8 RGB image and round to uint8 before
``rgb2gray``; we filter the float gray image (the filter is linear, so this differs only by that
rounding).  ``s0=1``: ``class -> max(class - s0, 0)`` before accumulation (the code's ``s0``).
The code's final min-max rescale to [0, 1] is left to the caller.
"""
from __future__ import annotations

from typing import Any

import numpy as np

WINDOW = 32
STRIDE = 16


def _axis_positions(n: int, size: int, stride: int, trim: bool) -> np.ndarray:
    pos = np.arange(0, n, stride, dtype=np.int64)
    if trim:
        reach = np.nonzero(pos + size >= n)[0]
        pos = pos[: reach[0] + 1]
    return pos


def window_positions(h: int, w: int, *, size: int = WINDOW, stride: int = STRIDE,
                     trim: bool = False) -> np.ndarray:
    """Top-left corners ``(y, x)`` of the sliding windows, ``int64 (N, 2)``, row-major order.

    Parameters
    ----------
    h, w : int
        Image height and width in pixels (any size >= 1; smaller than ``size`` gives one window).
    size : int
        Window side in pixels (Galetto: 32).
    stride : int
        Step between window corners in pixels (paper default 16; code demo 8).
    trim : bool
        ``False`` (default, the authors' code): every grid position inside the image.
        ``True``: stop each axis at the first window that reaches the image end.
    """
    h, w, size, stride = int(h), int(w), int(size), int(stride)
    if h < 1 or w < 1:
        raise ValueError(f"image size must be at least 1x1, got {h}x{w}")
    if size < 1 or stride < 1:
        raise ValueError(f"size and stride must be >= 1, got size={size}, stride={stride}")
    if stride > size:
        raise ValueError(f"stride {stride} > window size {size} would leave pixels uncovered")
    ys = _axis_positions(h, size, stride, trim)
    xs = _axis_positions(w, size, stride, trim)
    yy, xx = np.meshgrid(ys, xs, indexing="ij")
    return np.stack([yy.ravel(), xx.ravel()], axis=1)


def _window_indices(start: np.ndarray, n: int, size: int) -> np.ndarray:
    """Source indices ``(N, size)`` of a truncated window ``[start, min(start+size, n))``
    padded at the end with MATLAB/numpy 'symmetric' reflection (period ``2u``, ``u`` = width)."""
    start = np.asarray(start, dtype=np.int64)[:, None]
    u = np.minimum(start + size, n) - start                 # real samples per window, >= 1
    k = np.arange(size, dtype=np.int64)[None, :]
    m = k % (2 * u)
    off = np.where(m < u, m, 2 * u - 1 - m)
    return start + off


def _as_unit_gray(image: Any) -> np.ndarray:
    img = np.asarray(image)
    if img.ndim != 2:
        raise ValueError(f"expected a 2-D gray image, got shape {img.shape}")
    if img.dtype == np.uint8:
        return img.astype(np.float32) / np.float32(255.0)
    if not np.issubdtype(img.dtype, np.floating):
        raise ValueError(f"expected uint8 or float in [0, 1], got dtype {img.dtype}")
    return img.astype(np.float32, copy=False)


def presmooth_gray(gray: np.ndarray) -> np.ndarray:
    """The code-only pre-smoothing: 3x3 Gaussian sigma 1, 'symmetric' boundary, float32 out."""
    from scipy import ndimage

    t = np.exp(-0.5 * np.arange(-1, 2, dtype=np.float64) ** 2)
    t /= t.sum()                    # separable: outer(t, t) == fspecial('gaussian', [3 3], 1)
    out = ndimage.correlate1d(np.asarray(gray, dtype=np.float64), t, axis=0, mode="reflect")
    out = ndimage.correlate1d(out, t, axis=1, mode="reflect")
    return out.astype(np.float32)


def extract_windows(image: Any, positions: np.ndarray, *, size: int = WINDOW,
                    presmooth: bool = False) -> np.ndarray:
    """Gather the windows at ``positions`` into ``float32 (N, 1, size, size)`` in [0, 1].

    Border windows are truncated and padded as in the module docstring.  Vectorised: one fancy
    index gather for all windows (memory ``N * size**2 * 4`` bytes: 16 MB for 1 MP at stride 16).

    Parameters
    ----------
    image : (H, W) uint8 or float array
        Gray image; uint8 is divided by 255, float is taken as already in [0, 1].
    positions : (N, 2) int array
        Top-left corners ``(y, x)``, e.g. from :func:`window_positions`; each inside the image.
    size : int
        Window side in pixels.
    presmooth : bool
        Apply the code-only 3x3 Gaussian (sigma 1) to the image first.
    """
    img = _as_unit_gray(image)
    if presmooth:
        img = presmooth_gray(img)
    h, w = img.shape
    pos = np.asarray(positions, dtype=np.int64).reshape(-1, 2)
    if pos.size and (pos.min() < 0 or pos[:, 0].max() >= h or pos[:, 1].max() >= w):
        raise ValueError(f"window positions must lie inside the {h}x{w} image")
    iy = _window_indices(pos[:, 0], h, size)
    ix = _window_indices(pos[:, 1], w, size)
    win = img[iy[:, :, None], ix[:, None, :]]
    return np.ascontiguousarray(win[:, None], dtype=np.float32)


def accumulate_map(classes: np.ndarray, positions: np.ndarray, shape: tuple[int, int], *,
                   size: int = WINDOW, s0: int = 0) -> np.ndarray:
    """Mean of the window values over the windows covering each pixel, ``float32 (H, W)``.

    Each window ``i`` adds ``max(classes[i] - s0, 0)`` to the pixels
    ``[y, min(y+size, H)) x [x, min(x+size, W))`` and 1 to their count.  Computed exactly with a
    2-D difference array (``np.add.at`` at the four corners) and cumulative sums, in int64 for
    integer classes (float64 otherwise); one float64 division, then float32.
    Pixels no window covers are NaN (never with :func:`window_positions`).

    Parameters
    ----------
    classes : (N,) array
        Predicted class (or any value) per window, e.g. from :func:`predict_windows`.
    positions : (N, 2) int array
        Top-left corners ``(y, x)`` of the windows.
    shape : (H, W)
        Image size in pixels.
    size : int
        Window side in pixels.
    s0 : int
        Code-only class offset: ``max(class - s0, 0)`` (authors' code: 1; paper: 0).
    """
    h, w = (int(v) for v in shape)
    pos = np.asarray(positions, dtype=np.int64).reshape(-1, 2)
    val = np.asarray(classes).reshape(-1)
    if val.shape[0] != pos.shape[0]:
        raise ValueError(f"{val.shape[0]} classes for {pos.shape[0]} windows")
    # integer classes: int64 sums (exact, the usual case); anything else: float64
    acc_dtype = np.int64 if np.issubdtype(val.dtype, np.integer) else np.float64
    val = val.astype(acc_dtype)
    if s0:
        val = np.maximum(val - s0, 0)
    y0, x0 = pos[:, 0], pos[:, 1]
    y1, x1 = np.minimum(y0 + size, h), np.minimum(x0 + size, w)
    acc = np.zeros((2, h + 1, w + 1), dtype=acc_dtype)
    ones = np.ones_like(val)
    for ch, v in ((0, val), (1, ones)):
        np.add.at(acc[ch], (y0, x0), v)
        np.add.at(acc[ch], (y0, x1), -v)
        np.add.at(acc[ch], (y1, x0), -v)
        np.add.at(acc[ch], (y1, x1), v)
    acc = acc.cumsum(axis=1).cumsum(axis=2)[:, :h, :w]
    with np.errstate(invalid="ignore", divide="ignore"):
        out = acc[0] / acc[1].astype(np.float64)
    out[acc[1] == 0] = np.nan
    return out.astype(np.float32)


def predict_windows(model: Any, windows: np.ndarray, *, batch: int | None = None,
                    device: str = "cpu", channels_last: bool = False,
                    fixed_batch: bool = False, dtype: Any = None) -> np.ndarray:
    """Argmax class per window, ``int64 (N,)``, under ``torch.inference_mode``.

    ``model`` is put in eval mode by the caller (e.g. :func:`methods.nets.mobilenetv2.fold_batchnorm`
    returns one); it is only moved to ``device``.  Windows are sent in batches of ``batch``
    (default: 256 on CPU, where activations of a few hundred windows stay in cache and larger
    batches are measurably slower -- see ``benchmarks/bench_galetto_map.py`` -- and 4096 on GPU).
    ``channels_last`` converts each batch to NHWC memory format (faster on CPU for MobileNetV2;
    use it with a model converted by ``model.to(memory_format=torch.channels_last)``).
    ``fixed_batch`` zero-pads the last batch to ``batch`` windows (outputs of the padding are
    dropped), so a static-shape compiled model sees one input shape only.  ``dtype`` (a torch
    dtype, default float32) is the input dtype, e.g. ``torch.bfloat16`` for a model converted
    with ``model.to(torch.bfloat16)`` (faster on CPUs with AVX512-BF16, but may flip argmaxes).
    """
    import torch

    win = np.asarray(windows, dtype=np.float32)
    if win.ndim != 4 or win.shape[1] != 1:
        raise ValueError(f"expected windows of shape (N, 1, S, S), got {win.shape}")
    if batch is None:
        batch = 4096 if str(device).startswith("cuda") else 256
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    out = np.empty(win.shape[0], dtype=np.int64)
    dev = torch.device(device)
    model = model.to(dev)
    with torch.inference_mode():
        for i in range(0, win.shape[0], batch):
            chunk = win[i:i + batch]
            n = chunk.shape[0]
            if fixed_batch and n < batch:
                chunk = np.concatenate([chunk, np.zeros((batch - n,) + chunk.shape[1:], chunk.dtype)])
            x = torch.from_numpy(chunk).to(dev)
            if dtype is not None:
                x = x.to(dtype)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            out[i:i + n] = model(x)[:n].argmax(dim=1).cpu().numpy()
    return out


def blur_map_windows(model: Any, image: Any, *, size: int = WINDOW, stride: int = STRIDE,
                     trim: bool = False, presmooth: bool = False, s0: int = 0,
                     batch: int | None = None, device: str = "cpu",
                     channels_last: bool = False, chunk: int = 16384) -> np.ndarray:
    """Unrefined Galetto map of a gray image: windows -> classes -> mean per pixel, ``float32 (H, W)``.

    Options as in :func:`window_positions`, :func:`extract_windows`, :func:`predict_windows` and
    :func:`accumulate_map`.  Windows are extracted ``chunk`` at a time (64 MB of float32 windows
    at the default 16384), so memory does not grow with the image beyond the map itself.
    """
    img = _as_unit_gray(image)
    if presmooth:
        img = presmooth_gray(img)
    pos = window_positions(*img.shape, size=size, stride=stride, trim=trim)
    cls = np.empty(len(pos), dtype=np.int64)
    for i in range(0, len(pos), chunk):
        win = extract_windows(img, pos[i:i + chunk], size=size)
        cls[i:i + chunk] = predict_windows(model, win, batch=batch, device=device,
                                           channels_last=channels_last)
    return accumulate_map(cls, pos, img.shape, size=size, s0=s0)
