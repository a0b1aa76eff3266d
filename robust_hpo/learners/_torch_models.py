"""Network architectures, all ``nn.Sequential`` taking images (n, C, H, W) in [0, 1] to k logits.

=========  ================================================================  ====================
name       layers                                                            width means
=========  ================================================================  ====================
mlp        Flatten → [Linear(·, width) → ReLU] × depth → Linear(width, k)    hidden units
cnn        Conv3×3(C, w) → ReLU → MaxPool2 → Conv3×3(w, 2w) → ReLU →         channels w of the
           AdaptiveAvgPool(2) → Flatten → Linear(8w, k)                      first convolution
resnet18,  ImageNet normalisation → torchvision ResNet without its fc →      hidden units of the
resnet50   Linear(·, width) → ReLU → Linear(width, k)                        new head
=========  ================================================================  ====================

Being ``nn.Sequential`` lets the influence slope hold all but the last layers fixed
(``last_layers``). The ResNet head has a hidden layer so that ``width`` is a hyperparameter for
fine-tuning too (the paper replaced ``fc`` only; the trunk is the same).
"""

from __future__ import annotations

from typing import Literal

import torch
import torchvision
from torch import nn

from robust_hpo.datasets.pretrained import pretrained_state_dict
from robust_hpo.errors import ValidationError, WeightsUnavailableError

Architecture = Literal["mlp", "cnn", "resnet18", "resnet50"]
ARCHITECTURES: tuple[str, ...] = ("mlp", "cnn", "resnet18", "resnet50")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ImageNetNormalize(nn.Module):
    """[0, 1] images → ImageNet-normalised 3-channel images (grayscale is repeated to 3 channels)."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        return (x - self.mean) / self.std


def build_network(architecture: str, *, input_shape: tuple[int, int, int], width: int, n_classes: int,
                  depth: int = 1, pretrained: bool = False) -> nn.Sequential:
    """A fresh network (initialised from torch's global RNG: seed it before calling).

    ``input_shape`` = (C, H, W). ``pretrained`` (ResNets only) loads ``ResNet18_Weights.DEFAULT`` /
    ``ResNet50_Weights.DEFAULT`` from torchvision's cache or the internet; ``RuntimeError`` if that
    fails (offline: put the file in ``torch.hub.get_dir()/checkpoints``).
    """
    if architecture not in ARCHITECTURES:
        raise ValidationError(f"architecture must be one of {list(ARCHITECTURES)}, got {architecture!r}")
    channels, height, width_px = input_shape
    if architecture == "mlp":
        layers: list[nn.Module] = [nn.Flatten()]
        size = channels * height * width_px
        for _ in range(depth):
            layers += [nn.Linear(size, width), nn.ReLU()]
            size = width
        return nn.Sequential(*layers, nn.Linear(size, n_classes))
    if architecture == "cnn":
        return nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
            nn.Flatten(), nn.Linear(8 * width, n_classes),
        )
    if channels not in (1, 3):
        raise ValidationError(f"input_shape must have 1 or 3 channels for {architecture}, got {channels}")
    trunk = _resnet(architecture, pretrained)
    features = trunk.fc.in_features
    trunk.fc = nn.Identity()
    return nn.Sequential(ImageNetNormalize(), trunk, nn.Linear(features, width), nn.ReLU(),
                         nn.Linear(width, n_classes))


def _resnet(architecture: str, pretrained: bool) -> torchvision.models.ResNet:
    if architecture == "resnet18":
        weights = torchvision.models.ResNet18_Weights.DEFAULT if pretrained else None
        build = torchvision.models.resnet18
    else:
        weights = torchvision.models.ResNet50_Weights.DEFAULT if pretrained else None
        build = torchvision.models.resnet50
    net = build(weights=None)
    if weights is None:
        return net
    try:  # read with weights_only=True: a planted checkpoint cannot run code (DataFileError instead)
        state = pretrained_state_dict(weights, progress=True)
    except WeightsUnavailableError as exc:
        raise WeightsUnavailableError(
            f"could not load the pretrained weights {weights} ({exc}); without internet, download "
            f"{weights.url} into {torch.hub.get_dir()}/checkpoints/ or set pretrained = false"
        ) from exc
    net.load_state_dict(state)
    return net
