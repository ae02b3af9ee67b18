"""B-NET and E-NET of Karaali, Harte & Jung (TIP 31, 2022), written here (``METHODS.md`` §6.1).

Architecture (from the 48 arrays of the authors' released weights)
------------------------------------------------------------------
Every convolution is 3x3 or 1x1, **valid** (no padding), **without bias**, followed by ReLU;
max-pooling is 3x3 with stride 3.  The input is a 41x41 RGB patch ``P41`` in ``[0, 1]`` (the image
divided by 255, no mean subtraction) centred on an edge pixel (row/column 20); the two smaller
scales are crops of it: ``P27 = P41[8:35, 8:35]`` and ``P15 = P41[14:29, 14:29]`` (both centred
on row/column 21 of ``P41``, one pixel below/right of the edge pixel, as in the authors' code)::

    f1-NET (shared by both networks)
      br41: conv3 3->64 (41->39) . maxpool3/3 (13) . conv3 (11) . conv3 (9) . conv3 (7)
      br27: conv3 3->64 (25) . conv3 (23) . conv3 (21) . maxpool3/3 (7) . conv1 64->64 (7)
      br15: conv3 3->64 (13) . conv3 (11) . conv3 (9) . conv3 (7)
    B-NET: concat[br41, br27, br15] (192 @ 7x7) -> head:
           conv3 192->64 (5) . conv3 (3) . conv3 (1) . conv1 -> 64
           -> FC 64->300 . ReLU . FC 300->150 . ReLU . FC 150->23  (FC layers have biases)
    E-NET: f2-NET on P41 (same layers as br41) ; concat[f2, br41, br27, br15] (256 @ 7x7) -> head
           as B-NET's with 256 input channels and 2 outputs (0 = pattern edge, 1 = depth edge)

The modules return **logits**; the authors' softmax only matters through its argmax.  B-NET class
``b`` is the disk radius ``0.5 + 0.25 b`` px (23 levels, 0.5 ... 6.0).

Modules
-------
* :class:`BNet` (``f1``, ``head``): ``forward(p41) -> (N, 23)``.
* :class:`ENet` (``f1``, ``f2``, ``head``): ``forward(p41) -> (N, 2)``.  Its ``f1`` has B-NET's
  architecture; the training code copies B-NET's trained ``f1`` in and freezes it (the released
  E-NET f1 arrays are bit-identical to B-NET's).
* :class:`Karaali2022Net` (``bnet``, ``enet`` with ``enet.f1 is bnet.f1``): ``forward(p41) ->
  (blur_logits, edge_logits)`` computing f1 once.  Its state dict (keys ``bnet.*`` and ``enet.*``,
  the shared f1 appearing under both prefixes as torch lists shared modules) is what a
  ``karaali2022`` weights file holds.

Initialisation: Glorot-uniform kernels (TF's default), zero biases, drawn from a
``torch.Generator`` seeded with ``seed``: the initial weights depend only on ``seed``.

Parameter counts: f1 304,192; B-NET 560,731 (head 256,539); E-NET 706,744 (f2 112,320, head
290,232); ``Karaali2022Net`` 963,283 distinct parameters.

Dense evaluation
----------------
:func:`dense_logits` gives the logits of every edge pixel of an image without cutting patches: the
trunks run once over (tiles of) the padded image at stride 1, each stride-3 max-pool becomes a
stride-1 pool followed by convolutions dilated by 3, and the first head convolution is split by
input group (dilation 3 for the pooled branches, 1 for br15) and evaluated densely too; only the
rest of each head runs per edge pixel.  It computes the same numbers as the per-patch forward
(to float rounding; the tests compare them) with ~15x fewer operations at the edge density of RTF
image 01 (16 % of the pixels), ~40x faster there on a CPU.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .init import keras_init_

__all__ = ["BLUR_CLASSES", "EDGE_CLASSES", "PATCH", "BNet", "ENet", "F1Net", "Head", "Karaali2022Net",
           "Trunk15", "Trunk27", "Trunk41", "count_parameters", "crops", "dense_logits"]

#: Patch size and its half-width (the reflect padding of the image).
PATCH = 41
HALF = PATCH // 2
#: B-NET classes (disk radius 0.5 + 0.25 k px) and E-NET classes (0 pattern, 1 depth edge).
BLUR_CLASSES = 23
EDGE_CLASSES = 2
CHANNELS = 64


def _conv(cin: int, cout: int = CHANNELS, k: int = 3) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, bias=False)


def crops(p41: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(P27, P15)`` = ``P41[..., 8:35, 8:35]``, ``P41[..., 14:29, 14:29]`` of a ``(N, 3, 41, 41)`` batch."""
    return p41[..., 8:35, 8:35], p41[..., 14:29, 14:29]


