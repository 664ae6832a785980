"""Precise BN (``finetune.precise_bn``): the BatchNorm statistics it leaves are the images'
own, computed independently from the activations each BatchNorm layer receives.

Tolerances: float64 throughout. The reference takes the mean and unbiased variance of each
layer's input over the same images in one batch, as BatchNorm does, in another summation
order: a mean of n terms is within ``sum_rtol(n)`` of it relative to the mean magnitude,
a variance (a sum of n squared deviations) within ``sum_rtol(n)`` of the mean square, plus
the mean's own error entering squared."""

import numpy as np
import pytest
import tolerances as tol
import torch
from torch import nn

from ilmoco.training.batchnorm import PRECISE_BN_IMAGES, precise_bn


def net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 2)).double()


def bn_inputs(model: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """What each BatchNorm layer receives in a train-mode forward of ``x`` as one batch."""
    seen, hooks = [], [m.register_forward_hook(lambda m, i, o: seen.append(i[0].detach()))
                       for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    model.train()
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return seen


@pytest.mark.parametrize("n,batch_size", [(200, 256), (3000, PRECISE_BN_IMAGES)])
def test_precise_bn_leaves_the_statistics_of_the_images(n, batch_size):
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (n, 3, 8, 8), dtype=np.uint8)
    model = net()
    for m in model.modules():  # stale statistics, as training leaves them
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.fill_(5.0)
            m.running_var.fill_(0.01)
    model.eval()
    precise_bn(model, images, "cpu", batch_size=batch_size)
    assert not model.training  # its mode kept
    # at most PRECISE_BN_IMAGES, evenly spaced: here one batch of them
    pick = np.linspace(0, n - 1, min(n, PRECISE_BN_IMAGES)).round().astype(int)
    x = torch.from_numpy(images[pick]).double() / 255
    layers = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    for bn, a in zip(layers, bn_inputs(model, x)):
        k = a.shape[0] * a.shape[2] * a.shape[3]  # terms of each channel's sums
        mean = a.mean(dim=(0, 2, 3))
        var = a.var(dim=(0, 2, 3), unbiased=True)
        mag = a.abs().mean(dim=(0, 2, 3))
        sq = (a ** 2).mean(dim=(0, 2, 3))
        rtol = tol.sum_rtol(k, torch.float64)
        assert torch.all((bn.running_mean - mean).abs() <= rtol * mag)
        assert torch.all((bn.running_var - var).abs() <= 2 * rtol * sq + (rtol * mag) ** 2)
    # the statistics, not a blend with the stale ones: far from 5.0 / 0.01
    assert layers[0].running_mean.abs().max() < 5.0 and layers[0].running_var.min() > 0.01
