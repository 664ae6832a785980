"""Batched per-sample augmentation against torchvision's functional ops, image by image."""

import pytest
import tolerances as tol
import torch
import torchvision.transforms.v2.functional as TF

from ilmoco.data.augment import (
    AugmentSpec,
    BatchAugment,
    adjust_brightness,
    adjust_contrast,
    adjust_hue,
    adjust_saturation,
    blur,
    grayscale,
    preset,
)

# grid_sample's two sample coordinates each pass ~8 float32 roundings at magnitudes <= 24 px
# (affine_grid, unnormalising): 8 * 24 * u = 1.1e-5 px each; a bilinear value of pixels in
# [0, 1] moves <= 1 per px in each coordinate.
GRID_ATOL = 2 * 8 * 24 * tol.unit_roundoff(torch.float32)


def images(n=4, c=3, size=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, c, size, size, generator=g)


@pytest.mark.parametrize("op,ref,factors", [
    (adjust_brightness, TF.adjust_brightness, [0.6, 1.0, 1.3, 0.9]),
    (adjust_contrast, TF.adjust_contrast, [0.6, 1.0, 1.4, 0.8]),
    (adjust_saturation, TF.adjust_saturation, [0.6, 1.0, 1.4, 0.0]),
    (adjust_hue, TF.adjust_hue, [-0.1, 0.0, 0.05, 0.1]),
])
def test_colour_ops_equal_torchvision_per_image(op, ref, factors):
    x = images()
    out = op(x, torch.tensor(factors))
    for i, f in enumerate(factors):
        # contrast: means of 576 values ~0.5 differ by <= 2 gamma_576 * 0.5 = 3.4e-5, times
        # |1 - f| <= 0.4; hue: ~10 roundings of h*6 <= 6, 10 * 6 * u = 3.6e-6; others <= 1e-6
        assert torch.allclose(out[i], ref(x[i], f), atol=2e-5), (op.__name__, f)


def test_contrast_on_grayscale_images():
    x = images(c=1)
    out = adjust_contrast(x, torch.tensor([0.5, 1.5, 1.0, 0.7]))
    for i, f in enumerate([0.5, 1.5, 1.0, 0.7]):
        # means of 576 values ~0.5 differ by <= 2 gamma_576 * 0.5 = 3.4e-5, times |1 - f| <= 0.5
        assert torch.allclose(out[i], TF.adjust_contrast(x[i], f), atol=2e-5)


def test_grayscale_equals_torchvision():
    x = images()
    g = grayscale(x)
    for i in range(len(x)):
        # luma <= 1 from 3 products and 2 sums on each side
        assert torch.allclose(g[i], TF.rgb_to_grayscale(x[i]), atol=tol.ops_rtol(5, torch.float32))


def test_blur_equals_torchvision_per_image():
    x = images(size=20)
    sigmas = torch.tensor([0.5, 1.2, 0.0, 2.0])
    out = blur(x, sigmas, ksize=9)
    for i, s in enumerate(sigmas.tolist()):
        expected = x[i] if s == 0 else TF.gaussian_blur(x[i], [9, 9], [s, s])
        # per side, 2 passes of 9 taps (weights sum to 1) over [0, 1]: the conv's gamma_9 plus the
        # kernel's (exp <= 1 ulp, normalising sum gamma_9) ~ 1.3e-6 a pass; two sides: 5e-6
        assert torch.allclose(out[i], expected, atol=1e-5)


def test_identity_spec_is_exact():
    x = (images() * 255).round().to(torch.uint8)
    out = BatchAugment(AugmentSpec(), 24)(x, torch.Generator().manual_seed(0))
    assert torch.equal(out, x.float() / 255)


def test_flips_equal_torch_flip():
    x = images()
    g = torch.Generator().manual_seed(0)
    h = BatchAugment(AugmentSpec(hflip=1.0), 24)(x, g)
    v = BatchAugment(AugmentSpec(vflip=1.0), 24)(x, g)
    assert torch.allclose(h, torch.flip(x, dims=[3]), atol=GRID_ATOL)  # see GRID_ATOL
    assert torch.allclose(v, torch.flip(x, dims=[2]), atol=GRID_ATOL)  # see GRID_ATOL


