"""The size head: nucleus diameter regressed from the prompt generator's style vector.

The generator's foreground map measures nuclei well only near the size it was trained on:
nuclei much smaller than that merge into clumps that look training-sized, and much larger
ones break into training-sized pieces, so a size estimate from the map alone saturates (an
H&E image at 20x reads as 40x). Like cellpose's size model, the head is a ridge regression
of the log median nucleus diameter on a style vector of the image (the mean and standard
deviation of each generator encoder level, :meth:`PromptGenerator.style`), fitted on the
training images resampled over a range of factors (:mod:`sac.training.size_fit`). It is
stored as ``size_head.safetensors`` beside the trained parts; ``config.json``'s ``size_head``
records how it was fitted. Models without it use the foreground-map estimate alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sac.core.errors import WeightsError
from sac.modeling.generator import PromptGenerator, pad_to_stride

SIZE_HEAD_FILE = "size_head.safetensors"
STYLE_CROP = 1024  # px: the style is taken from a central crop at most this large
TENSORS = ("mean", "std", "weight", "bias")


def style_dim(widths: tuple[int, ...]) -> int:
    """Length of the style vector of a generator with these encoder widths."""
    return 2 * sum(widths)


@torch.no_grad()
def image_style(generator: PromptGenerator, rgb: np.ndarray) -> np.ndarray:
    """Style vector of a float (H, W, 3) image at the scale it will be segmented at, from its
    central crop of at most :data:`STYLE_CROP` px (fp32, whatever the autocast setting)."""
    h, w = rgb.shape[:2]
    y0, x0 = max(0, (h - STYLE_CROP) // 2), max(0, (w - STYLE_CROP) // 2)
    crop = np.ascontiguousarray(rgb[y0:y0 + STYLE_CROP, x0:x0 + STYLE_CROP], np.float32)
    device = next(generator.parameters()).device
    x = torch.from_numpy(crop).permute(2, 0, 1)[None].to(device)
    x, _ = pad_to_stride(x, generator.config.stride)
    return generator.style(x)[0].double().cpu().numpy()


@dataclass(frozen=True)
class SizeHead:
    """Ridge regression ``log(diameter) = ((style - mean) / std) . weight + bias``; the
    diameter is in pixels of the image the style was taken from."""

    mean: np.ndarray
    std: np.ndarray
    weight: np.ndarray
    bias: float

    def predict(self, style: np.ndarray) -> float:
        """Median nucleus diameter (px) of the image whose style this is."""
        z = (np.asarray(style, np.float64) - self.mean) / self.std
        return float(np.exp(np.clip(z @ self.weight + self.bias, -5.0, 8.0)))

    def state(self) -> dict[str, torch.Tensor]:
        """Tensors for ``size_head.safetensors`` (float32)."""
        values = (self.mean, self.std, self.weight, np.array([self.bias]))
        return {k: torch.from_numpy(np.asarray(v, np.float32)).contiguous()
                for k, v in zip(TENSORS, values, strict=True)}

    @classmethod
    def from_state(cls, state: dict[str, torch.Tensor], dim: int, source: str) -> SizeHead:
        """Check names and shapes (``dim`` from the generator's widths) and build the head."""
        want = {"mean": (dim,), "std": (dim,), "weight": (dim,), "bias": (1,)}
        got = {k: tuple(v.shape) for k, v in state.items()}
        if got != want:
            raise WeightsError(f"{source} does not fit this model's generator: tensors {got}, "
                               f"expected {want}")
        arr = {k: state[k].double().numpy() for k in TENSORS}
        if not all(np.isfinite(a).all() for a in arr.values()) or (arr["std"] <= 0).any():
            raise WeightsError(f"{source} holds non-finite values or non-positive scales")
        return cls(arr["mean"], arr["std"], arr["weight"], float(arr["bias"][0]))


def read_size_head(path: Path, dim: int) -> SizeHead:
    """Load ``size_head.safetensors`` (no unpickling), naming the file in every error."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not path.is_file():
        raise WeightsError(f"{path.parent}: {path.name} is missing (config.json records a "
                           "size head)")
    try:
        state: dict[str, Any] = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise WeightsError(f"could not read {path}: {exc}; the file is corrupt or truncated"
                           ) from None
    import torch

    if not all(bool(torch.isfinite(v).all()) for v in state.values()):
        raise WeightsError(f"{path}: NaN or infinite values; the file is damaged; restore the "
                           "model folder")
    return SizeHead.from_state(state, dim, str(path))
