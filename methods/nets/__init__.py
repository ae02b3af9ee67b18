"""Networks written in this repository as plain :class:`torch.nn.Module` subclasses.

Importing this package does not import torch; import the submodule you need
(``from methods.nets.mobilenetv2 import MobileNetV2``), so that ``import methods`` stays light.
"""
