"""Nucleus-free training crops: the tissue users have that the training sets leave out.

Annotated nuclei datasets are cut where nuclei are: MoNuSeg's tiles and DSB 2018's fields
hold nuclei almost everywhere, and the crop sampler, which asks each crop for some labelled
foreground, made the model assume every image is full of nuclei. On whole slides and
other hospitals' tiles it then outlines fat, loose stroma and glass as nuclei (issue 45).
Two kinds of crop teach it otherwise, both with all-zero labels where no nucleus is:

- **sparse** crops: the real training crop with the *least* labelled foreground of a few
  random positions (stroma, lumen, background that the images do have);
- **synthetic** crops (:func:`synthetic_negative`): fat (large cells of thin membranes),
  fibrous stroma (streaks and clefts) and glass with dust, drawn in the colours of one of
  the training images' own non-nucleus pixels, so the same generator serves H&E (white
  glass, pink tissue) and fluorescence (black background, dim autofluorescence).

:class:`NegativeConfig` says how often each kind is drawn.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from sac.core.errors import ConfigError

KINDS = ("fat", "fibre", "glass")


@dataclass(frozen=True)
class NegativeConfig:
    """Shares of the training crops drawn nucleus-poor (``sparse``) and synthetic
    nucleus-free (``synthetic``); the rest are ordinary crops with some foreground.
    ``stretch``: the share of the negative crops min-max scaled on their own, as
    :func:`sac.core.images.to_rgb_float` scales an image that holds only such tissue (a
    pale tile of fat or an empty field, whose faint texture the scaling turns into full
    contrast: the shipped models outlined 79 nuclei on 512 x 512 px of glass with dust)."""

    sparse: float = 0.15
    synthetic: float = 0.1
    stretch: float = 0.5  # of those, the share min-max stretched as a whole image would be
    hard: float = 0.0  # crops centred on the model's own false detections (mining.py)

    def __post_init__(self) -> None:
        for name in ("sparse", "synthetic", "stretch", "hard"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ConfigError(f"the share of {name} negative crops must be in [0, 1]; "
                                  f"got {v}")
        if self.sparse + self.synthetic + self.hard > 1.0:
            raise ConfigError(f"sparse ({self.sparse}), synthetic ({self.synthetic}) and hard "
                              f"({self.hard}) negative crops together must be at most 1")

    @property
    def off(self) -> bool:
        """Whether every crop is an ordinary one."""
        return self.sparse == 0.0 and self.synthetic == 0.0 and self.hard == 0.0


@dataclass(frozen=True)
class Palette:
    """Colours of an image's non-nucleus pixels: ``glass`` (empty background: the
    brightest for a bright-field image, the darkest for a dark-field one) and ``tissue``
    (the far end of the non-nucleus pixels: stroma, cytoplasm, autofluorescence);
    ``bright``: a bright-field image (empty glass white, not black)."""

    glass: np.ndarray
    tissue: np.ndarray
    bright: bool


def palette(rgb: np.ndarray, labels: np.ndarray) -> Palette:
    """The :class:`Palette` of a float (H, W, 3) image from its unlabelled pixels.

    A bright-field image (median background brighter than its nuclei, or than 0.5 when it
    has none) has glass at the 98th percentile of luminance and tissue at the 20th; a
    dark-field one the other way round."""
    bg = rgb[labels == 0].reshape(-1, 3)
    if bg.shape[0] < 16:
        bg = rgb.reshape(-1, 3)
    luma = bg.mean(1)
    nuc = rgb[labels > 0].reshape(-1, 3)
    ref = float(nuc.mean()) if nuc.size else 0.5
    bright = float(np.median(luma)) >= ref
    order = np.argsort(luma)
    def at(q: float) -> np.ndarray:
        k = order[min(len(order) - 1, int(q * (len(order) - 1)))]
        return bg[k].astype(np.float32)
    if bright:
        return Palette(glass=at(0.98), tissue=at(0.2), bright=True)
    return Palette(glass=at(0.02), tissue=at(0.8), bright=False)


def _smooth_noise(shape: tuple[int, int], sigma: float | tuple[float, float],
                  rng: np.random.Generator) -> np.ndarray:
    """Gaussian-filtered white noise rescaled to [0, 1]."""
    n = ndi.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma)
    lo, hi = float(n.min()), float(n.max())
    return (n - lo) / (hi - lo) if hi > lo else np.zeros(shape, np.float32)


def fat(size: int, rng: np.random.Generator) -> np.ndarray:
    """Tissue density of adipose tissue: large polygonal cells (30-150 px across) whose thin
    membranes (1-3 px) are the only tissue, with the odd cell collapsed or folded."""
    cell = rng.uniform(30, 150)
    n = max(2, int((size / cell) ** 2 * 1.5))
    seeds = np.zeros((size, size), bool)
    seeds[rng.integers(0, size, n), rng.integers(0, size, n)] = True
    _, (iy, ix) = ndi.distance_transform_edt(~seeds, return_indices=True)
    owner = iy * size + ix
    edge = np.zeros((size, size), bool)
    edge[:-1] |= owner[:-1] != owner[1:]
    edge[:, :-1] |= owner[:, :-1] != owner[:, 1:]
    width = rng.uniform(0.5, 1.5)
    density = ndi.gaussian_filter(edge.astype(np.float32), width) * 2.5
    wobble = _smooth_noise((size, size), 3.0, rng)
    return np.clip(density * (0.6 + 0.8 * wobble), 0, 1)


def fibre(size: int, rng: np.random.Generator) -> np.ndarray:
    """Tissue density of loose or collagen-rich stroma: streaks along one direction with
    wavy bundles, clefts and holes between them."""
    big = int(size * 1.5)
    along, across = rng.uniform(8, 30), rng.uniform(0.8, 3.0)
    streaks = _smooth_noise((big, big), (across, along), rng)
    wave = _smooth_noise((big, big), 12.0, rng)
    density = np.clip((streaks - 0.35 - 0.3 * wave) * 2.5, 0, 1)
    angle = float(rng.uniform(0, 180))
    density = ndi.rotate(density, angle, reshape=False, order=1, mode="reflect")
    off = (big - size) // 2
    density = density[off:off + size, off:off + size]
    level = rng.uniform(0.3, 1.0)  # loose (pale) to dense (collagen-rich) stroma
    holes = _smooth_noise((size, size), rng.uniform(4, 10), rng) > rng.uniform(0.65, 0.8)
    density = density * level
    density[holes] *= 0.1
    return np.clip(density, 0, 1).astype(np.float32)


def glass(size: int, rng: np.random.Generator) -> np.ndarray:
    """Tissue density of an empty slide: faint shading, dust specks (1-3 px) and the odd
    hair or scratch."""
    density = 0.08 * _smooth_noise((size, size), 40.0, rng)
    specks = rng.random((size, size)) < rng.uniform(1e-4, 2e-3)
    if rng.random() < 0.5:
        specks = ndi.binary_dilation(specks)
    density[specks] = rng.uniform(0.4, 1.0)
    for _ in range(int(rng.integers(0, 3))):  # a hair: a random walk, 1 px wide
        y, x = rng.uniform(0, size, 2)
        a = rng.uniform(0, 2 * np.pi)
        for _ in range(int(rng.integers(30, 200))):
            a += rng.normal(0, 0.1)
            y, x = y + np.sin(a), x + np.cos(a)
            if 0 <= y < size and 0 <= x < size:
                density[int(y), int(x)] = 0.7
    return np.clip(ndi.gaussian_filter(density, 0.6), 0, 1).astype(np.float32)


def stretched(rgb: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """``rgb`` min-max scaled to [0, 1] over its ``valid`` pixels (padding stays 0)."""
    real = rgb[valid]
    if real.size == 0:
        return rgb
    lo, hi = float(real.min()), float(real.max())
    out = (rgb - lo) / (hi - lo) if hi > lo else np.zeros_like(rgb)
    out[~valid] = 0.0
    return np.clip(out, 0, 1).astype(np.float32)


def synthetic_negative(size: int, colours: Palette, rng: np.random.Generator,
                       kind: str | None = None) -> np.ndarray:
    """A ``size`` x ``size`` float32 RGB crop of nucleus-free tissue (``kind`` one of
    :data:`KINDS`, random when ``None``; sometimes two kinds blended by a smooth mask),
    coloured from glass (density 0; the palette's, or up to pure white or black where
    the training image shows no empty glass) to ``tissue`` (density 1), with mild noise."""
    if kind is not None and kind not in KINDS:
        raise ConfigError(f"unknown synthetic negative {kind!r}; choose one of {KINDS}")
    make = {"fat": fat, "fibre": fibre, "glass": glass}
    first = kind or KINDS[int(rng.integers(len(KINDS)))]
    density = make[first](size, rng)
    if kind is None and rng.random() < 0.4:  # a second kind over part of the crop
        other = make[KINDS[int(rng.integers(len(KINDS)))]](size, rng)
        mask = _smooth_noise((size, size), size / 6, rng)
        density = density * mask + other * (1 - mask)
    empty = np.float32(1.0 if colours.bright else 0.0)
    glass_rgb = colours.glass + np.float32(rng.uniform(0, 1)) * (empty - colours.glass)
    rgb = glass_rgb + density[..., None] * (colours.tissue - glass_rgb)
    rgb += rng.normal(0, rng.uniform(0.0, 0.02), rgb.shape).astype(np.float32)
    return np.clip(rgb, 0, 1).astype(np.float32)
