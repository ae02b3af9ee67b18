"""SVBR-Net of Karaali & Jung (ICIP 2022), non-blind spatially varying defocus deblurring, written here.

A. Karaali, C. R. Jung, "SVBR-Net: a non-blind spatially varying defocus blur removal network",
ICIP 2022.  Reimplemented from the paper and ``METHODS.md`` §7.1 (no code copied).

Inputs and output (:meth:`SVBRNet.forward`)
-------------------------------------------
* ``image``: ``(N, 3, H, W)`` float, **RGB** in ``[0, 1]``.  The authors feed BGR (as ``cv2``
  reads it); a network trained here sees RGB, consistently at training and inference.  Anyone
  importing weights trained by the authors' code must flip the channels (``image.flip(1)``) on
  the way in and out, or permute the input channels of ``x01`` and the output channels of ``out``.
* ``blur_map``: ``(N, 1, H, W)`` float, **disk radius in px / 6** (:data:`MAP_SCALE`), ``0`` =
  sharp, ``1`` = radius 6 px (the largest level of the training data).
* Output: the restored image, ``(N, 3, H, W)`` RGB in ``[0, 1]`` (a sigmoid).
* Any ``H, W``: the network needs multiples of 4 (two stride-2 stages); :meth:`SVBRNet.forward`
  replicate-pads image and map at the bottom/right to the next multiple of 4 and crops the
  output back.  (Trained at 360x340.)

Blocks
------
* **T1** :class:`ConvBN` ``(cin -> cout)``: Conv 3x3 'same' with bias -> BatchNorm -> ReLU.
* **T2** :class:`Residual` ``(c)``: T1 -> T1 -> ``+ input``.
* **T3** :class:`Down` ``(cin -> cout)``: ``AvgPool2x2(T1(cin->cout) -> T1(cout->cout))`` ``+``
  ``BN(Conv 2x2 stride 2 valid, with bias (cin -> cout))``; halves the resolution.
* **T4** :class:`Up` ``(cin -> cout)``: T1(cin->cout) -> T1(cout) -> ConvTranspose 3x3 stride 2
  (cout -> cout, with bias; no BN, no ReLU) -> T1(cout) -> T1(cout); doubles the resolution.
* **T5** (``out``): Conv 3x3 'same' with bias (8 -> 3) -> sigmoid.

These channel assignments (T3 and T4 change the channel count in their first T1) are the ones
that give the 362,099 parameters of ``METHODS.md`` §7.1 / §8.3 (:data:`N_PARAMS`, counting BN
gamma/beta, not the running statistics).

Wiring (module names = the tensors of §7.1; ``cat`` along channels, in this order)::

    blur-map branch                           image branch
    b01 T1(1->8)            H                 x01 T1(3->8)
    b02 T2(8)                                 x02 T2(8): cat[x02, b02] (16)
    b03 T3(8->16)           H/2               x03 T1(16->8)
    b04 T1(16)                                x04 T3(8->16)              H/2
    b05 T2(16)                                x05 T1(16)
    b06 T3(16->32)          H/4               x06 T2(16): cat[x06, b05] (32)
    b07 T1(32), b08 T1(32)                    x07 T1(32->16)
    b09 T2(32), b10 T2(32)                    x08 T3(16->32)             H/4
    b11 T4(32->16)          H/2               x09 T1(32), x10 T1(32), x11 T2(32)
    b12 T1(16): cat[b12, b04] (32)            x12 T2(32): cat[x12, b10] (64)
    b13 T2(32)                                x13 T1(64->32)
    b14 T4(32->32)          H                 x14 T4(32->16)             H/2
    b15 T1(32): cat[b15, b01] (40)            x15 T1(16); x16 T2(16): cat[x16, b13] (48)
    b16 T2(40)                                x17 T1(48->16): cat[x07, x17] (32); x18 T1(32)
                                              x19 T4(32->8)              H
                                              x20 T1(8): cat[x03, x20] (16); x21 T1(16->8)
                                              x22 T2(8): cat[x22, b16] (48); x23 T1(48->8)
                                              out T5(8->3)

Transposed convolution alignment
--------------------------------
``transpose_align="symmetric"`` (default, ``METHODS.md`` §7.1): ``ConvTranspose2d(padding=1,
output_padding=1)``: low-resolution pixel ``i`` feeds outputs ``2i-1 .. 2i+1``.  Keras'
``Conv2DTranspose(3, strides=2, padding="same")`` feeds ``2i .. 2i+2`` (one pixel later);
``transpose_align="keras"`` reproduces that (``padding=0``, then the last row and column of the
``2n+1`` output are dropped), for importing Keras weights one to one.  Trained from scratch either
is as good; weights trained under one must be used under the same (``model.config``).

Batch norm and initialisation
-----------------------------
BatchNorm as Keras' defaults: ``eps = 1e-3``, momentum 0.99 (PyTorch ``momentum = 0.01``).
:func:`fold_batchnorm` gives the eval-mode inference copy with every BN folded into its conv.
Keras default initialisation drawn from ``torch.Generator().manual_seed(seed)``
(:func:`methods.nets.init.keras_init_`: Glorot-uniform convolution kernels, zero biases, BN at
identity); the transposed convolutions, which ``keras_init_`` does not visit, get Glorot-uniform
kernels (the bound ``sqrt(6 / ((cin + cout) 9))`` is the same in both frameworks) and zero biases
from a second generator seeded with ``seed + TRANSPOSE_SEED_OFFSET``.  The initial weights depend
only on ``seed``.
"""
from __future__ import annotations

