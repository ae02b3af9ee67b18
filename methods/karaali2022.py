"""Karaali, Harte & Jung 2022: edge-based defocus blur estimation with depth-edge-aware propagation
(``karaali2022``).  ``METHODS.md`` §6.1-6.2, ambiguity register items 19-20.

A. Karaali, N. Harte, C. R. Jung, "Deep multi-scale feature learning for defocus blur estimation",
IEEE Transactions on Image Processing 31, 2022.  Reimplemented from the paper and the notes; no
code copied.

Pipeline (``predict``)
----------------------
1. **Edges** (binary ``(H, W)``): the map given by ``edges`` (a PNG path: the published RTF
   results used the authors' precomputed MATLAB-era Canny maps), else our Canny
   ``skimage.feature.canny(X, sigma=canny_sigma)`` with skimage's default thresholds on ``X`` =
   the HSV value channel ``max(R, G, B)`` (``edge_mode="v"``, default, the closest match to the
   precomputed maps), the BT.601 gray image (``"gray"``) or the hue channel with the released
   code's thresholds 0.05 / 0.06 (``"hue"``, code parity; likely a bug there):
   :func:`datagen.edges.canny_edges`, with which the training corpora were cut.
2. **Networks** at every edge pixel: the image (RGB in [0, 1]) is reflect-padded by 20 px
   (``cv2.BORDER_REFLECT`` = numpy ``"symmetric"``: ``fedcba|abcdef``) and the 41x41 patch centred
   on the pixel goes through B-NET and E-NET (:mod:`methods.nets.karaali_nets`).  B-NET class ``b``
   gives the disk radius ``r = 0.5 + 0.25 b`` px; E-NET class ``e`` says pattern (0) or depth (1)
   edge.  ``mode="dense"`` (default) evaluates the trunks densely over tiles of the padded image
   (:func:`~methods.nets.karaali_nets.dense_logits`, the same numbers to float rounding, ~40x
   faster on RTF image 01); ``mode="patch"`` cuts every patch and runs the networks per patch,
   as the authors do (reference; slow).  Edge pixels whose two best logits are closer than
   ``tie_tol`` times their magnitude (1e-5, ~100 float32 epsilons) are re-evaluated per
   patch in float64, so a near-tie is decided by the exact logits rather than by the summation
   order of one float32 implementation: on RTF image 01 one B-NET tie (logits 5.914030 and
   5.914020) then falls the way TensorFlow decided it and the released output is reproduced exactly.
3. **Sparse maps**: ``S = r`` and ``M = 1`` at pattern edges, ``D = 1`` at depth edges.
4. **Guide**: ``J = RF(image; image)``, the self-guided domain-transform recursive filter with
   ``guide_sigma_s = 7`` px, ``guide_sigma_r = 0.5``, ``guide_iterations = 5``.
5. **Propagation**: ``B = RF_D(S M; J) / (RF_D(M; J) + 1e-12)`` with the depth-edge penalty
   ``penalty`` (psi) at ``D`` (:func:`datagen.domain_transform.dt_propagate`), ``sigma_s =
   min(H, W) / 8`` (``prop_sigma_s`` overrides it), ``sigma_r = 3.75``, 5 iterations.  psi = 100
   is the paper's value (default); **20 reproduces the released code's outputs**.

Output: ``float32 (H, W)``, disk radius in pixels (nominally 0.5 ... 6.0, higher = more blurred),
not clipped.  The authors save ``uint8(B / 6 * 255)`` (truncation, see ``tests/test_karaali2022.py``).

Degenerate images: with **no edge pixel** there is no evidence at all; the map is the constant
0.5 (the smallest class, "sharp", rather than 0, which is not a radius the method can output).
With edges but **no pattern edge** (every edge classified as a depth edge) the authors' code
divides by zero; here every edge pixel is used as a sparse sample, without the depth-edge
penalty.

Weights (``weights=``, ``bench --weights``): a ``Karaali2022Net`` state dict file (``.pt``, read
with ``weights_only=True``) or the authors' released folder ``models_tf1x/`` (or its parent),
converted on the fly by :mod:`methods.karaali_weights` (``.mat`` files read with
``scipy.io.loadmat``, never executed).  ``None``: the shipped ``methods/weights/karaali2022.pt``
(our own weights: B-NET trained on ``disk23_edges``, E-NET on ``depth_edges``; its card says how).
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field

from datagen.errors import UserError

from .base import Method, Params, check_image

__all__ = ["R_MIN", "R_STEP", "WEIGHTS_FILE", "Karaali2022", "detect_edges", "extract_patches", "pad_image", "read_edge_map"]

#: File name of the shipped weights under ``methods/weights/``.
WEIGHTS_FILE = "karaali2022.pt"
#: B-NET class k is the disk radius R_MIN + R_STEP * k px.
R_MIN = 0.5
R_STEP = 0.25
#: Reflect padding of the image (half the 41-px patch).
PAD = 20
#: Largest edge-map file read (bytes).
MAX_EDGE_MAP_BYTES = 256 * 2**20

_REFERENCE = ("A. Karaali, N. Harte, C. R. Jung, \"Deep multi-scale feature learning for defocus blur "
              "estimation\", IEEE Transactions on Image Processing 31, 2022")


def detect_edges(image: np.ndarray, *, mode: str = "v", sigma: float = math.sqrt(2.0)) -> np.ndarray:
    """Binary ``(H, W)`` Canny edges of ``image`` (``(H, W, 3)`` RGB in [0, 1]) on the channel ``mode``:
    :func:`datagen.edges.canny_edges`, the detector the B-NET / E-NET corpora were cut with."""
    from datagen.edges import canny_edges

    return canny_edges(image, channel=mode, sigma=sigma)


def read_edge_map(path: str | Path, shape: tuple[int, int]) -> np.ndarray:
    """The binary edge map PNG ``path`` as a bool ``(H, W)`` array; it must be ``shape`` and hold
    only 0 / 1 or 0 / 255 (one channel, or channels that are all equal).  One-line
    :class:`UserError` otherwise."""
    from datagen.imageio import open_image
    from datagen.safe_read import UnreadableFile, read_regular_file

    path = Path(path).expanduser()
    try:
        raw = read_regular_file(path, limit=MAX_EDGE_MAP_BYTES, what="edge maps")
    except UnreadableFile as err:
        raise UserError(f"karaali2022 edges: {path} {err}; give a binary edge map PNG of the image's size") from None
    with open_image(raw, name=str(path), what="edge map") as im:
        im.load()
        arr = np.asarray(im)
    if arr.ndim == 3:
        chans = arr[..., :3] if arr.shape[2] >= 3 else arr[..., :1]
        if not all(np.array_equal(chans[..., 0], chans[..., c]) for c in range(1, chans.shape[2])):
            raise UserError(f"karaali2022 edges: {path} is a colour image; give a binary single-channel edge map "
                            "(0/255 or 0/1)")
        arr = chans[..., 0]
    if arr.shape != tuple(shape):
        raise UserError(f"karaali2022 edges: {path} is {arr.shape[1]}x{arr.shape[0]} but the image is "
                        f"{shape[1]}x{shape[0]}; give the edge map of this image")
    if arr.dtype == bool:
        return arr.copy()
    values = np.unique(arr)
    if not (set(values.tolist()) <= {0, 1} or set(values.tolist()) <= {0, 255}):
        shown = ", ".join(str(v) for v in values[:6]) + (", ..." if values.size > 6 else "")
        raise UserError(f"karaali2022 edges: {path} is not binary (values {shown}); give a map of 0/255 or 0/1")
    return arr > 0


def pad_image(image: np.ndarray) -> np.ndarray:
    """``image`` reflect-padded by 20 px on each side (``cv2.BORDER_REFLECT``: ``fedcba|abcdef``;
    :func:`datagen.patches.reflect_pad`, as the corpora are cut)."""
    from datagen.patches import reflect_pad

    return reflect_pad(image, PAD)


def extract_patches(padded: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """``(K, 3, 41, 41)`` float32 patches of the padded ``(H + 40, W + 40, 3)`` image centred on the
    original-image pixels ``(ys, xs)`` (:func:`datagen.patches.centred_patches`)."""
    from datagen.patches import centred_patches

    cut = centred_patches(None, ys, xs, size=2 * PAD + 1, padded=padded)      # (K, 41, 41, 3)
    return np.ascontiguousarray(cut.transpose(0, 3, 1, 2), dtype=np.float32)


class Karaali2022(Method):
    NAME = "karaali2022"
    VERSION = "1"
    PROVIDES = "blur_map"
    UNITS = "radius_px"
    HIGHER = "blurred"
    DESCRIPTION = ("Multi-scale 41/27/15-px patch CNNs at Canny edges: B-NET classifies the disk radius "
                   "(0.5..6 px, 23 levels), E-NET pattern vs depth edges; domain-transform propagation "
                   "guided by the RF-smoothed image, with a penalty that stops it at depth edges")
    REFERENCE = _REFERENCE
    WEIGHTS: ClassVar[dict[str, str]] = {
        "karaali2022": "B-NET + E-NET (Karaali2022Net state dict, shared f1; 963k parameters); a .pt read with "
                       "weights_only=True, or the authors' released models_tf1x/ folder (.mat, converted)"}
    #: Weight name -> ``"module:function"`` converting a *folder* source into a state dict
    #: (:func:`methods.karaali_weights.convert_folder`); read by :mod:`bench.weights`.
    WEIGHT_CONVERTERS: ClassVar[dict[str, str]] = {"karaali2022": "methods.karaali_weights:convert_folder"}

    class Params(Params):
        edges: str | None = Field(None, description="binary edge map PNG of the image (0/255 or 0/1, same size); "
                                                    "None = Canny on the image (edge_mode)")
        edge_mode: Literal["v", "gray", "hue"] = Field(
            "v", description="channel of our Canny: v = HSV value (default), gray, hue (released code, thresholds 0.05/0.06)")
        canny_sigma: float = Field(math.sqrt(2.0), gt=0, description="Gaussian sigma (px) of our Canny")
        penalty: float = Field(100.0, ge=0, description="depth-edge penalty psi of the propagation (paper 100; "
                                                         "the released code 20)")
        guide_sigma_s: float = Field(7.0, gt=0, description="spatial sigma (px) of the self-guided RF smoothing the guide")
        guide_sigma_r: float = Field(0.5, gt=0, description="range sigma of the guide's RF (RGB in [0, 1], summed channels)")
        guide_iterations: int = Field(5, ge=1, description="RF iterations of the guide")
        prop_sigma_s: float | None = Field(None, gt=0, description="spatial sigma (px) of the propagation; "
                                                                   "None = min(H, W) / 8")
        prop_sigma_r: float = Field(3.75, gt=0, description="range sigma of the propagation RF")
        prop_iterations: int = Field(5, ge=1, description="RF iterations of the propagation")
        mode: Literal["dense", "patch"] = Field("dense", description="dense trunks over image tiles (fast) or one "
                                                                     "41x41 patch per edge pixel (the authors' way)")
        batch: int = Field(2048, ge=1, description="edge pixels per forward pass (patch mode) / per head batch (dense)")
        tile: int = Field(256, ge=16, description="dense mode: edge pixels per tile side (memory ~ 64 ch x (tile+40)^2)")
        channels_last: bool = Field(True, description="NHWC memory format (faster on CPU); same result")
        precision: Literal["float32", "bfloat16"] = Field(
            "float32", description="dtype of the convolutional trunks (dense mode; head tails stay float32): "
                                   "bfloat16 is ~2x faster on CPUs with AVX512-BF16 but changes ~1 % of the radius "
                                   "(mostly by one class) and ~0.6 % of the edge-type decisions (RTF image 01: MAE "
                                   "0.1694 vs 0.1688)")
        tie_tol: float = Field(1e-5, ge=0, description="edge pixels whose top-two logits differ by less than tie_tol x "
                                                       "the larger one's magnitude are re-evaluated in float64 (near-ties "
                                                       "decided by the exact logits, not float32 summation order); 0 = off")

    def __init__(self, params: Params | dict | None = None, *, device: str = "cpu", weights: str | None = None):
        super().__init__(params, device=device, weights=weights)
        self._model: Any = None
        self._model64: Any = None
        self._model16: Any = None
        self._device: Any = None
        #: seconds of the last ``predict`` per stage: edges, networks, guide, propagation
        self.timings: dict[str, float] = {}

    # ------------------------------------------------------------------ weights
    @property
    def weights_path(self) -> Path:
        """The weights this instance uses: ``weights`` (a file or the authors' folder) or the shipped file."""
        from .torch_inference import shipped_weights

        if self.weights is not None:
            return Path(self.weights).expanduser()
        try:
            return shipped_weights(WEIGHTS_FILE, method=self.NAME)
        except UserError:
            raise UserError(f"the shipped weights of {self.NAME} (methods/weights/{WEIGHTS_FILE}) are missing from this "
                            "installation; reinstall, pass the authors' released models_tf1x folder or a state dict file "
                            f"as weights= / --weights, or import it once with: bench weights import {self.NAME} DIR") from None

    def model(self) -> Any:
        """The combined network (shared f1), built and loaded once per instance."""
        if self._model is None:
            from .nets.karaali_nets import Karaali2022Net
            from .torch_inference import load_state_dict, prepare_model, resolve_device

            device = resolve_device(self.device)
            net = Karaali2022Net()
            _check_shared_on_load(net)
            path = self.weights_path
            if path.is_dir():
                from .karaali_weights import convert_folder
                net.load_state_dict(convert_folder(path).state_dict, strict=True)
            else:
                net = load_state_dict(net, path, device="cpu")
            self._model = prepare_model(net, device=device, channels_last=self.params.channels_last)
            self._device = device
        return self._model

    def _exact_model(self) -> Any:
        """A float64 copy of the network (shared f1 kept), for re-evaluating near-ties."""
        if self._model64 is None:
            import copy

            import torch
            self._model64 = copy.deepcopy(self.model()).to(dtype=torch.float64,
                                                            memory_format=torch.contiguous_format)
        return self._model64

    def _bf16_model(self) -> Any:
        """A bfloat16 copy of the network (``precision="bfloat16"``)."""
        if self._model16 is None:
            import copy

            import torch
            self._model16 = copy.deepcopy(self.model()).to(dtype=torch.bfloat16)
        return self._model16

    # ------------------------------------------------------------------ stages
    def edge_map(self, image: np.ndarray) -> np.ndarray:
        """Binary ``(H, W)`` edges of ``image``: the ``edges`` file, else our Canny (``edge_mode``)."""
        p = self.params
        if p.edges is not None:
            return read_edge_map(p.edges, image.shape[:2])
        return detect_edges(image, mode=p.edge_mode, sigma=p.canny_sigma)

    def classify(self, image: np.ndarray, edges: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(ys, xs, radius, depth)`` at the edge pixels (row-major order): B-NET radius (px,
        float64) and E-NET class (1 = depth edge, int64)."""
        from .torch_inference import configure_threads, inference

        ys, xs = np.nonzero(edges)
        if ys.size == 0:
            return ys, xs, np.zeros(0), np.zeros(0, dtype=np.int64)
        import torch

        from .nets.karaali_nets import BLUR_CLASSES, EDGE_CLASSES, dense_logits

        net = self.model()
        p = self.params
        configure_threads()
        padded = pad_image(image)
        fmt = torch.channels_last if p.channels_last else torch.contiguous_format
        with inference(self._device):
            if p.mode == "dense":
                trunks = self._bf16_model() if p.precision == "bfloat16" else net
                x = torch.from_numpy(np.ascontiguousarray(padded.transpose(2, 0, 1)))[None]
                x = x.to(self._device, trunks.bnet.head.conv1.weight.dtype)
                blur, edge = dense_logits(trunks, x, torch.from_numpy(ys).to(self._device),
                                          torch.from_numpy(xs).to(self._device), tile=p.tile, batch=p.batch,
                                          channels_last=p.channels_last, tails=net)
                blur, edge = blur.float().cpu().numpy(), edge.float().cpu().numpy()
            else:
                blur = np.empty((ys.size, BLUR_CLASSES), dtype=np.float32)
                edge = np.empty((ys.size, EDGE_CLASSES), dtype=np.float32)
                for s in range(0, ys.size, p.batch):
                    patches = extract_patches(padded, ys[s:s + p.batch], xs[s:s + p.batch])
                    x = torch.from_numpy(patches).to(self._device).contiguous(memory_format=fmt)
                    bl, el = net(x)
                    blur[s:s + p.batch], edge[s:s + p.batch] = bl.cpu().numpy(), el.cpu().numpy()
            b, e = blur.argmax(1), edge.argmax(1)
            if p.tie_tol > 0:
                ties = np.nonzero(_near_tie(blur, p.tie_tol) | _near_tie(edge, p.tie_tol))[0]
                if ties.size:
                    net64 = self._exact_model()
                    for s in range(0, ties.size, 256):
                        sel = ties[s:s + 256]
                        patches = extract_patches(padded, ys[sel], xs[sel])
                        bl, el = net64(torch.from_numpy(patches).to(self._device, torch.float64))
                        b[sel], e[sel] = bl.argmax(1).cpu().numpy(), el.argmax(1).cpu().numpy()
        return ys, xs, R_MIN + R_STEP * b.astype(np.float64), e.astype(np.int64)

    def guide(self, image: np.ndarray) -> np.ndarray:
        """The propagation guide: the self-guided RF of ``image`` (float64 ``(H, W, 3)``)."""
        from datagen.domain_transform import recursive_filter

        p = self.params
        img = image.astype(np.float64)
        return recursive_filter(img, img, sigma_s=p.guide_sigma_s, sigma_r=p.guide_sigma_r,
                                iterations=p.guide_iterations)

    def propagate(self, shape: tuple[int, int], ys, xs, radius, depth, guide: np.ndarray) -> np.ndarray:
        """Dense float32 map from the sparse radii (pattern edges) with the depth-edge penalty."""
        from datagen.domain_transform import dt_propagate

        p = self.params
        h, w = shape
        if ys.size == 0:
            return np.full((h, w), R_MIN, dtype=np.float32)
        s = np.zeros((h, w))
        m = np.zeros((h, w), dtype=bool)
        d = np.zeros((h, w), dtype=bool)
        pattern = depth == 0
        if pattern.any():
            s[ys[pattern], xs[pattern]] = radius[pattern]
            m[ys[pattern], xs[pattern]] = True
            d[ys[~pattern], xs[~pattern]] = True
            psi = p.penalty
        else:               # every edge a depth edge: use them all as samples, no penalty
            s[ys, xs] = radius
            m[ys, xs] = True
            psi = 0.0
        sigma_s = p.prop_sigma_s if p.prop_sigma_s is not None else min(h, w) / 8.0
        out = dt_propagate(s, m, guide, sigma_s=sigma_s, sigma_r=p.prop_sigma_r, iterations=p.prop_iterations,
                           depth_edges=d, psi=psi)
        return np.ascontiguousarray(out, dtype=np.float32)

    def predict(self, image: np.ndarray) -> np.ndarray:
        img = check_image(image)
        t0 = time.perf_counter()
        edges = self.edge_map(img)
        t1 = time.perf_counter()
        ys, xs, radius, depth = self.classify(img, edges)
        t2 = time.perf_counter()
        guide = self.guide(img) if ys.size else None
        t3 = time.perf_counter()
        out = self.propagate(img.shape[:2], ys, xs, radius, depth, guide)
        t4 = time.perf_counter()
        self.timings = {"edges": t1 - t0, "networks": t2 - t1, "guide": t3 - t2, "propagation": t4 - t3}
        return out


def _near_tie(logits: np.ndarray, rel: float) -> np.ndarray:
    """Rows whose largest and second-largest logits differ by less than ``rel`` x the larger magnitude."""
    top = np.partition(logits, -2, axis=1)[:, -2:].astype(np.float64)
    return (top[:, 1] - top[:, 0]) < rel * np.abs(top).max(axis=1)


def _check_shared_on_load(net: Any) -> None:
    """Refuse (one line) a state dict whose ``enet.f1.*`` tensors differ from its ``bnet.f1.*``: the
    model holds one f1, so loading would silently keep only one of them."""
    import torch

    def hook(state_dict, prefix, *_args, **_kwargs):
        for key, value in state_dict.items():
            if key.startswith(prefix + "enet.f1."):
                twin = state_dict.get(prefix + "bnet.f1." + key[len(prefix + "enet.f1."):])
                if twin is not None and not torch.equal(twin, value):
                    raise UserError(f"karaali2022 weights: {key} differs from its bnet.f1 twin; the shared f1 must "
                                    "be stored identically under bnet.f1.* and enet.f1.*")

    net._register_load_state_dict_pre_hook(hook)
