"""Per-sample random augmentation as batched tensor ops (runs on the GPU or the CPU).

torchvision's random transforms applied to a batch draw *one* parameter set for the whole
batch (pytorch/vision#2929); contrastive learning needs independent draws per image. Here
every image gets its own parameters, all applied in a handful of batched kernels:

* geometry: random-resized crop, horizontal/vertical flip and rotation folded into one
  affine matrix per image -> a single ``affine_grid`` + ``grid_sample`` (zeros outside);
* colour jitter with probability ``jitter_p``: brightness, contrast, saturation, hue as
  per-image factors, in that fixed order (torchvision shuffles the order per call);
* random grayscale;
* Gaussian blur with a per-image sigma as one grouped, separable convolution.

The operations equal torchvision's functional ops image by image (tested). Inputs are uint8
(N, C, H, W) from the cache; outputs are float in [0, 1].
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ilmoco.config.augment import PRESETS, AugmentSpec, preset  # noqa: F401 (re-exported)


class Draws:
    """Random draws for ``n`` images that are a slice ``[offset, offset + n)`` of draws for
    ``total`` images: a rank of a data-parallel run gets exactly the parameters its images
    would get in a single-process run of the whole batch."""

    def __init__(self, gen, n: int, device, total: int | None = None, offset: int = 0):
        self.gen, self.n, self.device = gen, n, device
        self.total, self.offset = total or n, offset

    def rand(self, *shape) -> torch.Tensor:
        r = torch.rand(self.total, *shape, generator=self.gen, device=self.device)
        return r[self.offset:self.offset + self.n]

    def uniform(self, lo, hi, *shape) -> torch.Tensor:
        return self.rand(*shape) * (hi - lo) + lo

    def bernoulli(self, p) -> torch.Tensor:
        return self.rand() < p


def crop_boxes(d: Draws, scale, ratio, attempts: int = 10):
    """torchvision RandomResizedCrop sampling, vectorised: (half_w, half_h, cx, cy) in [-1, 1]
    normalised units; falls back to the whole image when no attempt fits."""
    area = d.uniform(scale[0], scale[1], attempts)
    r = torch.exp(d.uniform(math.log(ratio[0]), math.log(ratio[1]), attempts))
    w, h = torch.sqrt(area * r), torch.sqrt(area / r)
    ok = (w <= 1) & (h <= 1)
    first = torch.argmax(ok.int(), dim=1)
    any_ok = ok.any(1)
    w = torch.where(any_ok, w.gather(1, first[:, None])[:, 0], torch.ones_like(w[:, 0]))
    h = torch.where(any_ok, h.gather(1, first[:, None])[:, 0], torch.ones_like(h[:, 0]))
    cx = (d.rand() * 2 - 1) * (1 - w)
    cy = (d.rand() * 2 - 1) * (1 - h)
    return w, h, cx, cy


def affine_matrices(spec: AugmentSpec, d: Draws) -> torch.Tensor | None:
    """theta (n, 2, 3) mapping output to input normalised coordinates, or None if identity."""
    if spec.crop_scale is None and not spec.hflip and not spec.vflip and not spec.rotation:
        return None
    one = torch.ones(d.n, device=d.device)
    if spec.crop_scale is not None:
        w, h, cx, cy = crop_boxes(d, spec.crop_scale, spec.crop_ratio)
    else:
        w, h, cx, cy = one, one, one * 0, one * 0
    fx = torch.where(d.bernoulli(spec.hflip), -one, one)
    fy = torch.where(d.bernoulli(spec.vflip), -one, one)
    ang = d.uniform(-spec.rotation, spec.rotation) * (math.pi / 180)
    cos, sin = torch.cos(ang), torch.sin(ang)
    # theta = S(crop half-extent) @ R(angle) @ F(flips), translation = crop centre
    return torch.stack([
        torch.stack([w * cos * fx, -w * sin * fy, cx], 1),
        torch.stack([h * sin * fx, h * cos * fy, cy], 1),
    ], 1)


def grayscale(x: torch.Tensor) -> torch.Tensor:
    """ITU-R 601-2 luma (torchvision's weights), keeping dims (N, 1, H, W)."""
    if x.shape[1] == 1:
        return x
    r, g, b = x[:, 0:1], x[:, 1:2], x[:, 2:3]
    return 0.2989 * r + 0.587 * g + 0.114 * b


def adjust_brightness(x, factor):
    return (x * factor.view(-1, 1, 1, 1)).clamp(0, 1)


def adjust_contrast(x, factor):
    mean = grayscale(x).mean(dim=(1, 2, 3), keepdim=True)
    f = factor.view(-1, 1, 1, 1)
    return (f * x + (1 - f) * mean).clamp(0, 1)


def adjust_saturation(x, factor):
    if x.shape[1] == 1:
        return x
    f = factor.view(-1, 1, 1, 1)
    return (f * x + (1 - f) * grayscale(x)).clamp(0, 1)


def rgb_to_hsv(x):
    r, g, b = x.unbind(1)
    maxc, _ = x.max(1)
    minc, _ = x.min(1)
    eqc = maxc == minc
    cr = maxc - minc
    ones = torch.ones_like(maxc)
    s = cr / torch.where(eqc, ones, maxc)
    cr_div = torch.where(eqc, ones, cr)
    rc, gc, bc = (maxc - r) / cr_div, (maxc - g) / cr_div, (maxc - b) / cr_div
    hr = (maxc == r) * (bc - gc)
    hg = ((maxc == g) & (maxc != r)) * (2.0 + rc - bc)
    hb = ((maxc != g) & (maxc != r)) * (4.0 + gc - rc)
    h = torch.fmod((hr + hg + hb) / 6.0 + 1.0, 1.0)
    return torch.stack((h, s, maxc), 1)


def hsv_to_rgb(x):
    h, s, v = x.unbind(1)
    i = torch.floor(h * 6.0)
    f = h * 6.0 - i
    i = i.to(torch.int64) % 6
    p = (v * (1.0 - s)).clamp(0, 1)
    q = (v * (1.0 - s * f)).clamp(0, 1)
    t = (v * (1.0 - s * (1.0 - f))).clamp(0, 1)
    r = torch.stack([v, q, p, p, t, v], 1).gather(1, i[:, None])
    g = torch.stack([t, v, v, q, p, p], 1).gather(1, i[:, None])
    b = torch.stack([p, p, t, v, v, q], 1).gather(1, i[:, None])
    return torch.cat([r, g, b], 1)


def adjust_hue(x, factor):
    if x.shape[1] == 1:
        return x
    hsv = rgb_to_hsv(x)
    h = torch.remainder(hsv[:, 0] + factor.view(-1, 1, 1), 1.0)
    return hsv_to_rgb(torch.stack([h, hsv[:, 1], hsv[:, 2]], 1))


def gaussian_kernels(sigma: torch.Tensor, ksize: int) -> torch.Tensor:
    """(n, ksize) normalised 1-D Gaussians, torchvision's definition; sigma <= 0 -> delta."""
    half = (ksize - 1) * 0.5
    xs = torch.linspace(-half, half, ksize, device=sigma.device, dtype=torch.float32)
    s = sigma.clamp_min(1e-6)[:, None].float()
    k = torch.exp(-0.5 * (xs[None] / s) ** 2)
    delta = torch.zeros_like(k)
    delta[:, ksize // 2] = 1
    k = torch.where((sigma > 0)[:, None], k / k.sum(1, keepdim=True), delta)
    return k


def blur(x: torch.Tensor, sigma: torch.Tensor, ksize: int) -> torch.Tensor:
    """Per-image separable Gaussian blur with reflect padding (sigma 0 = unchanged)."""
    n, c, h, w = x.shape
    k = gaussian_kernels(sigma, ksize).to(x.dtype).repeat_interleave(c, 0)  # (n*c, k)
    pad = ksize // 2
    y = x.reshape(1, n * c, h, w)
    y = F.pad(y, (pad, pad, pad, pad), mode="reflect")
    y = F.conv2d(y, k[:, None, None, :], groups=n * c)
    y = F.conv2d(y, k[:, None, :, None], groups=n * c)
    return y.reshape(n, c, h, w)


def blur_kernel_size(sigma_max: float, size: int) -> int:
    k = 2 * math.ceil(3 * sigma_max) + 1
    limit = size - 1 if size % 2 == 0 else size  # reflect padding needs pad < size
    return max(3, min(k, limit if limit % 2 == 1 else limit - 1))


@dataclass
class BatchAugment:
    """Callable batched augmentation on any device: ``aug(x_uint8, generator) -> [0, 1]``
    floats of ``dtype`` (float64 runs compare training dynamics exactly across processes)."""

    spec: AugmentSpec
    out_size: int
    dtype: torch.dtype = torch.float32
    ksize: int = field(init=False)

    def __post_init__(self):
        self.ksize = blur_kernel_size(self.spec.blur_sigma[1], self.out_size)

    def __call__(self, x: torch.Tensor, gen: torch.Generator | None = None,
                 total: int | None = None, offset: int = 0) -> torch.Tensor:
        """Augment ``x``; with ``total``/``offset`` the draws are that slice of a larger batch."""
        spec, dev = self.spec, x.device
        n = x.shape[0]
        d = Draws(gen, n, dev, total, offset)
        x = x.to(self.dtype).div_(255) if x.dtype == torch.uint8 else x.to(self.dtype)
        theta = affine_matrices(spec, d)
        if theta is not None or x.shape[-1] != self.out_size:
            if theta is None:
                theta = torch.eye(2, 3, device=dev).expand(n, 2, 3)
            grid = F.affine_grid(theta.to(x.dtype), (n, x.shape[1], self.out_size, self.out_size),
                                 align_corners=False)
            x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros",
                              align_corners=False)
        if spec.jitter is not None and spec.jitter_p > 0:
            on = d.bernoulli(spec.jitter_p)
            b, c, s, h = spec.jitter
            one = torch.ones(n, device=dev)
            if b:
                x = adjust_brightness(x, torch.where(on, d.uniform(max(0, 1 - b), 1 + b), one))
            if c:
                x = adjust_contrast(x, torch.where(on, d.uniform(max(0, 1 - c), 1 + c), one))
            if s and x.shape[1] == 3:
                x = adjust_saturation(x, torch.where(on, d.uniform(max(0, 1 - s), 1 + s), one))
            if h and x.shape[1] == 3:
                x = adjust_hue(x, torch.where(on, d.uniform(-h, h), one * 0))
        if spec.grayscale_p > 0 and x.shape[1] == 3:
            g = d.bernoulli(spec.grayscale_p).view(-1, 1, 1, 1)
            x = torch.where(g, grayscale(x).expand_as(x), x)
        if spec.blur_p > 0:
            on = d.bernoulli(spec.blur_p)
            sig = d.uniform(spec.blur_sigma[0], spec.blur_sigma[1])
            x = blur(x, torch.where(on, sig, torch.zeros_like(sig)), self.ksize)
        return x