import copy
from typing import Literal

import torch
from torch import nn
from torch.nn import functional as F

from datagen.psf import MAX_RADIUS

from .init import keras_init_

__all__ = ["BN_EPS", "BN_MOMENTUM", "HALO", "MAP_SCALE", "MULTIPLE", "N_PARAMS", "ConvBN", "Down", "Residual", "SVBRNet",
           "Up", "count_parameters", "fold_batchnorm", "forward_tiled"]

#: Parameters of :class:`SVBRNet` (weights, biases, BN gamma and beta; running statistics excluded).
N_PARAMS = 362_099
#: ``blur_map = radius_px / MAP_SCALE``: 6 px, the largest disk radius of the training data
#: (:data:`datagen.psf.MAX_RADIUS`).
MAP_SCALE = float(MAX_RADIUS)
#: H and W the layers need to be multiples of (two stride-2 stages).
MULTIPLE = 4
#: Receptive-field radius of an output pixel, measured (86 px: the farthest input pixel with a
#: non-zero gradient, for both alignments), rounded up to a multiple of 4: the tile overlap of
#: :func:`forward_tiled` that makes tiled and whole-image outputs equal.
HALO = 88
BN_EPS = 1e-3
BN_MOMENTUM = 0.01
#: The transposed convolutions are drawn from ``torch.Generator().manual_seed(seed + this)``.
TRANSPOSE_SEED_OFFSET = 7919

TransposeAlign = Literal["symmetric", "keras"]


class ConvBN(nn.Module):
    """``Conv2d(bias=True) -> BatchNorm2d -> [ReLU]``; T1 when ``act`` (3x3, 'same').  After
    :func:`fold_batchnorm` the BN is an ``nn.Identity`` and the conv carries the folded bias."""

    def __init__(self, cin: int, cout: int, kernel_size: int = 3, *, stride: int = 1, act: bool = True):
        super().__init__()
        pad = kernel_size // 2 if stride == 1 else 0
        self.conv = nn.Conv2d(cin, cout, kernel_size, stride=stride, padding=pad, bias=True)
        self.bn: nn.Module = nn.BatchNorm2d(cout, eps=BN_EPS, momentum=BN_MOMENTUM)
        self.act = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(self.conv(x))
        return F.relu(x, inplace=True) if self.act else x


