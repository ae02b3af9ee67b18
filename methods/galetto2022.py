"""Galetto & Deng 2022: learned blur map (``galetto2022``) and the two map-driven enhancers
(``galetto2022_um``, ``galetto2022_sdof``).  ``METHODS.md`` §5.2-5.5.

F. J. Galetto, G. Deng, "Single image defocus map estimation through patch blurriness
classification and its applications", The Visual Computer, 2022.  Reimplemented from the paper
and the notes; no code copied.

Pipeline of ``galetto2022`` (``predict``)
-----------------------------------------
1. ``gray = to_gray(image)`` (BT.601 luma in ``[0, 1]``).
2. Sliding windows (32x32, step ``stride``, border windows symmetric-padded), each classified by
   the MobileNetV2 patch classifier (20 classes = Gaussian sigma 0..19 px of the training blur);
   each pixel gets the mean class of the windows covering it
   (:func:`methods.galetto_windows.blur_map_windows`; all windows batched, ``batch`` at a time).
3. With ``refine`` (default): iterated weighted guided filtering of the map guided by the
   WGIF-smoothed gray image (:func:`methods.guided.galetto_refine`, r 16, eps 0.005, 7 + 7
   iterations).  The result is clipped to ``[0, 19]`` (the filter can overshoot slightly at edges).

Output: ``float32 (H, W)``, Gaussian sigma in pixels (``0..19``), higher = more blurred; any image
size down to 1x1.  Weights: ``weights=PATH`` (``bench run --weights``) or, when ``None``, the
shipped ``methods/weights/galetto2022.pt``; read with ``weights_only=True``
(:mod:`methods.torch_inference`, the shared inference path: device, threads, determinism).

The enhancers compute that map with an internal :class:`Galetto2022` (same weights and device)
and apply :func:`methods.enhance_map.adaptive_unsharp_mask` (eqs. 8-11) or
:func:`methods.enhance_map.defocus_magnification` (eqs. 12-13).  To drive them with any other
sigma map (another method's, a ground truth), call ``enhance_with_map(image, blur_map_sigma)`` on
an instance: no network is loaded then.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field, model_validator

from .base import Method, Params, check_image, to_gray

__all__ = ["WEIGHTS_FILE", "Galetto2022", "Galetto2022SDoF", "Galetto2022UM"]

#: File name of the shipped weights under ``methods/weights/``.
WEIGHTS_FILE = "galetto2022.pt"
#: Top of the map: 20 classes, Gaussian sigma 0..19 px.
SIGMA_MAX = 19.0

_REFERENCE = ("F. J. Galetto, G. Deng, \"Single image defocus map estimation through patch blurriness "
              "classification and its applications\", The Visual Computer, 2022")
_WEIGHTS = {"galetto2022": "MobileNetV2 patch classifier (32x32 gray input, 20 classes = Gaussian sigma 0..19 px), "
                           "torch state_dict read with weights_only=True; shipped as methods/weights/galetto2022.pt"}


class _MapParams(Params):
    stride: int = Field(16, ge=1, le=32, description="step between 32x32 windows (px); paper default 16")
    refine: bool = Field(True, description="refine the window map with iterated WGIF guided by the WGIF-smoothed image")


class Galetto2022(Method):
    NAME = "galetto2022"
    VERSION = "1"
    PROVIDES = "blur_map"
    UNITS = "sigma_px"
    HIGHER = "blurred"
    DESCRIPTION = ("MobileNetV2 32x32 patch blurriness classifier (20 Gaussian-sigma classes) over sliding windows, "
                   "mean class per pixel, refined by iterated WGIF guided by a WGIF-smoothed image")
    REFERENCE = _REFERENCE
    WEIGHTS = _WEIGHTS

    class Params(_MapParams):
        refine_radius: int = Field(16, ge=1, description="WGIF window radius (px) of the refinement")
        refine_eps: float = Field(0.005, gt=0, description="WGIF regulariser (gray image in [0, 1], squared units)")
        refine_iterations: int = Field(7, ge=0, description="WGIF passes on the map")
        guide_iterations: int = Field(7, ge=0, description="self-guided WGIF passes smoothing the guide image")
        presmooth: bool = Field(False, description="code-only extra: 3x3 Gaussian (sigma 1) on the gray image before windowing")
        s0: int = Field(0, ge=0, le=19, description="code-only extra: class -> max(class - s0, 0) (authors' code: 1)")
        batch: int = Field(256, ge=1, description="windows per forward pass")
        channels_last: bool = Field(True, description="NHWC memory format (faster on CPU); same result")
        fold_bn: bool = Field(True, description="fold batch norm into the convolutions (faster; same result to ~1e-6)")

    def __init__(self, params: Params | dict | None = None, *, device: str = "cpu", weights: str | None = None):
        super().__init__(params, device=device, weights=weights)
        self._model: Any = None
        self._device: Any = None

    @property
    def weights_path(self):
        """The weights file this instance uses: ``weights`` or the shipped default (UserError if absent)."""
        from pathlib import Path

        from .torch_inference import shipped_weights

        if self.weights is not None:
            return Path(self.weights)
        return shipped_weights(WEIGHTS_FILE, method=self.NAME)

    def model(self) -> Any:
        """The network, built and loaded once per instance (BN folded / channels-last per the Params)."""
        if self._model is None:
            from .nets.mobilenetv2 import MobileNetV2, fold_batchnorm
            from .torch_inference import load_state_dict, prepare_model, resolve_device

            device = resolve_device(self.device)
            net = load_state_dict(MobileNetV2(in_channels=1, num_classes=20), self.weights_path, device="cpu")
            if self.params.fold_bn:
                net = fold_batchnorm(net)
            self._model = prepare_model(net, device=device, channels_last=self.params.channels_last)
            self._device = device
        return self._model

    def window_map(self, gray: np.ndarray) -> np.ndarray:
        """Unrefined map of a gray ``(H, W)`` image in ``[0, 1]``: mean window class, float32 in [0, 19]."""
        from .galetto_windows import blur_map_windows
        from .torch_inference import configure_threads, inference

        model = self.model()
        p = self.params
        configure_threads()
        with inference(self._device):
            return blur_map_windows(model, gray, stride=p.stride, presmooth=p.presmooth, s0=p.s0,
                                    batch=p.batch, device=str(self._device), channels_last=p.channels_last)

    def predict(self, image: np.ndarray) -> np.ndarray:
        from .guided import galetto_refine

        img = check_image(image)
        gray = to_gray(img)
        m = self.window_map(gray)
        p = self.params
        if p.refine:
            m = galetto_refine(m, gray, radius=p.refine_radius, eps=p.refine_eps,
                               iterations=p.refine_iterations, guide_iterations=p.guide_iterations)
            m = np.clip(m, 0.0, SIGMA_MAX)
        return np.ascontiguousarray(m, dtype=np.float32)


class _MapEnhancer(Method):
    """An enhancer driven by a Gaussian-sigma blur map: a map consumer (``predict_with_map``, run in
    ``bench`` as a chain, by default after ``galetto2022``: ``galetto2022_um@galetto2022``), whose
    ``predict(image)`` computes that map itself (an internal :class:`Galetto2022`, same weights)."""

    PROVIDES = "enhanced_image"
    UNITS = "image"
    HIGHER = "n/a"
    REFERENCE = _REFERENCE
    WEIGHTS = _WEIGHTS
    NEEDS_MAP = "sigma_px"
    DEFAULT_MAP_SOURCE = "galetto2022"

    def __init__(self, params: Params | dict | None = None, *, device: str = "cpu", weights: str | None = None):
        super().__init__(params, device=device, weights=weights)
        self._mapper: Galetto2022 | None = None

    @property
    def mapper(self) -> Galetto2022:
        """The internal :class:`Galetto2022` (stride and refine from these Params), built once."""
        if self._mapper is None:
            self._mapper = Galetto2022({"stride": self.params.stride, "refine": self.params.refine},
                                       device=self.device, weights=self.weights)
        return self._mapper

    @property
    def weights_path(self):
        return self.mapper.weights_path

    def enhance_with_map(self, image: np.ndarray, blur_map_sigma: np.ndarray) -> np.ndarray:
        """Enhance ``image`` ((H, W, 3) float in [0, 1]) with any ``blur_map_sigma`` ((H, W), Gaussian
        sigma px, nominally 0..19, higher = more blurred); float32 (H, W, 3) in [0, 1]."""
        raise NotImplementedError

    def predict_with_map(self, image: np.ndarray, blur_map: np.ndarray) -> np.ndarray:
        return self.enhance_with_map(check_image(image), blur_map)

    def predict(self, image: np.ndarray) -> np.ndarray:
        img = check_image(image)
        return self.enhance_with_map(img, self.mapper.predict(img))


class Galetto2022UM(_MapEnhancer):
    NAME = "galetto2022_um"
    VERSION = "1"
    DESCRIPTION = ("Adaptive unsharp masking J = I + lambda(M)(I - B) with the gain a band-pass of the galetto2022 "
                   "blur map (eqs. 8-11)")

    class Params(_MapParams):
        alpha1: float = Field(46.0, description="slope of the rising sigmoid lambda1 (eq. 10)")
        beta1: float = Field(0.1, description="centre of lambda1 on the map normalised to [0, 1] (M/19)")
        alpha2: float = Field(183.0, description="slope of the falling sigmoid lambda2 (eq. 11)")
        beta2: float = Field(0.27, description="centre of lambda2 on the normalised map")
        lambda_max: float = Field(2.0, ge=0, description="largest gain")
        lowpass_sigma: float = Field(2.0, gt=0, description="sigma (px) of the Gaussian low-pass B (paper: unspecified)")

    def enhance_with_map(self, image: np.ndarray, blur_map_sigma: np.ndarray) -> np.ndarray:
        from .enhance_map import adaptive_unsharp_mask

        p = self.params
        return adaptive_unsharp_mask(check_image(image), blur_map_sigma, alpha1=p.alpha1, beta1=p.beta1,
                                     alpha2=p.alpha2, beta2=p.beta2, lambda_max=p.lambda_max,
                                     lowpass_sigma=p.lowpass_sigma)


class Galetto2022SDoF(_MapEnhancer):
    NAME = "galetto2022_sdof"
    VERSION = "1"
    DESCRIPTION = ("Defocus magnification R = W S + (1 - W) B: sharpened in-focus layer, iterated self-guided-filter "
                   "blur elsewhere, weight W from the galetto2022 blur map (eqs. 12-13)")

    class Params(_MapParams):
        c0: float = Field(1.0, ge=0, description="map value (sigma px) where the sharp-layer weight W is w0")
        c1: float = Field(7.0, description="map value (sigma px) where W is w1; 0 <= c0 < c1 < 10")
        w0: float = Field(0.999, description="W at c0")
        w1: float = Field(0.001, description="W at c1; 0 < w1 < w0 < 1")
        blur_radius: int = Field(33, ge=1, description="self-guided filter radius (px) of the blurred layer")
        blur_eps: float = Field(128.0 / 255.0 ** 2, gt=0, description="its regulariser (image in [0, 1]; paper 128 on 0-255)")
        blur_iterations: int = Field(5, ge=0, description="self-guided filter passes")
        sharpen_lambda: float = Field(0.25, ge=0, description="fixed UM gain of the sharp layer S")
        lowpass_sigma: float = Field(2.0, gt=0, description="sigma (px) of the UM low-pass")

        @model_validator(mode="after")
        def _check_curve(self):
            if not (0.0 <= self.c0 < self.c1 < 10.0):
                raise ValueError(f"need 0 <= c0 < c1 < 10, got c0={self.c0}, c1={self.c1}")
            if not (0.0 < self.w1 < self.w0 < 1.0):
                raise ValueError(f"need 0 < w1 < w0 < 1, got w0={self.w0}, w1={self.w1}")
            return self

    def enhance_with_map(self, image: np.ndarray, blur_map_sigma: np.ndarray) -> np.ndarray:
        from .enhance_map import defocus_magnification

        p = self.params
        return defocus_magnification(check_image(image), blur_map_sigma, c0=p.c0, c1=p.c1, w0=p.w0, w1=p.w1,
                                     blur_radius=p.blur_radius, blur_eps=p.blur_eps,
                                     blur_iterations=p.blur_iterations, sharpen_lambda=p.sharpen_lambda,
                                     lowpass_sigma=p.lowpass_sigma)
