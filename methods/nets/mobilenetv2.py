"""MobileNetV2 as in Keras applications (the variant Galetto & Deng 2022 trained), written here.

Architecture (``alpha = 1.0``, ``include_top=True``, ``weights=None``, input ``32 x 32 x 1``)
------------------------------------------------------------------------------------------------
* ``Conv1``: 3x3 conv, stride 2, ``in_channels -> 32``, no bias, BN, ReLU6.
* Inverted-residual blocks, table ``(t, c, n, s)`` (expansion, output channels, repeats, first
  stride)::

      (1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
      (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)

  Each block: [1x1 expand conv + BN + ReLU6, absent when ``t == 1``] -> 3x3 depthwise conv
  (stride ``s`` for the first repeat, else 1) + BN + ReLU6 -> 1x1 linear projection + BN;
  identity shortcut when ``stride == 1`` and ``in == out`` channels.
* ``Conv_1``: 1x1 conv ``320 -> 1280`` + BN + ReLU6, global average pooling,
  ``Linear(1280, num_classes)`` with bias.  The module returns **logits**; Keras' final softmax
  belongs to the loss (cross-entropy) or to the caller.  No dropout (Keras has none).
* BatchNorm ``eps = 1e-3``; momentum ``0.01`` in PyTorch's convention by default, as decided in
  METHODS.md §5.2 (note: Keras applications' MobileNetV2 itself uses Keras momentum 0.999, i.e.
  PyTorch ``0.001``; pass ``bn_momentum=0.001`` for that).
* Total stride 32: a 32x32 input ends as a 1x1 feature map.

Padding of the stride-2 convolutions
------------------------------------
Keras pads a stride-2 3x3 conv asymmetrically: ``ZeroPadding2D(correct_pad)`` then a ``valid``
conv (or ``padding="same"``, which TensorFlow resolves the same way); on even sizes (all sizes met
at stride 2 with a 32x32 input are even: 32, 16, 8, 4, 2) that is 0 rows / columns before and 1
after, so output pixel ``i`` sees input rows ``2i .. 2i+2``.  PyTorch's ``padding=1`` is
symmetric: output ``i`` sees ``2i-1 .. 2i+1``.

* ``padding="symmetric"`` (the **default**): plain ``padding=1``.  The network is trained from
  scratch here, so either alignment is equally valid, and this one is ~15-20 % faster on CPU
  (Keras' explicit pad is a fill + copy of the largest expanded activations, 5 times per
  forward; measured in ``benchmarks/bench_galetto_map.py``).
* ``padding="keras"``: ``F.pad`` by Keras' ``correct_pad`` amounts, then an unpadded conv --
  Keras-exact, for importing Keras weights one to one.

Weights trained under one mode must be used under the same mode (it is in ``model.config``).

Initialisation
--------------
Keras defaults: every conv / depthwise conv / dense kernel Glorot-uniform (PyTorch's
``xavier_uniform_`` gives the same bound ``sqrt(6 / (fan_in + fan_out))``, including for
depthwise kernels, where the two frameworks swap fan-in and fan-out but their sum is the same),
biases zero, BN gamma 1, beta 0.  Drawn from a ``torch.Generator`` seeded with ``seed``, so the
initial weights depend only on ``seed``.

Parameter count (``in_channels=1``, 20 classes): 2,248,916 trainable parameters (+ 34,112 BN
running statistics as buffers), i.e. Keras' 3,504,872 trainable parameters for the 1000-class RGB
model minus the smaller top and the two missing input channels.
"""
from __future__ import annotations

import copy
from typing import Literal

import torch
from torch import nn
from torch.nn import functional as F

from .init import keras_init_

#: The inverted-residual table (expansion t, output channels c, repeats n, first stride s).
INVERTED_RESIDUAL_SETTING: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)

#: Trainable parameters of ``MobileNetV2(in_channels=1, num_classes=20, alpha=1.0)``.
N_PARAMS_GRAY_20 = 2_248_916

BN_EPS = 1e-3
BN_MOMENTUM = 0.01

Padding = Literal["keras", "symmetric"]