class Residual(nn.Module):
    """T2: ``x + T1(T1(x))`` (``c`` channels in and out)."""

    def __init__(self, c: int):
        super().__init__()
        self.a, self.b = ConvBN(c, c), ConvBN(c, c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(self.a(x)) + x


class Down(nn.Module):
    """T3: ``avgpool2(T1(T1(x))) + BN(conv2x2/2(x))`` (``cin -> cout``, half resolution)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.a, self.b = ConvBN(cin, cout), ConvBN(cout, cout)
        self.skip = ConvBN(cin, cout, 2, stride=2, act=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(self.b(self.a(x)), 2) + self.skip(x)


class Up(nn.Module):
    """T4: ``T1(T1(convT3x3/2(T1(T1(x)))))`` (``cin -> cout``, double resolution)."""

    def __init__(self, cin: int, cout: int, *, transpose_align: TransposeAlign = "symmetric"):
        super().__init__()
        self.a, self.b = ConvBN(cin, cout), ConvBN(cout, cout)
        self.keras = transpose_align == "keras"
        self.up = nn.ConvTranspose2d(cout, cout, 3, stride=2, padding=0 if self.keras else 1,
                                     output_padding=0 if self.keras else 1, bias=True)
        self.c, self.d = ConvBN(cout, cout), ConvBN(cout, cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        x = self.up(self.b(self.a(x)))
        if self.keras:
            x = x[..., :2 * h, :2 * w]
        return self.d(self.c(x))


class SVBRNet(nn.Module):
    """SVBR-Net (see the module docstring): ``forward(image, blur_map) -> restored image``.

    Parameters
    ----------
    transpose_align : {"symmetric", "keras"}
        Alignment of the stride-2 transposed convolutions (module docstring; default symmetric).
    seed : int
        Seed of the generators that draw the initial weights.
    """

    def __init__(self, *, transpose_align: TransposeAlign = "symmetric", seed: int = 0):
        super().__init__()
        if transpose_align not in ("symmetric", "keras"):
            raise ValueError(f"transpose_align must be 'symmetric' or 'keras', got {transpose_align!r}")
        self.config = {"transpose_align": transpose_align}
        up = {"transpose_align": transpose_align}
        # blur-map branch
        self.b01, self.b02, self.b03 = ConvBN(1, 8), Residual(8), Down(8, 16)
        self.b04, self.b05, self.b06 = ConvBN(16, 16), Residual(16), Down(16, 32)
        self.b07, self.b08, self.b09, self.b10 = ConvBN(32, 32), ConvBN(32, 32), Residual(32), Residual(32)
        self.b11, self.b12, self.b13 = Up(32, 16, **up), ConvBN(16, 16), Residual(32)
        self.b14, self.b15, self.b16 = Up(32, 32, **up), ConvBN(32, 32), Residual(40)
        # image branch
        self.x01, self.x02, self.x03, self.x04 = ConvBN(3, 8), Residual(8), ConvBN(16, 8), Down(8, 16)
        self.x05, self.x06, self.x07, self.x08 = ConvBN(16, 16), Residual(16), ConvBN(32, 16), Down(16, 32)
        self.x09, self.x10, self.x11, self.x12 = ConvBN(32, 32), ConvBN(32, 32), Residual(32), Residual(32)
        self.x13, self.x14, self.x15, self.x16 = ConvBN(64, 32), Up(32, 16, **up), ConvBN(16, 16), Residual(16)
        self.x17, self.x18, self.x19, self.x20 = ConvBN(48, 16), ConvBN(32, 32), Up(32, 8, **up), ConvBN(8, 8)
        self.x21, self.x22, self.x23 = ConvBN(16, 8), Residual(8), ConvBN(48, 8)
        self.out = nn.Conv2d(8, 3, 3, padding=1, bias=True)
        self.reset_parameters(seed)

    @torch.no_grad()
    def reset_parameters(self, seed: int = 0) -> None:
        """Keras default initialisation from ``seed`` (module docstring)."""
        keras_init_(self, seed)
        g = torch.Generator().manual_seed(int(seed) + TRANSPOSE_SEED_OFFSET)
        for m in self.modules():
            if isinstance(m, nn.ConvTranspose2d):
                w = torch.empty(m.weight.shape, dtype=torch.float32)
                nn.init.xavier_uniform_(w, generator=g)
                m.weight.copy_(w)
                m.bias.zero_()

    def forward(self, image: torch.Tensor, blur_map: torch.Tensor) -> torch.Tensor:
        """``image`` ``(N, 3, H, W)`` RGB in [0, 1], ``blur_map`` ``(N, 1, H, W)`` radius / 6 ->
        ``(N, 3, H, W)`` in [0, 1]; any ``H, W`` (replicate-padded to multiples of 4 inside)."""
        if image.ndim != 4 or image.shape[1] != 3:
            raise ValueError(f"image must be (N, 3, H, W), got shape {tuple(image.shape)}")
        n, _, h, w = image.shape
        if tuple(blur_map.shape) != (n, 1, h, w):
            raise ValueError(f"blur_map must be (N, 1, H, W) = {(n, 1, h, w)}, got shape {tuple(blur_map.shape)}")
        ph, pw = -h % MULTIPLE, -w % MULTIPLE
        if ph or pw:
            image = F.pad(image, (0, pw, 0, ph), mode="replicate")
            blur_map = F.pad(blur_map, (0, pw, 0, ph), mode="replicate")
        y = self._forward(image, blur_map)
        return y[..., :h, :w] if (ph or pw) else y

    def _forward(self, image: torch.Tensor, bmap: torch.Tensor) -> torch.Tensor:
        cat = torch.cat
        # blur-map encoder
        b01 = self.b01(bmap)
        b02 = self.b02(b01)
        b04 = self.b04(self.b03(b02))
        b05 = self.b05(b04)
        b10 = self.b10(self.b09(self.b08(self.b07(self.b06(b05)))))
        # image encoder (with the map's features joined in)
        x03 = self.x03(cat([self.x02(self.x01(image)), b02], 1))
        del b02
        x07 = self.x07(cat([self.x06(self.x05(self.x04(x03))), b05], 1))
        del b05
        x12 = cat([self.x12(self.x11(self.x10(self.x09(self.x08(x07))))), b10], 1)
        # blur-map decoder
        b13 = self.b13(cat([self.b12(self.b11(b10)), b04], 1))
        del b10, b04
        b16 = self.b16(cat([self.b15(self.b14(b13)), b01], 1))
        del b01
        # image decoder
        x16 = cat([self.x16(self.x15(self.x14(self.x13(x12)))), b13], 1)
        del x12, b13
        x18 = self.x18(cat([x07, self.x17(x16)], 1))
        del x07, x16
        x21 = self.x21(cat([x03, self.x20(self.x19(x18))], 1))
        del x03, x18
        x23 = self.x23(cat([self.x22(x21), b16], 1))
        return torch.sigmoid(self.out(x23.to(self.out.weight.dtype)))   # a no-op unless out is kept float32


def count_parameters(model: nn.Module) -> int:
    """Parameters of ``model`` (BN gamma/beta included, running statistics, being buffers, not)."""
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Eval-mode deep copy of ``model`` with every :class:`ConvBN`'s BN folded into its conv:
    ``W' = W gamma / sqrt(var + eps)`` per output channel, ``b' = beta + (b - mu) gamma /
    sqrt(var + eps)`` (computed in float64); the BN becomes ``nn.Identity``.  Equal to
    ``model.eval()`` up to float rounding; gradients off.  ``model`` is not modified."""
    folded = copy.deepcopy(model).eval()
    for m in folded.modules():
        if isinstance(m, ConvBN) and isinstance(m.bn, nn.BatchNorm2d):
            conv, bn = m.conv, m.bn
            scale = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
            bias = conv.bias.double() if conv.bias is not None else torch.zeros_like(scale)
            new = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride,
                            padding=conv.padding, bias=True).to(device=conv.weight.device, dtype=conv.weight.dtype)
            new.weight.copy_((conv.weight.double() * scale.view(-1, 1, 1, 1)).to(conv.weight.dtype))
            new.bias.copy_((bn.bias.double() + (bias - bn.running_mean.double()) * scale).to(conv.weight.dtype))
            m.conv, m.bn = new.eval(), nn.Identity()
    for p in folded.parameters():
        p.requires_grad_(False)
    return folded


