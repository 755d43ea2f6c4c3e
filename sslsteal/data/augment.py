"""Batched image augmentations on tensors (CPU or GPU): SimCLR views and the watermark rotations.

One affine `grid_sample` does random-resized-crop and flip for the whole batch, and colour jitter is a few
per-sample tensor ops, so augmenting never dominates a small-CNN training step on CPU and runs on the GPU
when the batch lives there (see docs/RESULTS.md for the measured speeds against torchvision's per-image
transforms). Inputs and outputs are float images in [0, 1], shape (N, C, H, W).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

# RGB -> YIQ; hue rotation is a rotation of the (I, Q) chroma plane.
_RGB2YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
LUMA = torch.tensor([0.299, 0.587, 0.114])
"""ITU-R BT.601 luma weights (as PIL's convert("L")): RGB -> grey everywhere in the package."""


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float32 [0, 1]; float input is returned as float32."""
    if images.dtype == torch.uint8:
        return images.float().div_(255.0)
    return images.float()


@dataclass(frozen=True)
class SimCLRAugment:
    """SimCLR augmentation: random resized crop, horizontal flip, colour jitter (p), grayscale (p), and optionally
    Gaussian blur (p, sigma 0.1-2) and solarisation (p) as BYOL adds them (RDA's views use both).

    Jitter factors follow torchvision's ColorJitter (brightness, contrast, saturation as multiplicative
    factors in [1-s, 1+s], hue as a shift in [-h, h] turns) applied in a fixed order; hue rotates the YIQ
    chroma plane, which approximates HSV hue shift at a fraction of the cost.
    """

    crop_scale: tuple[float, float] = (0.2, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip_p: float = 0.5
    jitter_p: float = 0.8
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4
    hue: float = 0.1
    grayscale_p: float = 0.2
    blur_p: float = 0.0
    solarize_p: float = 0.0

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        x = resized_crop_flip(x, self.crop_scale, self.crop_ratio, self.flip_p, generator)
        if x.shape[1] == 3:
            x = color_jitter(x, self.jitter_p, self.brightness, self.contrast, self.saturation, self.hue, generator)
            x = random_grayscale(x, self.grayscale_p, generator)
        if self.blur_p > 0:
            x = random_blur(x, self.blur_p, generator)
        if self.solarize_p > 0:
            x = random_solarize(x, self.solarize_p, generator)
        return x


WEAK = SimCLRAugment(crop_scale=(0.6, 1.0), jitter_p=0.0, grayscale_p=0.0)
"""Crop and flip only: the attacker's cheap local augmentation."""

AUGMENTATIONS: dict[str, SimCLRAugment | None] = {"none": None, "weak": WEAK, "simclr": SimCLRAugment()}


def _uniform(n: int, low: float, high: float, device: torch.device, generator: torch.Generator | None) -> torch.Tensor:
    return torch.rand(n, device=device, generator=generator) * (high - low) + low


def resized_crop_flip(
    x: torch.Tensor,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    flip_p: float,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Per-sample random resized crop (area fraction in `scale`, aspect in `ratio`) and flip, one grid_sample."""
    n, dev = x.shape[0], x.device
    area = _uniform(n, *scale, dev, generator)
    log_r = _uniform(n, math.log(ratio[0]), math.log(ratio[1]), dev, generator)
    aspect = torch.exp(log_r)
    w = torch.sqrt(area * aspect).clamp(max=1.0)
    h = torch.sqrt(area / aspect).clamp(max=1.0)
    cx = (torch.rand(n, device=dev, generator=generator) * 2 - 1) * (1 - w)
    cy = (torch.rand(n, device=dev, generator=generator) * 2 - 1) * (1 - h)
    flip = torch.where(torch.rand(n, device=dev, generator=generator) < flip_p, -1.0, 1.0)
    theta = torch.zeros(n, 2, 3, device=dev)
    theta[:, 0, 0] = w * flip
    theta[:, 0, 2] = cx
    theta[:, 1, 1] = h
    theta[:, 1, 2] = cy
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def color_jitter(
    x: torch.Tensor,
    p: float,
    brightness: float,
    contrast: float,
    saturation: float,
    hue: float,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Brightness, contrast, saturation and hue jitter applied to a random subset (probability p) of the batch."""
    n, dev = x.shape[0], x.device
    apply = (torch.rand(n, device=dev, generator=generator) < p).view(n, 1, 1, 1)
    if not bool(apply.any()):
        return x
    grey_w = LUMA.to(dev).view(1, 3, 1, 1)
    out = x * _uniform(n, 1 - brightness, 1 + brightness, dev, generator).view(n, 1, 1, 1)
    out = out.clamp(0, 1)
    mean = (out * grey_w).sum(1, keepdim=True).mean((2, 3), keepdim=True)
    c = _uniform(n, 1 - contrast, 1 + contrast, dev, generator).view(n, 1, 1, 1)
    out = ((out - mean) * c + mean).clamp(0, 1)
    grey = (out * grey_w).sum(1, keepdim=True)
    s = _uniform(n, 1 - saturation, 1 + saturation, dev, generator).view(n, 1, 1, 1)
    out = ((out - grey) * s + grey).clamp(0, 1)
    if hue > 0:
        angle = _uniform(n, -hue, hue, dev, generator) * 2 * math.pi
        rot = torch.zeros(n, 3, 3, device=dev)
        rot[:, 0, 0] = 1
        rot[:, 1, 1] = torch.cos(angle)
        rot[:, 1, 2] = -torch.sin(angle)
        rot[:, 2, 1] = torch.sin(angle)
        rot[:, 2, 2] = torch.cos(angle)
        to_yiq = _RGB2YIQ.to(dev)
        mix = torch.linalg.inv(to_yiq) @ rot @ to_yiq  # (n, 3, 3) colour matrix per sample
        out = torch.einsum("nij,njhw->nihw", mix, out).clamp(0, 1)
    return torch.where(apply, out, x)


def random_grayscale(x: torch.Tensor, p: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Turn a random subset (probability p) of the batch grey, keeping three channels."""
    n = x.shape[0]
    apply = (torch.rand(n, device=x.device, generator=generator) < p).view(n, 1, 1, 1)
    grey = (x * LUMA.to(x.device).view(1, 3, 1, 1)).sum(1, keepdim=True).expand_as(x)
    return torch.where(apply, grey, x)


def random_blur(x: torch.Tensor, p: float, generator: torch.Generator | None = None, sigma: tuple[float, float] = (0.1, 2.0)) -> torch.Tensor:
    """Gaussian blur (a 5-tap separable kernel, sigma uniform in `sigma` per image) of a random subset (probability p)."""
    n, c, h, w = x.shape
    apply = (torch.rand(n, device=x.device, generator=generator) < p).view(n, 1, 1, 1)
    s = _uniform(n, *sigma, x.device, generator)
    taps = torch.arange(-2, 3, device=x.device, dtype=x.dtype)
    kernel = torch.exp(-(taps.view(1, -1) ** 2) / (2 * s.view(-1, 1) ** 2))
    kernel = (kernel / kernel.sum(1, keepdim=True)).repeat_interleave(c, 0)  # (n*c, 5): one kernel per channel
    flat = F.pad(x.reshape(1, n * c, h, w), (2, 2, 2, 2), mode="reflect")
    flat = F.conv2d(flat, kernel.view(n * c, 1, 1, 5), groups=n * c)
    flat = F.conv2d(flat, kernel.view(n * c, 1, 5, 1), groups=n * c)
    return torch.where(apply, flat.view(n, c, h, w), x)


def random_solarize(x: torch.Tensor, p: float, generator: torch.Generator | None = None, threshold: float = 0.5) -> torch.Tensor:
    """Invert the pixels at or above `threshold` of a random subset (probability p) of the batch (PIL's solarize)."""
    apply = (torch.rand(x.shape[0], device=x.device, generator=generator) < p).view(-1, 1, 1, 1)
    return torch.where(apply & (x >= threshold), 1.0 - x, x)


def rotate(x: torch.Tensor, degrees: torch.Tensor) -> torch.Tensor:
    """Rotate each image counter-clockwise by its angle in degrees (zeros outside the source image)."""
    rad = degrees.to(x.device, torch.float32) * (math.pi / 180)
    cos, sin = torch.cos(rad), torch.sin(rad)
    theta = torch.zeros(x.shape[0], 2, 3, device=x.device)
    theta[:, 0, 0] = cos
    theta[:, 0, 1] = -sin
    theta[:, 1, 0] = sin
    theta[:, 1, 1] = cos
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def watermark_views(x: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The watermark task: each image rotated once by an angle in [0,180) (label 0) and once in [180,360) (label 1).

    Returns the 2N rotated views and their interval labels.
    """
    n = x.shape[0]
    low = torch.rand(n, generator=generator) * 180
    high = torch.rand(n, generator=generator) * 180 + 180
    views = rotate(torch.cat([x, x]), torch.cat([low, high]))
    labels = torch.cat([torch.zeros(n, dtype=torch.long), torch.ones(n, dtype=torch.long)]).to(x.device)
    return views, labels
