"""The EfficientNet-Lite0 written here loads the shipped ImageNet weights and classifies."""
import cv2
import numpy as np
import pytest
import torch

skdata = pytest.importorskip("skimage.data")

from edgead.models.efficientnet_lite import INPUT_MEAN, INPUT_STD, TAP_CHANNELS, efficientnet_lite0


@pytest.fixture(scope="module")
def net():
    return efficientnet_lite0(pretrained=True)


def top5(net, rgb):
    x = cv2.resize(rgb, (224, 224), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    x = (x - np.float32(INPUT_MEAN)) / np.float32(INPUT_STD)
    with torch.no_grad():
        logits = net(torch.from_numpy(x.transpose(2, 0, 1)[None].copy()))
    return logits[0].topk(5).indices.tolist()


def test_weights_load_strictly_with_expected_size(net):
    n = sum(p.numel() for p in net.state_dict().values())
    assert n == 4_694_073  # parameters + BN buffers of efficientnet-lite0-57934424.pth


def test_chelsea_is_a_cat(net):
    assert any(281 <= c <= 285 for c in top5(net, skdata.chelsea()))


def test_coffee_is_espresso_or_cup(net):
    # 967 espresso, 968 cup, 504 coffee mug
    assert top5(net, skdata.coffee())[0] in (967, 968, 504)


def test_feature_taps_strides_and_channels(net):
    x = torch.zeros(1, 3, 256, 192)
    f4, f8, f16 = net.features(x, (4, 8, 16))
    assert f4.shape == (1, TAP_CHANNELS[4], 64, 48)
    assert f8.shape == (1, TAP_CHANNELS[8], 32, 24)
    assert f16.shape == (1, TAP_CHANNELS[16], 16, 12)