class Trunk41(nn.Module):
    """br41 / f2-NET: conv3 . maxpool3/3 . conv3 x3 on P41 -> ``(N, 64, 7, 7)``."""

    def __init__(self):
        super().__init__()
        self.conv1, self.conv2, self.conv3, self.conv4 = _conv(3), _conv(CHANNELS), _conv(CHANNELS), _conv(CHANNELS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 3, 3)
        return F.relu(self.conv4(F.relu(self.conv3(F.relu(self.conv2(x))))))


class Trunk27(nn.Module):
    """br27: conv3 x3 . maxpool3/3 . conv1 on P27 -> ``(N, 64, 7, 7)``."""

    def __init__(self):
        super().__init__()
        self.conv1, self.conv2, self.conv3 = _conv(3), _conv(CHANNELS), _conv(CHANNELS)
        self.conv4 = _conv(CHANNELS, k=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv3(F.relu(self.conv2(F.relu(self.conv1(x))))))
        return F.relu(self.conv4(F.max_pool2d(x, 3, 3)))


class Trunk15(nn.Module):
    """br15: conv3 x4 on P15 -> ``(N, 64, 7, 7)``."""

    def __init__(self):
        super().__init__()
        self.conv1, self.conv2, self.conv3, self.conv4 = _conv(3), _conv(CHANNELS), _conv(CHANNELS), _conv(CHANNELS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv in (self.conv1, self.conv2, self.conv3, self.conv4):
            x = F.relu(conv(x))
        return x


class F1Net(nn.Module):
    """f1-NET: the three scale branches; ``forward(p41) -> (br41, br27, br15)``, each ``(N, 64, 7, 7)``."""

    def __init__(self):
        super().__init__()
        self.br41, self.br27, self.br15 = Trunk41(), Trunk27(), Trunk15()

    def forward(self, p41: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        p27, p15 = crops(p41)
        return self.br41(p41), self.br27(p27), self.br15(p15)


class Head(nn.Module):
    """b-NET / e-NET + classifier: conv3 ``cin``->64 (7->5) . conv3 (3) . conv3 (1) . conv1 -> FC 300
    . FC 150 . FC ``classes`` (logits)."""

    def __init__(self, cin: int, classes: int):
        super().__init__()
        self.conv1, self.conv2, self.conv3 = _conv(cin), _conv(CHANNELS), _conv(CHANNELS)
        self.conv4 = _conv(CHANNELS, k=1)
        self.fc1, self.fc2, self.fc3 = nn.Linear(CHANNELS, 300), nn.Linear(300, 150), nn.Linear(150, classes)

    def tail(self, x: torch.Tensor) -> torch.Tensor:
        """Everything after ``relu(conv1)``: ``(N, 64, 5, 5)`` -> logits."""
        x = F.relu(self.conv4(F.relu(self.conv3(F.relu(self.conv2(x))))))
        x = torch.flatten(x, 1)
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.tail(F.relu(self.conv1(x)))


class BNet(nn.Module):
    """B-NET: ``forward(p41)`` with ``p41`` ``(N, 3, 41, 41)`` RGB in [0, 1] -> logits ``(N, 23)``."""

    def __init__(self, *, seed: int = 0):
        super().__init__()
        self.f1 = F1Net()
        self.head = Head(3 * CHANNELS, BLUR_CLASSES)
        keras_init_(self, seed)

    def forward(self, p41: torch.Tensor) -> torch.Tensor:
        return self.head(torch.cat(self.f1(p41), dim=1))


class ENet(nn.Module):
    """E-NET: ``forward(p41)`` -> logits ``(N, 2)`` (0 pattern edge, 1 depth edge); concat order
    ``[f2, br41, br27, br15]``."""

    def __init__(self, *, seed: int = 0):
        super().__init__()
        self.f1 = F1Net()
        self.f2 = Trunk41()
        self.head = Head(4 * CHANNELS, EDGE_CLASSES)
        keras_init_(self, seed)

    def forward(self, p41: torch.Tensor) -> torch.Tensor:
        return self.head(torch.cat([self.f2(p41), *self.f1(p41)], dim=1))


class Karaali2022Net(nn.Module):
    """Both networks with one shared f1 (``enet.f1 is bnet.f1``); ``forward(p41) -> (blur_logits
    (N, 23), edge_logits (N, 2))`` computes f1 once.  ``seed`` draws B-NET; E-NET's own layers are
    drawn with ``seed + 1``."""

    def __init__(self, *, seed: int = 0):
        super().__init__()
        self.bnet = BNet(seed=seed)
        self.enet = ENet(seed=seed + 1)
        self.enet.f1 = self.bnet.f1

    def forward(self, p41: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.bnet.f1(p41)
        blur = self.bnet.head(torch.cat(f, dim=1))
        edge = self.enet.head(torch.cat([self.enet.f2(p41), *f], dim=1))
        return blur, edge


def count_parameters(model: nn.Module) -> int:
    """Distinct parameters (a shared module counted once)."""
    return sum(p.numel() for p in model.parameters())


# ---------------------------------------------------------------------------------------------
# dense evaluation over an image
# ---------------------------------------------------------------------------------------------
#
# Coordinates: a map ``m`` computed from rows ``[a, ...)`` of the padded image carries the padded
# coordinate of the centre of its row 0 (``origin``).  For an edge pixel at padded position ``c``
# the per-patch networks read (derivation in the module docstring of methods/karaali2022.py):
#   br41, f2 final 7x7 grid : c + 3 (n - 3)          (pooled: spacing 3)
#   br27 final 7x7 grid     : c + 1 + 3 (n - 3)
#   br15 final 7x7 grid     : c + 1 + (n - 3)        (spacing 1)
#   head conv1 5x5 output i : pooled groups at c + 3 (i - 2), br15 group at c + 1 + (i - 2)

def _relu_conv(x, conv: nn.Conv2d, dilation: int = 1):
    return F.relu_(F.conv2d(x, conv.weight, dilation=dilation))


def _trunk41_dense(x, t: Trunk41):
    """Dense br41 / f2 over ``x``: origin + 11, size - 22 (valid), final maps at every position."""
    x = F.max_pool2d(_relu_conv(x, t.conv1), 3, 1)
    for conv in (t.conv2, t.conv3, t.conv4):
        x = _relu_conv(x, conv, 3)
    return x


def _trunk27_dense(x, t: Trunk27):
    """Dense br27: origin + 4, size - 8."""
    x = _relu_conv(_relu_conv(_relu_conv(x, t.conv1), t.conv2), t.conv3)
    return _relu_conv(F.max_pool2d(x, 3, 1), t.conv4)


def _trunk15_dense(x, t: Trunk15):
    """Dense br15: origin + 4, size - 8."""
    for conv in (t.conv1, t.conv2, t.conv3, t.conv4):
        x = _relu_conv(x, conv)
    return x


def _gather(m: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, step: int) -> torch.Tensor:
    """``(K, C, 5, 5)`` of the ``(1, C, H, W)`` map ``m`` at ``rows/cols + step * (-2..2)``."""
    k = torch.arange(-2, 3, device=m.device) * step
    r = (rows[:, None] + k)[:, :, None]
    c = (cols[:, None] + k)[:, None, :]
    hwc = m[0].permute(1, 2, 0)               # a view; channels-last memory makes it contiguous per pixel
    return hwc[r, c].permute(0, 3, 1, 2)


def dense_logits(net: Karaali2022Net, padded: torch.Tensor, ys: torch.Tensor, xs: torch.Tensor, *,
                 tile: int = 256, batch: int = 4096, channels_last: bool = True,
                 tails: Karaali2022Net | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits of both networks at the edge pixels ``(ys, xs)`` (original-image coordinates, int64)
    of an image reflect-padded by 20 px, ``padded`` ``(1, 3, H + 40, W + 40)`` in [0, 1] (the dtype
    of ``net``).

    The image is processed in ``tile x tile`` blocks of edge pixels (tiles without edge pixels are
    skipped, the others shrunk to the bounding box of their edge pixels), each with the 20-px halo
    the patches need; the head tails (all after the first head
    convolution) run ``batch`` edge pixels at a time, with the layers of ``tails`` (default
    ``net``; e.g. a float32 copy when ``net`` is bfloat16) in its dtype.  Returns ``(blur (K, 23),
    edge (K, 2))`` in the order of ``ys``, in the dtype of ``tails``.
    """
    wp = padded.shape[3]
    w = wp - 2 * HALF
    n = ys.numel()
    tails = net if tails is None else tails
    out_dtype = tails.bnet.head.fc3.weight.dtype
    blur = torch.empty((n, BLUR_CLASSES), dtype=out_dtype, device=padded.device)
    edge = torch.empty((n, EDGE_CLASSES), dtype=out_dtype, device=padded.device)
    f1, f2 = net.bnet.f1, net.enet.f2
    bh, eh = tails.bnet.head, tails.enet.head
    wb, we = net.bnet.head.conv1.weight, net.enet.head.conv1.weight
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    ty, tx = torch.div(ys, tile, rounding_mode="floor"), torch.div(xs, tile, rounding_mode="floor")
    tiles_x = (w + tile - 1) // tile
    tile_id = ty * tiles_x + tx
    for t in torch.unique(tile_id).tolist():
        idx = torch.nonzero(tile_id == t).flatten()
        ty_, tx_ = ys[idx], xs[idx]              # the tile's block shrunk to the bounding box of its edge pixels
        y0, y1 = int(ty_.min()), int(ty_.max()) + 1
        x0, x1 = int(tx_.min()), int(tx_.max()) + 1

        def crop(a, b, y0=y0, y1=y1, x0=x0, x1=x1):   # padded rows/cols [y0 + a, y1 + b)
            return padded[:, :, y0 + a:y1 + b, x0 + a:x1 + b].contiguous(memory_format=fmt)

        # pooled group (spacing 3): br41, f2 from padded [y0, y1 + 40) -> origin y0 + 11, size th + 18
        b41 = _trunk41_dense(crop(0, 40), f1.br41)
        g2 = _trunk41_dense(crop(0, 40), f2)
        # br27 needed at c + 1 + 3k: padded [y0 + 12, y1 + 30); from input [y0 + 8, y1 + 34) -> origin y0 + 12
        b27 = _trunk27_dense(crop(8, 34), f1.br27)
        # br15 needed (for the head's dilation-1 conv) at padded [y0 + 18, y1 + 24): input [y0 + 14, y1 + 28)
        b15 = _trunk15_dense(crop(14, 28), f1.br15)
        # br27 aligned with br41: br41 index i <-> padded y0 + 11 + i <-> br27 at padded + 1 = its index i
        pooled = torch.cat([b41, b27], dim=1)
        del b41, b27
        # head conv1, pooled part (dilation 3): index j centred at padded y0 + 14 + j
        a_b = F.conv2d(pooled, wb[:, :2 * CHANNELS], dilation=3)
        a_e = F.conv2d(g2, we[:, :CHANNELS], dilation=3).add_(F.conv2d(pooled, we[:, CHANNELS:3 * CHANNELS], dilation=3))
        del pooled, g2
        # br15 part (dilation 1): index j centred at padded y0 + 19 + j
        s_b = F.conv2d(b15, wb[:, 2 * CHANNELS:])
        s_e = F.conv2d(b15, we[:, 3 * CHANNELS:])
        del b15
        for start in range(0, idx.numel(), batch):
            sel = idx[start:start + batch]
            cy, cx = ys[sel] + HALF, xs[sel] + HALF          # padded coordinates
            ry, rx = cy - (y0 + 14), cx - (x0 + 14)
            qy, qx = cy + 1 - (y0 + 19), cx + 1 - (x0 + 19)
            zb = F.relu(_gather(a_b, ry, rx, 3) + _gather(s_b, qy, qx, 1))
            ze = F.relu(_gather(a_e, ry, rx, 3) + _gather(s_e, qy, qx, 1))
            blur[sel] = bh.tail(zb.to(out_dtype).contiguous(memory_format=fmt))
            edge[sel] = eh.tail(ze.to(out_dtype).contiguous(memory_format=fmt))
    return blur, edge
