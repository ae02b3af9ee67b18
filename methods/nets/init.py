"""Seeded Keras-default initialisation shared by the networks written here (one definition)."""
from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def keras_init_(module: nn.Module, seed: int) -> None:
    """Keras' default initialisation, drawn from ``torch.Generator().manual_seed(seed)`` in module
    order: Glorot-uniform weights and zero biases for convolutions and linear layers, batch norm at
    identity (weight 1, bias 0, fresh running statistics).  The weights depend only on ``seed``."""
    g = torch.Generator().manual_seed(int(seed))
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            w = torch.empty(m.weight.shape, dtype=torch.float32)
            nn.init.xavier_uniform_(w, generator=g)
            m.weight.copy_(w)
            if m.bias is not None:
                m.bias.zero_()
        elif isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.weight.fill_(1.0)
            m.bias.zero_()