def forward_tiled(net: SVBRNet, image: torch.Tensor, blur_map: torch.Tensor, *, tile: int,
                  halo: int = HALO) -> torch.Tensor:
    """``net(image, blur_map)`` computed in blocks of at most ``tile x tile`` px, each with ``halo``
    px of context on every side inside the image (to bound memory on large images).

    Image and map are replicate-padded to multiples of 4 once, as a whole, and each axis is cut into
    the fewest blocks of at most ``tile`` px, of equal size rounded up to a multiple of 4 (the last
    one shorter): every block sees the pooling grid of the whole image, and a block's border
    effects reach no farther than the receptive field (:data:`HALO`), so with ``halo >= HALO`` the
    result equals the whole-image forward to float rounding.  An image whose sides are both
    ``<= tile`` runs whole.  Blocks keep the memory format of ``image``; the output has the dtype
    of ``net.out``.
    """
    if tile < MULTIPLE or tile % MULTIPLE or halo < 0 or halo % MULTIPLE:
        raise ValueError(f"tile and halo must be multiples of {MULTIPLE} (tile >= {MULTIPLE}), got {tile}, {halo}")
    n, _, h, w = image.shape
    if h <= tile and w <= tile:
        return net(image, blur_map)
    if tuple(blur_map.shape) != (n, 1, h, w):
        raise ValueError(f"blur_map must be (N, 1, H, W) = {(n, 1, h, w)}, got shape {tuple(blur_map.shape)}")
    fmt = torch.channels_last if image.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format
    ph, pw = -h % MULTIPLE, -w % MULTIPLE
    image = F.pad(image, (0, pw, 0, ph), mode="replicate")
    blur_map = F.pad(blur_map, (0, pw, 0, ph), mode="replicate")
    hp, wp = h + ph, w + pw

    def step(size: int) -> int:          # equal blocks, a multiple of 4, at most tile
        blocks = -(-size // tile)
        return -(-size // (blocks * MULTIPLE)) * MULTIPLE

    by, bx = step(hp), step(wp)
    out = torch.empty((n, 3, hp, wp), dtype=net.out.weight.dtype, device=image.device)
    for y0 in range(0, hp, by):
        y1 = min(y0 + by, hp)
        ya, yb = max(0, y0 - halo), min(hp, y1 + halo)
        for x0 in range(0, wp, bx):
            x1 = min(x0 + bx, wp)
            xa, xb = max(0, x0 - halo), min(wp, x1 + halo)
            o = net._forward(image[..., ya:yb, xa:xb].contiguous(memory_format=fmt),
                             blur_map[..., ya:yb, xa:xb].contiguous(memory_format=fmt))
            out[..., y0:y1, x0:x1] = o[..., y0 - ya:y1 - ya, x0 - xa:x1 - xa]
    return out[..., :h, :w]
