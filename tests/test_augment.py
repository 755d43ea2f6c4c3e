"""Batched SimCLR augmentations and watermark rotations."""

from __future__ import annotations

import torch

from sslsteal.data.augment import AUGMENTATIONS, SimCLRAugment, rotate, to_float, watermark_views


def _images(n: int = 16) -> torch.Tensor:
    return to_float(torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8))


def test_simclr_views_shape_range_and_randomness() -> None:
    x = _images()
    aug = SimCLRAugment()
    a, b = aug(x), aug(x)
    assert a.shape == x.shape and a.dtype == torch.float32
    assert a.min() >= 0 and a.max() <= 1
    assert not torch.allclose(a, b)


def test_generator_makes_views_reproducible() -> None:
    x = _images()
    aug = SimCLRAugment()
    a = aug(x, torch.Generator().manual_seed(3))
    b = aug(x, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


def test_identity_settings_leave_images_unchanged() -> None:
    x = _images()
    ident = SimCLRAugment(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip_p=0.0, jitter_p=0.0, grayscale_p=0.0)
    assert torch.allclose(ident(x), x, atol=1e-5)


def test_flip_only_mirrors() -> None:
    x = _images(4)
    flip = SimCLRAugment(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip_p=1.0, jitter_p=0.0, grayscale_p=0.0)
    assert torch.allclose(flip(x), x.flip(-1), atol=1e-5)


def test_grayscale_always_gives_equal_channels() -> None:
    grey = SimCLRAugment(crop_scale=(1.0, 1.0), jitter_p=0.0, grayscale_p=1.0)(_images())
    assert torch.allclose(grey[:, 0], grey[:, 1]) and torch.allclose(grey[:, 1], grey[:, 2])


def test_rotation() -> None:
    x = _images(3)
    assert torch.allclose(rotate(x, torch.zeros(3)), x, atol=1e-5)
    half = rotate(x, torch.full((3,), 180.0))
    assert torch.allclose(half, x.flip(-1).flip(-2), atol=1e-4)
    quarter = rotate(x, torch.full((3,), 90.0))
    assert torch.allclose(rotate(quarter, torch.full((3,), -90.0)), x, atol=1e-4)


def test_watermark_views_pair_each_image_with_both_intervals() -> None:
    views, labels = watermark_views(_images(5), torch.Generator().manual_seed(0))
    assert views.shape == (10, 3, 32, 32)
    assert labels.tolist() == [0] * 5 + [1] * 5


def test_registry_names() -> None:
    assert set(AUGMENTATIONS) == {"none", "weak", "simclr"} and AUGMENTATIONS["none"] is None


def test_blur_keeps_flat_images_smooths_noise_and_p_zero_is_identity() -> None:
    from sslsteal.data.augment import random_blur

    flat = torch.full((2, 3, 16, 16), 0.3)
    assert torch.allclose(random_blur(flat, 1.0), flat)
    noise = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    assert random_blur(noise, 1.0).var() < noise.var() / 2 and torch.equal(random_blur(noise, 0.0), noise)


def test_solarize_inverts_the_pixels_at_or_above_the_threshold() -> None:
    from sslsteal.data.augment import random_solarize

    x = torch.tensor([0.2, 0.5, 0.9]).view(1, 1, 1, 3)
    assert torch.allclose(random_solarize(x, 1.0).flatten(), torch.tensor([0.2, 0.5, 0.1]))
    assert torch.equal(random_solarize(x, 0.0), x)
