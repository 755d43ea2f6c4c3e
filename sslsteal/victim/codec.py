"""Request and answer bodies of the embedding API: a NumPy `.npy` array (never unpickled), or JSON with base64
PNG/JPEG images; each malformed body is an `InvalidQuery` that says what is wrong."""

from __future__ import annotations

import base64
import binascii
import io

import numpy as np

from sslsteal.victim.errors import InvalidQuery

NPY = "application/x-npy"
IMAGE_FORMATS = ("PNG", "JPEG")


def read_npy(body: bytes) -> np.ndarray:
    """The array of a `.npy` body; object arrays and pickles are refused, as is anything that is not `.npy`."""
    try:
        array = np.load(io.BytesIO(body), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise InvalidQuery(f"body is not a .npy array (pickled data is never read): {str(exc)[:120]}") from None
    if not isinstance(array, np.ndarray):
        raise InvalidQuery("body is a .npz archive, not one .npy array")
    return array


def write_npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def read_image(text: str, index: int, side: int) -> np.ndarray:
    """One base64 PNG or JPEG image as uint8 (3, side, side); its size is checked before its pixels are decoded."""
    from PIL import Image, UnidentifiedImageError

    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidQuery(f"images[{index}]: not base64") from None
    try:
        with Image.open(io.BytesIO(raw)) as image:
            if image.format not in IMAGE_FORMATS:
                raise InvalidQuery(f"images[{index}]: {image.format} image; send PNG or JPEG")
            if image.size != (side, side):
                raise InvalidQuery(f"images[{index}]: {image.size[0]}x{image.size[1]} pixels; the victim reads {side}x{side}")
            pixels = np.asarray(image.convert("RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError):
        raise InvalidQuery(f"images[{index}]: not a PNG or JPEG image") from None
    return pixels.transpose(2, 0, 1)


def read_images(texts: list[str], side: int) -> np.ndarray:
    """A JSON request's base64 images as one uint8 batch (N, 3, side, side)."""
    if not texts:
        raise InvalidQuery("empty batch: send at least one image")
    return np.stack([read_image(text, i, side) for i, text in enumerate(texts)])


def png_base64(image: np.ndarray) -> str:
    """A uint8 (3, H, W) image as base64 PNG: what a JSON client sends."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image.transpose(1, 2, 0))).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()
