"""Encoded image files (JPEG, PNG, ...) to uint8 arrays: numpy and PIL only, so Ray Data's decode tasks start
without importing torch."""

from __future__ import annotations

import io

import numpy as np


def decode_images(blobs: list[bytes], shape: tuple[int, int, int], where: str) -> np.ndarray:
    """Encoded image files as one NHWC uint8 array of `shape` (C, H, W); `where` names the source in errors."""
    from PIL import Image

    c, h, w = shape
    images = np.empty((len(blobs), h, w, c), dtype=np.uint8)
    for i, blob in enumerate(blobs):
        with Image.open(io.BytesIO(blob)) as image:
            pixels = np.asarray(image.convert("RGB" if c == 3 else "L"))
        if pixels.shape[:2] != (h, w):
            raise ValueError(f"{where}: row {i} decodes to {pixels.shape[1]}x{pixels.shape[0]} pixels, expected {w}x{h}")
        images[i] = pixels.reshape(h, w, c)
    return images
