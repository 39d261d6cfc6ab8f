"""Model-input geometry and intensity: resize the longest side, normalise, pad; map coordinates."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from sac.sam.backbones import Normalization

IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)


@dataclass(frozen=True)
class Geometry:
    """Original (H, W), resized (h, w) and the square model input size."""

    original: tuple[int, int]
    resized: tuple[int, int]
    input_size: int

    @property
    def scale(self) -> tuple[float, float]:
        """(sy, sx) from original to model-input pixels."""
        return (self.resized[0] / self.original[0], self.resized[1] / self.original[1])


def geometry(shape: tuple[int, int], input_size: int, upscale: bool = True) -> Geometry:
    """Size after resizing the longest side of ``shape`` to ``input_size``.

    With ``upscale=False`` an image that already fits keeps its scale (it is only padded), so
    tiles cut from one image all stay at the image's own scale.
    """
    h, w = shape
    s = input_size / max(h, w)
    if not upscale:
        s = min(s, 1.0)
    return Geometry((h, w), (max(1, int(h * s + 0.5)), max(1, int(w * s + 0.5))), input_size)


def prepare_batch(
    images: list[np.ndarray], input_size: int, normalization: Normalization, upscale: bool = True
) -> tuple[torch.Tensor, list[Geometry]]:
    """Float (H, W, 3) images in [0, 1] to a padded, normalised (B, 3, S, S) batch.

    Images are resized (bilinear, anti-aliased when shrinking) so the longest side is
    ``input_size``, normalised as the backbone was trained, and zero-padded bottom/right.
    """
    batch = torch.zeros(len(images), 3, input_size, input_size)
    geos = []
    for i, img in enumerate(images):
        geo = geometry(img.shape[:2], input_size, upscale)
        x = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].float()
        if geo.resized != geo.original:
            shrink = geo.resized[0] < geo.original[0]
            x = F.interpolate(x, geo.resized, mode="bilinear", align_corners=False,
                              antialias=shrink)
        x = x[0]
        if normalization == "imagenet":
            mean = torch.tensor(IMAGENET_MEAN)[:, None, None]
            std = torch.tensor(IMAGENET_STD)[:, None, None]
            x = (x * 255.0 - mean) / std
        else:
            x = x.clamp(0.0, 1.0)  # the image was min-max scaled once, before any tiling
        batch[i, :, : geo.resized[0], : geo.resized[1]] = x
        geos.append(geo)
    return batch, geos


def to_model_coords(coords: np.ndarray, geo: Geometry) -> np.ndarray:
    """(..., 2) ``(x, y)`` pixel coordinates of the original image to the model-input frame."""
    sy, sx = geo.scale
    out = np.asarray(coords, dtype=np.float32).copy()
    out[..., 0] *= sx
    out[..., 1] *= sy
    return out


def boxes_to_model(boxes: np.ndarray, geo: Geometry) -> np.ndarray:
    """(..., 4) boxes ``x0, y0, x1, y1`` to the model-input frame."""
    b = np.asarray(boxes, dtype=np.float32)
    return to_model_coords(b.reshape(*b.shape[:-1], 2, 2), geo).reshape(b.shape)
