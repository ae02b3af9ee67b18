"""Training recipes: one per learned method (what :func:`methods.training.train` runs).

A :class:`Recipe` says which corpus generator the method trains on, which fields it reads, how to
build the network, how a batch of stored samples becomes network input and targets, the loss, the
optimizer, and its *profiles* (named hyper-parameter sets):

* ``smoke``: seconds (tests): a few hundred samples, 2 epochs;
* ``cpu``: what fits the 2-core development machine in about an hour (10 epochs of 96k samples);
* ``full``: the paper's schedule (for a GPU).

Any profile value can be overridden (``bench train ... --set epochs=5``); the overridden values
enter the recipe hash, so ``--resume`` refuses a checkpoint made with other values.

Imports: torch and numpy only (this module runs on GPU machines without the rest of the stack).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn import functional as F


@dataclass(frozen=True)
class Recipe:
    """How to train one learned method.

    Attributes
    ----------
    method, version : str
        The method name (as in ``methods.list_methods()``) and the recipe's version.
    generator : str
        The corpus generator the method needs (the corpus attribute ``generator``).
    fields : tuple of str
        Corpus fields read (input first, target second).
    arch : dict
        Keyword arguments of ``make_model`` (recorded in the model card).
    make_model : callable ``(seed=int, **arch) -> nn.Module``
    batch : callable ``(inputs, targets) -> (x, y)`` or None
        Stored arrays (as tensors, on the training device) to network input and loss target
        (classification; a recipe with its own ``data`` adapter builds batches there).
    loss : callable ``(logits, y) -> scalar tensor``
    optimizer : callable ``(params, hp) -> torch.optim.Optimizer``
    profiles : dict of dict
        ``epochs``, ``batch_size``, ``lr``, ``train_samples`` (per epoch, a seeded subset; ``None`` =
        the whole split), ``val_samples`` (a fixed seeded subset; ``None`` = all), plus what
        ``optimizer`` reads.
    """

    method: str
    version: str
    generator: str
    fields: tuple[str, str]
    arch: dict
    make_model: Callable[..., nn.Module]
    batch: Callable | None
    loss: Callable
    optimizer: Callable
    profiles: dict = field(default_factory=dict)
    #: A stage that starts from another run's weights: ``(what they are, loader)``; the loader
    #: ``(model, state_dict) -> None`` copies what it needs and freezes it (``requires_grad=False``;
    #: the optimizer gets the other parameters only).  ``bench train ... --init FILE``.
    init: tuple[str, Callable] | None = None
    #: What a sample is (:data:`methods.training_data.KINDS`): ``"labelled"`` (classification: the two
    #: ``fields`` through ``batch``) or ``"restoration"`` (image + blur map -> sharp image).
    data: str = "labelled"

    def hparams(self, profile: str, overrides: dict | None = None) -> dict:
        """The profile's hyper-parameters with ``overrides`` applied (unknown keys: ``KeyError``)."""
        if profile not in self.profiles:
            raise KeyError(f"unknown profile {profile!r} for {self.method}; known: {', '.join(self.profiles)}")
        hp = dict(self.profiles[profile])
        for key, value in (overrides or {}).items():
            if key not in hp:
                raise KeyError(f"unknown hyper-parameter {key!r} for {self.method}; known: {', '.join(sorted(hp))}")
            hp[key] = _checked(key, value, nullable=key in _NULLABLE)
        if hp.get("lr_schedule") == "step" and not {"lr_step_epochs", "lr_gamma"} <= set(hp):
            raise KeyError(f"lr_schedule step needs lr_step_epochs and lr_gamma, which {self.method}'s {profile} "
                           "profile does not have")
        return hp

    def fingerprint(self, profile: str, hp: dict, seed: int, *, init_sha256: str | None = None) -> str:
        """SHA-256 of what determines the trained weights besides the corpus (the init weights' sha256
        too, for a recipe with ``init``)."""
        what = {"method": self.method, "version": self.version, "arch": self.arch, "profile": profile,
                "hparams": hp, "seed": int(seed), "fields": list(self.fields)}
        if init_sha256 is not None:
            what["init_sha256"] = init_sha256
        blob = json.dumps(what, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()


#: Hyper-parameters where ``None`` means "all" (the whole split; ``crop``: whole images).
_NULLABLE = ("train_samples", "val_samples", "crop")
_INTEGER = ("epochs", "batch_size", "train_samples", "val_samples", "lr_step_epochs", "crop")
#: Integers that may be 0.
_NON_NEGATIVE = ("lr_epoch_offset",)
#: Hyper-parameters that name a choice (see :func:`methods.training.learning_rate` and
#: :class:`methods.training_data.RestorationPairs`).
_CHOICES = {"lr_schedule": ("constant", "cosine", "step"), "maps": ("gt", "dt,matting", "dt", "matting")}


def _checked(key: str, value, *, nullable: bool):
    """An override as the type the loop expects: positive int (counts) or positive float (rates);
    ``KeyError`` with one line otherwise (as for unknown keys)."""
    if value is None and nullable:
        return None
    if key in _CHOICES:
        if value not in _CHOICES[key]:
            raise KeyError(f"{key} must be one of {', '.join(_CHOICES[key])}, got {value!r}")
        return value
    if key in _NON_NEGATIVE:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise KeyError(f"{key} must be an integer >= 0, got {value!r}")
        return int(value)
    if key in _INTEGER:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise KeyError(f"{key} must be a positive integer{' or null' if nullable else ''}, got {value!r}")
        return int(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise KeyError(f"{key} must be a positive number, got {value!r}")
    return float(value)


# ----------------------------------------------------------------------------- galetto2022
def _galetto_model(*, seed: int = 0, **arch) -> nn.Module:
    from .nets.mobilenetv2 import MobileNetV2
    return MobileNetV2(seed=seed, **arch)


def gray_patches(images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 ``(B, H, W)`` patches -> float32 ``(B, 1, H, W)`` in [0, 1]; labels as int64."""
    return images.unsqueeze(1).to(torch.float32).div_(255.0), labels.to(torch.int64)


def _adam(params, hp: dict) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=hp["lr"], betas=(hp["beta1"], hp["beta2"]), eps=hp["eps"])


_ADAM = {"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8}

GALETTO2022 = Recipe(
    method="galetto2022",
    version="1",
    generator="gauss20",
    fields=("image", "label"),
    # BN momentum 0.1 (PyTorch's default), not METHODS.md's 0.01: with 0.01 the running statistics lag
    # so far behind early training that eval-mode accuracy stays at chance (measured on the cpu profile
    # after one 32k-sample epoch: val acc 5.0 % at 0.01 vs 18.0 % at 0.1, identical training steps)
    arch={"in_channels": 1, "num_classes": 20, "alpha": 1.0, "padding": "symmetric", "bn_eps": 1e-3,
          "bn_momentum": 0.1},
    make_model=_galetto_model,
    batch=gray_patches,
    loss=F.cross_entropy,
    optimizer=_adam,
    profiles={
        # seconds: the tests
        "smoke": {"epochs": 2, "batch_size": 32, "train_samples": 256, "val_samples": 128, **_ADAM,
                  "lr_schedule": "constant"},
        # ~1 h on 2 cores: 10 x 96k = 960k training samples (~0.9 passes over coco_imagenet_gauss20's
        # 1.07 M) at the 280-350 patches/s the loop reaches on this 2-core machine (the bare network:
        # ~410, benchmarks/bench_training.py), + 10 x 20k val; the shipped run took 61 min.  A cosine decay of
        # the learning rate (not the paper's constant rate) because 0.9 passes are far from converged
        # and a constant 1e-3 ends wherever its last noisy step leaves the weights.
        "cpu": {"epochs": 10, "batch_size": 128, "train_samples": 96_000, "val_samples": 20_000, **_ADAM,
                "lr_schedule": "cosine"},
        # the paper (METHODS.md §5.2): 100 epochs of the whole train split, batch 128, Adam 1e-3
        "full": {"epochs": 100, "batch_size": 128, "train_samples": None, "val_samples": None, **_ADAM,
                 "lr_schedule": "constant"},
    },
)

# ----------------------------------------------------------------------------- karaali2022 (B-NET, E-NET)
def _karaali_net(name: str, *, seed: int, channels_last: bool) -> nn.Module:
    from .nets import karaali_nets
    net = getattr(karaali_nets, name)(seed=seed)
    # NHWC: 3.3x the training throughput of NCHW on 2 CPU cores (307 vs 92 patches/s for B-NET)
    return net.to(memory_format=torch.channels_last) if channels_last else net


def _bnet(*, seed: int = 0, channels_last: bool = True, **arch) -> nn.Module:
    return _karaali_net("BNet", seed=seed, channels_last=channels_last)


def _enet(*, seed: int = 0, channels_last: bool = True, **arch) -> nn.Module:
    return _karaali_net("ENet", seed=seed, channels_last=channels_last)


def rgb_patches(images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 ``(B, H, W, 3)`` RGB patches -> float32 ``(B, 3, H, W)`` in [0, 1] (``/255``, no mean
    subtraction, as the Karaali nets expect), left in channels-last memory (the permuted layout);
    labels as int64."""
    return images.permute(0, 3, 1, 2).to(torch.float32).div_(255.0), labels.to(torch.int64)


def _frozen_f1_from_bnet(model: nn.Module, state: dict) -> None:
    """E-NET stage: copy B-NET's shared f1 trunks (keys ``f1.*`` of a BNet state dict, or ``bnet.f1.*``
    of a combined Karaali2022Net one) into ``model.f1`` and freeze them (METHODS.md 6.3)."""
    for prefix in ("f1.", "bnet.f1."):
        f1 = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        if f1:
            break
    else:
        raise ValueError("holds no f1 trunk weights (keys f1.* of a karaali2022_bnet run's model.pt)")
    model.f1.load_state_dict(f1)
    for p in model.f1.parameters():
        p.requires_grad_(False)


#: Adam of the Karaali nets (TF defaults; METHODS.md 6.3), the paper's lr steps.
_KARAALI_ADAM = {"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "lr_schedule": "step", "lr_gamma": 0.1}

KARAALI2022_BNET = Recipe(
    method="karaali2022_bnet",
    version="1",
    generator="disk23_edges",
    fields=("image", "label"),
    arch={"net": "BNet", "num_classes": 23, "patch": 41, "channels_last": True},
    make_model=_bnet,
    batch=rgb_patches,
    loss=F.cross_entropy,
    optimizer=_adam,
    profiles={
        "smoke": {"epochs": 2, "batch_size": 32, "train_samples": 256, "val_samples": 128, **_KARAALI_ADAM,
                  "lr_step_epochs": 10},
        # 8 epochs of 80k of coco_imagenet_disk23's 103k training patches (6.2 passes), lr 1e-3 divided by
        # 10 for the last two epochs: ~40 min on 2 cores (the loop: ~285 patches/s channels-last; the
        # shipped run: 40 min)
        "cpu": {"epochs": 8, "batch_size": 128, "train_samples": 80_000, "val_samples": 8_000, **_KARAALI_ADAM,
                "lr_step_epochs": 6},
        # the paper: 75 epochs, batch 256, Adam 1e-3 divided by 10 every 10 epochs
        "full": {"epochs": 75, "batch_size": 256, "train_samples": None, "val_samples": None, **_KARAALI_ADAM,
                 "lr_step_epochs": 10},
    },
)

KARAALI2022_ENET = Recipe(
    method="karaali2022_enet",
    version="1",
    generator="depth_edges",
    fields=("image", "label"),
    arch={"net": "ENet", "num_classes": 2, "patch": 41, "channels_last": True},
    make_model=_enet,
    batch=rgb_patches,
    loss=F.cross_entropy,
    optimizer=_adam,
    init=("the weights of a karaali2022_bnet run (model.pt): its f1 trunks are copied and frozen",
          _frozen_f1_from_bnet),
    profiles={
        "smoke": {"epochs": 2, "batch_size": 32, "train_samples": 256, "val_samples": 128, **_KARAALI_ADAM,
                  "lr_step_epochs": 5},
        # ~9 min on 2 cores: 6 epochs of 30k of sod_depth_edges' 46k training patches, lr / 10 for the last
        "cpu": {"epochs": 6, "batch_size": 128, "train_samples": 30_000, "val_samples": 6_000, **_KARAALI_ADAM,
                "lr_step_epochs": 5},
        # the paper: ~30 epochs, batch 256, Adam 1e-3 divided by 10 every 5 epochs, f1 frozen
        "full": {"epochs": 30, "batch_size": 256, "train_samples": None, "val_samples": None, **_KARAALI_ADAM,
                 "lr_step_epochs": 5},
    },
)

# ----------------------------------------------------------------------------- svbr2022 (SVBR-Net)
def ssim_loss(out: torch.Tensor, target: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """SVBR-Net's loss: :func:`methods.nets.ssim.ssim_loss` (imported when first used)."""
    from .nets.ssim import ssim_loss as loss
    return loss(out, target, reduction)


def _svbr_net(*, seed: int = 0, **arch) -> nn.Module:
    from .nets.svbr_net import SVBRNet
    return SVBRNet(seed=seed, **arch)


def _continue_from(model: nn.Module, state: dict) -> None:
    """Second stage: start from the whole network of the first (nothing frozen)."""
    model.load_state_dict(state)


#: Adam with Keras' defaults (the authors' TF code), lr / 10 every 20 epochs of the paper's 64.
_SVBR_ADAM = {"lr": 1e-3, "beta1": 0.9, "beta2": 0.999, "eps": 1e-7, "lr_schedule": "step", "lr_gamma": 0.1,
              "lr_step_epochs": 20}
_SVBR_SMOKE = {"epochs": 2, "batch_size": 4, "train_samples": 16, "val_samples": 4, "crop": 48, **_SVBR_ADAM}


_SVBR = Recipe(method="", version="1", generator="svpsf39", fields=("blurred", "sharp"),
               arch={"transpose_align": "symmetric"}, make_model=_svbr_net, batch=None, loss=ssim_loss,
               optimizer=_adam, data="restoration")

SVBR2022_GT = dataclasses.replace(_SVBR, method="svbr2022_gt", profiles={
    "smoke": {**_SVBR_SMOKE, "maps": "gt", "lr_epoch_offset": 0},
    # ~10 min on 2 idle cores (stage 1 of 2; see svbr2022): 6 epochs, each one random 64 x 64 crop of
    # every (photo, GT map) pair of the train split, at most 4,000 an epoch (coco_imagenet_svpsf39_small
    # --limit 120: 98 x 13 = 1,274 pairs, ~160 Adam steps an epoch; on a CPU, more small steps learn faster
    # than fewer 128-px ones, measured: val SSIM 0.54 after 250 steps of 128-px crops), lr / 10 for the
    # last epoch; val on 24 whole images
    "cpu": {"epochs": 6, "batch_size": 8, "train_samples": 4_000, "val_samples": 24, "crop": 64, "maps": "gt",
            **_SVBR_ADAM, "lr_step_epochs": 5, "lr_epoch_offset": 0},
    # the paper: 32 epochs on the GT maps, whole 360 x 340 images, batch 8 (--set epochs=64: "SVBR-Net GTB")
    "full": {"epochs": 32, "batch_size": 8, "train_samples": None, "val_samples": None, "crop": None,
             "maps": "gt", **_SVBR_ADAM, "lr_epoch_offset": 0},
})

SVBR2022 = dataclasses.replace(_SVBR, method="svbr2022", init=(
    "the weights of a svbr2022_gt run (model.pt): the whole network continues from them", _continue_from), profiles={
    "smoke": {**_SVBR_SMOKE, "maps": "dt,matting", "lr_epoch_offset": 0},
    # ~16 min on 2 idle cores (stage 2): 8 epochs of 64-px crops of every (photo, propagated map) pair, its
    # DT and its matting map (2 x 1,274 with --limit 120, ~320 Adam steps an epoch).  lr 1e-3, / 10 for the
    # last two epochs -- not the paper's 1e-4 of its second half: after stage 1's ~1,000 steps (~1 % of the
    # paper's, on 1/30 of its pixels) the network is far from converged (val SSIM still rising 0.01 per
    # epoch), and 1e-4 would mostly freeze it
    "cpu": {"epochs": 8, "batch_size": 8, "train_samples": 4_000, "val_samples": 24, "crop": 64,
            "maps": "dt,matting", **_SVBR_ADAM, "lr_step_epochs": 6, "lr_epoch_offset": 0},
    # the paper: 32 more epochs on the propagated maps; the lr schedule continues at epoch 32
    "full": {"epochs": 32, "batch_size": 8, "train_samples": None, "val_samples": None, "crop": None,
             "maps": "dt,matting", **_SVBR_ADAM, "lr_epoch_offset": 32},
})

RECIPES: dict[str, Recipe] = {r.method: r for r in (GALETTO2022, KARAALI2022_BNET, KARAALI2022_ENET, SVBR2022_GT,
                                                    SVBR2022)}


def get_recipe(method: str) -> Recipe:
    """The recipe of ``method`` (``KeyError`` with the known names otherwise)."""
    try:
        return RECIPES[method]
    except KeyError:
        raise KeyError(f"no training recipe for {method!r}; known: {', '.join(sorted(RECIPES))}") from None
