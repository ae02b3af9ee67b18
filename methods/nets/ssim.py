"""SSIM in torch with ``tf.image.ssim`` semantics, and the SVBR-Net training loss ``1 - SSIM``.

Conventions (``METHODS.md`` §7.3: the loss of Karaali & Jung 2022, eq. 2)
-----------------------------------------------------------------------------
* Window: 11x11 Gaussian, sigma 1.5, normalised to sum 1 (TensorFlow's ``_fspecial_gauss``; the
  same weights as :func:`scipy.ndimage.gaussian_filter` with ``truncate=3.5``), applied as two
  separable 1-D passes.
* ``K1 = 0.01``, ``K2 = 0.03``, ``C1 = (K1 L)^2``, ``C2 = (K2 L)^2`` with ``L = max_val = 1``;
  population (co)variances (no ``N / (N - 1)`` correction).
* **Valid filtering**: no padding; the SSIM map of an ``H x W`` image is ``(H - 10) x (W - 10)``
  (TensorFlow ``padding="VALID"``).  Images smaller than the window are an error (TensorFlow
  asserts the same).
* Reduction: ``tf.image.ssim`` averages the map over pixels, then over channels, per image; the
  loss averages over the batch.  All images of a batch have one size, so this is the plain mean
  over batch, channels and pixels.

Relation to the benchmark's metric: :func:`bench.metrics.fidelity.ssim` (= ``skimage``'s
``structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
data_range=1)``) filters with reflect padding and then drops the 5-pixel border before averaging;
every value it keeps is computed from pixels inside the image, so its mean equals the valid-window
mean here (to float rounding): ``ssim_loss(p, t) == 1 - fidelity.ssim(t, p)`` on ``(H, W, 3)``
arrays.  (MATLAB ``ssim`` pads and keeps the border, so it differs slightly.)

Everything is computed in the dtype of the inputs (float32 for training; float64 to compare with
the references).
"""
from __future__ import annotations

import torch
from torch.nn import functional as F

__all__ = ["K1", "K2", "SIGMA", "WINDOW", "gaussian_window", "ssim", "ssim_loss", "ssim_map"]

WINDOW = 11
SIGMA = 1.5
K1 = 0.01
K2 = 0.03


def gaussian_window(*, size: int = WINDOW, sigma: float = SIGMA, dtype=torch.float32, device=None) -> torch.Tensor:
    """1-D normalised Gaussian ``(size,)`` centred on ``(size - 1) / 2`` (TensorFlow's window; its
    2-D window is the outer product of this with itself)."""
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2.0
    g = torch.exp(-0.5 * (x / sigma) ** 2)
    return (g / g.sum()).to(dtype=dtype, device=device)


def ssim_map(pred: torch.Tensor, target: torch.Tensor, *, max_val: float = 1.0) -> torch.Tensor:
    """Per-pixel SSIM ``(N, C, H - 10, W - 10)`` of two ``(N, C, H, W)`` tensors (valid windows).

    ``pred`` and ``target`` are float tensors of one shape and dtype, values in ``[0, max_val]``;
    ``ValueError`` for other shapes or for images smaller than 11x11.
    """
    if pred.shape != target.shape:
        raise ValueError(f"pred has shape {tuple(pred.shape)} but target has shape {tuple(target.shape)}")
    if pred.ndim != 4:
        raise ValueError(f"expected (N, C, H, W) tensors, got shape {tuple(pred.shape)}")
    _, c, h, w = pred.shape
    if h < WINDOW or w < WINDOW:
        raise ValueError(f"images of {w}x{h} are smaller than the {WINDOW}x{WINDOW} SSIM window")
    target = target.to(pred.dtype)
    g = gaussian_window(dtype=pred.dtype, device=pred.device)
    # the five local moments in one grouped, separable, valid convolution
    stack = torch.cat([pred, target, pred * pred, target * target, pred * target], dim=1)
    k = 5 * c
    stack = F.conv2d(stack, g.view(1, 1, 1, WINDOW).expand(k, 1, 1, WINDOW), groups=k)
    stack = F.conv2d(stack, g.view(1, 1, WINDOW, 1).expand(k, 1, WINDOW, 1), groups=k)
    mx, my, mxx, myy, mxy = stack.split(c, dim=1)
    c1, c2 = (K1 * max_val) ** 2, (K2 * max_val) ** 2
    mx2, my2, mxmy = mx * mx, my * my, mx * my
    num = (2 * mxmy + c1) * (2 * (mxy - mxmy) + c2)
    den = (mx2 + my2 + c1) * ((mxx - mx2) + (myy - my2) + c2)
    return num / den


def ssim(pred: torch.Tensor, target: torch.Tensor, *, max_val: float = 1.0) -> torch.Tensor:
    """Per-image SSIM ``(N,)`` as ``tf.image.ssim``: the valid-window map averaged over pixels and
    channels (see the module conventions)."""
    return ssim_map(pred, target, max_val=max_val).mean(dim=(1, 2, 3))


def ssim_loss(pred: torch.Tensor, target: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """SVBR-Net's loss (eq. 2): ``1 - SSIM`` per image (:func:`ssim`), averaged over the batch
    (``reduction="mean"``, a 0-d tensor: ``1 - mean SSIM`` over batch, channels and pixels) or summed
    (``"sum"``, what the training loop's evaluation accumulates).

    ``pred`` (the network's output) and ``target`` (the sharp image) are ``(N, 3, H, W)`` in
    ``[0, 1]`` (``max_val = 1``), ``H, W >= 11``.  0 for identical images; differentiable in ``pred``.
    """
    per_image = 1.0 - ssim(pred, target, max_val=1.0)
    return per_image.sum() if reduction == "sum" else per_image.mean()
