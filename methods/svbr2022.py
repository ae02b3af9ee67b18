"""SVBR-Net (``svbr2022``): non-blind spatially varying defocus deblurring given a blur map.
``METHODS.md`` §7.

A. Karaali, C. R. Jung, "SVBR-Net: a non-blind spatially varying defocus blur removal network",
ICIP 2022.  Reimplemented from the paper and the notes; no code copied.

A map consumer (``NEEDS_MAP = "radius_px"``): ``predict_with_map(image, blur_map)`` with ``image``
``(H, W, 3)`` float32 RGB in ``[0, 1]`` and ``blur_map`` ``(H, W)`` float32, disk radius in px
(converted by :func:`methods.map_units.convert_map`, e.g. from a Gaussian-sigma map), returns
the restored image, ``(H, W, 3)`` float32 RGB in ``[0, 1]``.

Pipeline
--------
1. The map is checked (same size as the image, finite; :class:`~methods.map_units.MapUnitsError`,
   one line, otherwise), clipped to ``[0, 6]`` px (the range the network was trained on) and
   divided by 6 (:data:`methods.nets.svbr_net.MAP_SCALE`).
2. :class:`~methods.nets.svbr_net.SVBRNet` (BN folded into the convolutions) runs on the RGB
   image and the map; any size (replicate-padded to multiples of 4 inside).  Images with a side
   longer than ``tile`` run in equal blocks of at most ``tile`` px with an 88-px overlap (the
   receptive field; :func:`~methods.nets.svbr_net.forward_tiled`), which gives the whole-image
   result to float rounding and bounds memory: a forward takes ~0.9 GB per megapixel in float32
   (measured, ``benchmarks/bench_svbr2022.py``), so at most ~2.6 GB with the default 1536.
   Tiling is for memory only: it is not faster (the overlap costs more than cache locality gains).
3. ``precision="bfloat16"`` runs every layer except the last convolution and sigmoid in bfloat16:
   about 2x faster on CPUs with AVX512-BF16 (1.04 vs 2.38 s/MP at 1 MP on 2 cores,
   ``benchmarks/bench_svbr2022.py``).  With the shipped weights it differs from float32 by 0.0013 on
   average (max 0.025, kodim05 with a 0.5-6 px ramp map); other weights may differ more.

Weights: ``weights=PATH`` (``bench run --weights``) or, when ``None``, the shipped
``methods/weights/svbr2022.pt`` (a ``SVBRNet`` state dict, trained here on RGB input; read with
``weights_only=True`` through :mod:`methods.torch_inference`, the shared inference path).
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field

from .base import Method, Params, check_image
from .map_units import convert_map

__all__ = ["SVBR2022", "WEIGHTS_FILE"]

#: File name of the shipped weights under ``methods/weights/``.
WEIGHTS_FILE = "svbr2022.pt"

_REFERENCE = ("A. Karaali, C. R. Jung, \"SVBR-Net: a non-blind spatially varying defocus blur removal network\", "
              "ICIP 2022")


class SVBR2022(Method):
    NAME = "svbr2022"
    VERSION = "1"
    PROVIDES = "restored_image"
    UNITS = "image"
    HIGHER = "n/a"
    NEEDS_MAP = "radius_px"
    DESCRIPTION = ("SVBR-Net: two interconnected U-Net-like encoder-decoders (blurry image, disk-radius blur map) "
                   "restoring a spatially varying defocus blur; trained with an SSIM loss on synthetic blur")
    REFERENCE = _REFERENCE
    WEIGHTS: ClassVar[dict[str, str]] = {
        "svbr2022": "SVBRNet state dict (362,099 parameters; RGB input in [0, 1], map = disk radius / 6), torch "
                    "state_dict read with weights_only=True; shipped as methods/weights/svbr2022.pt"}

    class Params(Params):
        tile: int = Field(1536, ge=16, multiple_of=4,
                          description="images with a side longer than this (px) run in blocks of at most tile x tile "
                                      "with an 88-px overlap (same result; bounds memory at ~0.9 GB per megapixel "
                                      "of block and overlap, float32)")
        precision: Literal["float32", "bfloat16"] = Field(
            "float32", description="dtype of all layers but the last conv + sigmoid: bfloat16 is ~2x faster on CPUs "
                                   "with AVX512-BF16; its error depends on the weights (judge it on trained ones)")
        channels_last: bool = Field(True, description="NHWC memory format (faster on CPU); same result")
        fold_bn: bool = Field(True, description="fold batch norm into the convolutions (faster; the same result to "
                                                "float rounding, ~1e-6 with the shipped weights)")

    def __init__(self, params: Params | dict | None = None, *, device: str = "cpu", weights: str | None = None):
        super().__init__(params, device=device, weights=weights)
        self._model: Any = None
        self._run_model: Any = None
        self._device: Any = None

    @property
    def weights_path(self) -> Path:
        """The weights file this instance uses: ``weights`` or the shipped default (UserError if absent)."""
        from .torch_inference import shipped_weights

        if self.weights is not None:
            return Path(self.weights).expanduser()
        return shipped_weights(WEIGHTS_FILE, method=self.NAME)

    def model(self) -> Any:
        """The float32 network as loaded (eval mode, BN folded / channels-last per the Params), built once."""
        if self._model is None:
            from .nets.svbr_net import SVBRNet, fold_batchnorm
            from .torch_inference import load_state_dict, prepare_model, resolve_device

            device = resolve_device(self.device)
            net = load_state_dict(SVBRNet(), self.weights_path, device="cpu")
            if self.params.fold_bn:
                net = fold_batchnorm(net)
            self._model = prepare_model(net, device=device, channels_last=self.params.channels_last)
            self._device = device
        return self._model

    def _runner(self) -> Any:
        """The network in the working precision (a bfloat16 copy keeping ``out`` in float32)."""
        if self._run_model is None:
            net = self.model()
            if self.params.precision == "bfloat16":
                import torch

                net = copy.deepcopy(net).to(dtype=torch.bfloat16)
                net.out.float()
            self._run_model = net
        return self._run_model

    def predict_with_map(self, image: np.ndarray, blur_map: np.ndarray) -> np.ndarray:
        """Restore ``image`` (``(H, W, 3)`` float RGB in [0, 1]) given ``blur_map`` (``(H, W)``,
        disk radius in px, clipped to [0, 6]); float32 ``(H, W, 3)`` in [0, 1]."""
        import torch

        from .nets.svbr_net import MAP_SCALE, forward_tiled
        from .torch_inference import configure_threads, inference

        img = check_image(image)
        m = convert_map(blur_map, units="radius_px", to=self.NEEDS_MAP, shape=img.shape[:2])
        m = np.clip(m, 0.0, MAP_SCALE) / np.float32(MAP_SCALE)
        net = self._runner()
        p = self.params
        dtype = net.x01.conv.weight.dtype
        fmt = torch.channels_last if p.channels_last else torch.contiguous_format
        configure_threads()
        with inference(self._device):
            x = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))[None]
            b = torch.from_numpy(np.ascontiguousarray(m, dtype=np.float32))[None, None]
            x = x.to(self._device, dtype).contiguous(memory_format=fmt)
            b = b.to(self._device, dtype).contiguous(memory_format=fmt)
            y = forward_tiled(net, x, b, tile=p.tile)
            out = y[0].float().permute(1, 2, 0).cpu().numpy()
        return np.ascontiguousarray(np.clip(out, 0.0, 1.0), dtype=np.float32)