def _make_divisible(v: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Keras/TF rounding of channel counts to a multiple of ``divisor`` (never down by > 10 %)."""
    if min_value is None:
        min_value = divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


class ConvBN(nn.Module):
    """``Conv2d(bias=False) -> BatchNorm2d -> [ReLU6]``, with Keras' stride-2 padding option.

    After :func:`fold_batchnorm` the BN is an ``nn.Identity`` and the conv carries a bias.
    """

    def __init__(self, cin: int, cout: int, kernel_size: int, *, stride: int = 1,
                 groups: int = 1, act: bool = True, padding: Padding = "symmetric",
                 bn_eps: float = BN_EPS, bn_momentum: float = BN_MOMENTUM):
        super().__init__()
        # Keras-exact stride-2 3x3: zero-pad by correct_pad, then a valid conv
        self.keras_pad = bool(padding == "keras" and stride == 2 and kernel_size == 3)
        self.conv = nn.Conv2d(cin, cout, kernel_size, stride=stride,
                              padding=0 if self.keras_pad else kernel_size // 2,
                              groups=groups, bias=False)
        self.bn: nn.Module = nn.BatchNorm2d(cout, eps=bn_eps, momentum=bn_momentum)
        self.act: nn.Module = nn.ReLU6(inplace=True) if act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.keras_pad:
            # Keras correct_pad: (0, 1) on an even size, (1, 1) on an odd one
            h, w = x.shape[-2:]
            x = F.pad(x, (w % 2, 1, h % 2, 1))
        return self.act(self.bn(self.conv(x)))


class InvertedResidual(nn.Module):
    """MobileNetV2 block: [1x1 expand] -> 3x3 depthwise -> 1x1 linear projection (+ shortcut)."""

    def __init__(self, cin: int, cout: int, *, stride: int, expansion: int,
                 padding: Padding = "symmetric", bn_eps: float = BN_EPS,
                 bn_momentum: float = BN_MOMENTUM):
        super().__init__()
        kw = {"padding": padding, "bn_eps": bn_eps, "bn_momentum": bn_momentum}
        hidden = cin * expansion
        layers: list[nn.Module] = []
        if expansion != 1:
            layers.append(ConvBN(cin, hidden, 1, **kw))
        layers.append(ConvBN(hidden, hidden, 3, stride=stride, groups=hidden, **kw))
        layers.append(ConvBN(hidden, cout, 1, act=False, **kw))
        self.block = nn.Sequential(*layers)
        self.use_res = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return x + y if self.use_res else y


class MobileNetV2(nn.Module):
    """Keras-applications MobileNetV2 (see the module docstring); returns logits ``(N, num_classes)``.

    Parameters
    ----------
    in_channels : int
        Input channels (Galetto: 1, gray in [0, 1]).
    num_classes : int
        Output classes (Galetto: 20, Gaussian sigma 0..19).
    alpha : float
        Width multiplier (Keras rounding of channels to multiples of 8; 1280 last channels for
        ``alpha <= 1``).
    padding : {"symmetric", "keras"}
        Padding of the stride-2 3x3 convolutions (module docstring; default symmetric).
    bn_eps, bn_momentum : float
        BatchNorm epsilon and PyTorch-convention momentum.
    seed : int
        Seed of the ``torch.Generator`` that draws the initial weights.
    """

    def __init__(self, *, in_channels: int = 1, num_classes: int = 20, alpha: float = 1.0,
                 padding: Padding = "symmetric", bn_eps: float = BN_EPS,
                 bn_momentum: float = BN_MOMENTUM, seed: int = 0):
        super().__init__()
        if padding not in ("keras", "symmetric"):
            raise ValueError(f"padding must be 'keras' or 'symmetric', got {padding!r}")
        self.config = {"in_channels": in_channels, "num_classes": num_classes, "alpha": alpha,
                       "padding": padding, "bn_eps": bn_eps, "bn_momentum": bn_momentum}
        kw = {"padding": padding, "bn_eps": bn_eps, "bn_momentum": bn_momentum}
        cin = _make_divisible(32 * alpha, 8)
        layers: list[nn.Module] = [ConvBN(in_channels, cin, 3, stride=2, **kw)]
        for t, c, n, s in INVERTED_RESIDUAL_SETTING:
            cout = _make_divisible(int(c * alpha), 8)
            for i in range(n):
                layers.append(InvertedResidual(cin, cout, stride=s if i == 0 else 1,
                                               expansion=t, **kw))
                cin = cout
        last = _make_divisible(1280 * alpha, 8) if alpha > 1.0 else 1280
        layers.append(ConvBN(cin, last, 1, **kw))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(last, num_classes)
        self.reset_parameters(seed)

    def reset_parameters(self, seed: int = 0) -> None:
        """Keras default initialisation drawn from ``torch.Generator().manual_seed(seed)`` (:func:`keras_init_`)."""
        keras_init_(self, seed)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        return self.classifier(x)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters (BN running statistics, being buffers, are not counted)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@torch.no_grad()
def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Eval-mode deep copy of ``model`` with every :class:`ConvBN`'s BN folded into its conv.

    With running mean ``mu``, variance ``var``, scale ``gamma``, shift ``beta`` and ``eps``:
    ``W' = W * gamma / sqrt(var + eps)`` (per output channel), ``b' = beta + (b - mu) * gamma /
    sqrt(var + eps)``; the BN becomes ``nn.Identity``.  The result equals ``model.eval()`` up to
    float rounding (~1e-6 relative) and is the inference path.  ``model`` is not modified.
    """
    folded = copy.deepcopy(model).eval()
    for m in folded.modules():
        if isinstance(m, ConvBN) and isinstance(m.bn, nn.BatchNorm2d):
            conv, bn = m.conv, m.bn
            w = conv.weight.double()
            scale = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
            b = conv.bias.double() if conv.bias is not None else torch.zeros_like(scale)
            new = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size,
                            stride=conv.stride, padding=conv.padding, groups=conv.groups,
                            bias=True).to(device=conv.weight.device)
            new.weight.copy_((w * scale.view(-1, 1, 1, 1)).to(conv.weight.dtype))
            new.bias.copy_((bn.bias.double() + (b - bn.running_mean.double()) * scale)
                           .to(conv.weight.dtype))
            m.conv = new.eval()
            m.bn = nn.Identity()
    for p in folded.parameters():
        p.requires_grad_(False)
    return folded
