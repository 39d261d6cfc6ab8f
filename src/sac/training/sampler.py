"""Training images in memory and the random, augmented crops the trainer steps on.

Images are read once, normalised like inference does (:func:`sac.core.images.to_rgb_float`, one
min-max per image) and resampled to the model's training scale. Each step's crops come from a
generator seeded by ``(seed, step)``, so a resumed run sees exactly the crops an uninterrupted
run would have seen.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from sac.core.errors import ConfigError, InputError, SACError
from sac.core.images import to_rgb_float
from sac.core.resample import resample_image, resample_labels, scaled_shape
from sac.data.base import SampleDataset
from sac.training.appearance import rescaled_crop
from sac.training.augment import AugmentConfig, augment, crop_at, random_crop
from sac.training.negatives import NegativeConfig, palette, stretched, synthetic_negative

log = logging.getLogger("sac.training")
T = TypeVar("T")


@dataclass
class TrainImage:
    """One training image at the training scale: float (H, W, 3) in [0, 1] and its labels."""

    name: str
    rgb: np.ndarray
    labels: np.ndarray
    source: str = ""  # the part of a mixed dataset it comes from ("" for one source)


@dataclass
class Crop:
    """A model-input-sized training crop: image, instance labels, mask of real pixels."""

    rgb: np.ndarray
    labels: np.ndarray
    valid: np.ndarray


def first_per_source(items: list[T], source: Callable[[T], str], limit: int) -> list[T]:
    """The first ``limit`` of ``items`` from each source (``source(item)``), in order."""
    taken: dict[str, int] = {}
    kept = []
    for it in items:
        key = source(it)
        if taken.get(key, 0) < limit:
            taken[key] = taken.get(key, 0) + 1
            kept.append(it)
    return kept


def load_images(dataset: SampleDataset, names: list[str] | None, scale: float,
                limit: int | None = None) -> tuple[list[TrainImage], list[str]]:
    """Read ``names`` (all when ``None``) from ``dataset`` at ``scale``; with ``limit``, the
    first ``limit`` names of each source (of a mixed dataset; else of all).

    Unreadable samples are skipped and reported in the returned list of problems, as are the
    dataset's own listing problems.
    """
    problems = [str(p) for p in dataset.problems]
    wanted = dataset.names if names is None else names
    missing = sorted(set(wanted) - set(dataset.names))
    problems += [f"{n}: listed in the split but not found in {dataset.root}" for n in missing]
    wanted = [n for n in wanted if n not in set(missing)]
    if limit is not None:
        wanted = first_per_source(wanted, dataset.source_of, limit)
    out = []
    for name in wanted:
        try:
            s = dataset[name]
            rgb = resample_image(to_rgb_float(s.image, name), scale)
            labels = resample_labels(s.labels, scaled_shape(s.labels.shape, scale))
        except (SACError, ValueError, OSError) as exc:
            problems.append(f"{name}: {exc}")
            log.warning("skipping %s: %s", name, exc)
            continue
        out.append(TrainImage(name, rgb, labels, dataset.source_of(name)))
    return out, problems


def require_nuclei(images: list[TrainImage], what: str) -> None:
    """Refuse labels without a single nucleus: training would learn that there are none,
    and every score on them is a vacuous 1.0 (both empty)."""
    if images and not any(im.labels.any() for im in images):
        raise InputError(f"the {what} labels hold no nucleus: all {len(images)} label images "
                         "are empty (0 everywhere), so there is nothing to learn or score; "
                         "check the labels folder (wrong files, or masks that are all 0)")


class CropSampler:
    """Draws augmented ``size`` x ``size`` crops, images chosen in proportion to their area.

    When the images come from several sources (a mixed dataset), each source gets the same
    share of the crops (or its weight in ``shares``, relative to the others'), and within a
    source images are chosen by area: otherwise a source of many small images (DSB 2018)
    would drown one of a few large ones (MoNuSeg).
    ``by_source`` gives a source its own augmentation in place of ``augment_cfg`` (stain
    jitter for the H&E part of mixed data, inverted contrast for the fluorescence part).
    ``negatives``: the shares of nucleus-poor and synthetic nucleus-free crops
    (:mod:`sac.training.negatives`); the others hold at least ``min_foreground`` labelled
    pixels where ten tries find such a place.
    """

    def __init__(self, images: list[TrainImage], size: int, augment_cfg: AugmentConfig,
                 min_foreground: float = 0.02,
                 by_source: Mapping[str, AugmentConfig] | None = None,
                 negatives: NegativeConfig | None = None,
                 shares: Mapping[str, float] | None = None) -> None:
        if not images:
            raise InputError("the training set is empty: no usable image/label pairs were found")
        self.images = images
        self.size = size
        self.augment_cfg = augment_cfg
        self.by_source = dict(by_source or {})
        shares = dict(shares or {})
        for what, given in (("augmentation", self.by_source), ("a share", shares)):
            unknown = set(given) - {im.source for im in images}
            if unknown:
                raise ConfigError(f"{what} given for source(s) {sorted(unknown)} that no "
                                  f"training image comes from")
        self.min_foreground = min_foreground
        self.negatives = negatives or NegativeConfig(0.0, 0.0)
        self.hard: list[np.ndarray] = [np.zeros((0, 2), np.int32) for _ in images]
        self.palettes = [] if self.negatives.synthetic == 0 else [
            palette(im.rgb, im.labels) for im in images]
        area = np.array([max(im.labels.size, size * size) for im in images], np.float64)
        sources = np.array([im.source for im in images])
        if len(set(sources)) > 1:  # each source sums to its share (the same by default)
            for src in set(sources):
                area[sources == src] *= shares.get(src, 1.0) / area[sources == src].sum()
        self.weights = area / area.sum()

    def augment_of(self, source: str) -> AugmentConfig:
        """The augmentation of a source's images."""
        return self.by_source.get(source, self.augment_cfg)

    @property
    def crops_per_epoch(self) -> int:
        """Crops that cover the training images' area about once."""
        total = sum(max(im.labels.size, self.size**2) for im in self.images)
        return max(1, round(total / self.size**2))

    def batch(self, seed: int, step: int, batch_size: int, start: int = 0, stream: int = 0
              ) -> list[Crop]:
        """Crops ``start .. start + batch_size - 1`` of one step's ``stream``.

        Each crop has its own random generator, seeded by ``(seed, step, stream, index)``:
        the same crop whichever process draws it, so data-parallel processes drawing
        disjoint index ranges see different crops, and together exactly the crops of one
        process drawing them all.
        """
        out = []
        for index in range(start, start + batch_size):
            rng = np.random.default_rng([seed, step, stream, index])
            k = int(rng.choice(len(self.images), p=self.weights))
            im = self.images[k]
            cfg = self.augment_of(im.source)
            side = self.size
            if cfg.rescales:  # magnification jitter: crop more or less, resample
                lo, hi = np.log(cfg.scale_range)
                side = max(16, round(self.size / float(np.exp(rng.uniform(lo, hi)))))
            kind = "" if self.negatives.off else self._kind(rng.random())
            if kind == "hard":  # centred on one of the model's own false detections
                k, point = self._hard_point(rng, k)
                im = self.images[k]
                cfg = self.augment_of(im.source)
            if kind == "hard" and point is not None:
                rgb, lab, valid = crop_at(im.rgb, im.labels, side, point, rng)
            elif kind == "synthetic":
                rgb = synthetic_negative(side, self.palettes[k], rng)
                lab, valid = np.zeros((side, side), im.labels.dtype), np.ones((side, side), bool)
            else:
                rgb, lab, valid = random_crop(im.rgb, im.labels, side, rng,
                                              min_foreground=self.min_foreground,
                                              least=kind in ("sparse", "hard"))
            if kind and rng.random() < self.negatives.stretch:
                rgb = stretched(rgb, valid)
            rgb, lab, valid = rescaled_crop(rgb, lab, valid, self.size)
            rgb, lab, valid = augment(rgb, lab, valid, cfg, rng)
            out.append(Crop(rgb.astype(np.float32), lab.astype(np.int64), valid))
        return out

    def _kind(self, u: float) -> str:
        """Which kind of crop a uniform draw ``u`` picks: "synthetic", "sparse", "hard" or
        "" (an ordinary crop)."""
        neg = self.negatives
        if u < neg.synthetic:
            return "synthetic"
        if u < neg.synthetic + neg.sparse:
            return "sparse"
        return "hard" if u < neg.synthetic + neg.sparse + neg.hard else ""

    def set_hard(self, points: list[np.ndarray]) -> None:
        """The (row, col) centres of false detections per image (:mod:`.mining`), for the
        "hard" crops; until the first mining they are sparse crops."""
        if len(points) != len(self.images):
            raise ValueError(f"hard negatives for {len(points)} images; the sampler has "
                             f"{len(self.images)}")
        self.hard = [np.asarray(p, np.int32).reshape(-1, 2) for p in points]

    def _hard_point(self, rng: np.random.Generator, k: int) -> tuple[int, np.ndarray | None]:
        """An image with false detections (drawn by the same weights) and one of them;
        ``(k, None)`` while there are none."""
        counts = np.array([len(p) for p in self.hard], np.float64)
        if counts.sum() == 0:
            return k, None
        w = self.weights * (counts > 0)
        k = int(rng.choice(len(self.images), p=w / w.sum()))
        pts = self.hard[k]
        return k, pts[int(rng.integers(len(pts)))]