def test_rotation_matches_torchvision_rotate():
    """Our affine rotation equals torchvision.rotate (bilinear) at the angle we drew."""
    import math

    from ilmoco.data.augment import Draws, affine_matrices

    x = images(n=3)
    spec = AugmentSpec(rotation=40.0)
    g = torch.Generator().manual_seed(7)
    theta = affine_matrices(spec, Draws(g, 3, x.device))
    angles = [math.degrees(math.atan2(float(t[1, 0]), float(t[0, 0]))) for t in theta]
    out = BatchAugment(spec, 24)(x, torch.Generator().manual_seed(7))
    for i, a in enumerate(angles):
        ref = TF.rotate(x[i], a, interpolation=TF.InterpolationMode.BILINEAR)
        inner = (slice(None), slice(6, 18), slice(6, 18))  # corners differ only by fill
        # two grids, each within GRID_ATOL (cos, sin and the drawn angle stored to u)
        assert torch.allclose(out[i][inner], ref[inner], atol=2 * GRID_ATOL)


def test_crop_of_a_quadrant_is_exact():
    """A crop box covering exactly the top-left quadrant, resized to half size, samples
    pixel centres: the result is the quadrant itself."""
    x = images(n=1, size=16)
    theta = torch.tensor([[[0.5, 0.0, -0.5], [0.0, 0.5, -0.5]]])
    grid = torch.nn.functional.affine_grid(theta, (1, 3, 8, 8), align_corners=False)
    out = torch.nn.functional.grid_sample(x, grid, align_corners=False)
    # exact in exact arithmetic; affine_grid's linspace and the unnormalising round (GRID_ATOL)
    assert torch.allclose(out, x[:, :, :8, :8], atol=GRID_ATOL)


def test_per_sample_parameters_differ_across_the_batch():
    x = (images(n=1) * 255).to(torch.uint8).repeat(16, 1, 1, 1)  # 16 copies of one image
    for name in ("chest", "histo", "retina"):
        out = BatchAugment(preset(name, "ssl"), 24)(x, torch.Generator().manual_seed(0))
        flat = out.flatten(1)
        distinct = torch.cdist(flat, flat)[~torch.eye(16, dtype=torch.bool)]
        assert (distinct > 1e-3).float().mean() > 0.95, name  # torchvision would give 0
        assert out.min() >= 0 and out.max() <= 1


def test_two_views_differ_and_are_reproducible():
    x = (images(n=4) * 255).to(torch.uint8)
    aug = BatchAugment(preset("histo", "ssl"), 24)
    g = torch.Generator().manual_seed(5)
    v1, v2 = aug(x, g), aug(x, g)
    assert not torch.allclose(v1, v2)  # defaults (1e-5, 1e-8): other draws differ by up to ~1
    g = torch.Generator().manual_seed(5)
    assert torch.equal(aug(x, g), v1)


def test_rank_slice_equals_single_process_draws():
    x = (images(n=8) * 255).to(torch.uint8)
    aug = BatchAugment(preset("histo", "finetune"), 24)
    full = aug(x, torch.Generator().manual_seed(9))
    part = aug(x[4:], torch.Generator().manual_seed(9), total=8, offset=4)
    # draws equal; a smaller batch may reorder per-image sums: contrast's mean of 576 values
    # ~0.5 (2 gamma_576 * 0.5 = 3.4e-5, times |1 - f| <= 0.4) dominates the 9-tap blur sums
    assert torch.allclose(full[4:], part, atol=tol.sum_rtol(24 * 24, torch.float32))


def test_output_size_and_overrides():
    x = (images(n=2, size=32) * 255).to(torch.uint8)
    spec = preset("histo", "ssl", {"blur_sigma": [0.1, 0.5], "crop_scale": [0.5, 1.0]})
    assert spec.blur_sigma == (0.1, 0.5) and spec.crop_scale == (0.5, 1.0)
    assert BatchAugment(spec, 16)(x, torch.Generator()).shape == (2, 3, 16, 16)
    with pytest.raises(KeyError, match="unknown augmentation key"):
        preset("histo", "ssl", {"blurr": 1})
