"""Training-time augmentation of (image, instance-label) crops, numpy only.

Images are float32 (H, W, C) in [0, 1] (as :func:`sac.core.images.to_rgb_float` makes them), labels
are integer (H, W) instance ids (0 = background) and ``valid`` is a bool (H, W) mask that is
False on padding. Labels only ever go through geometry (crop, pad, rotate, flip), never through
interpolation, so ids stay exact. All randomness comes from an explicit ``np.random.Generator``.

:func:`augment` applies, in this fixed order (geometry first, then colour):

1. a random element of the dihedral group (rotation by k x 90 degrees, optional flip);
2. stain jitter in HED space (H&E only, ``stain=True``);
3. intensity jitter: contrast around the mean, brightness shift, gamma;
4. with probability ``grey_prob``, grey (luminance in every channel), and with
   ``invert_prob``, inverted contrast (:mod:`.appearance`);
5. with probability ``blur_prob``, a small Gaussian blur;
6. additive Gaussian noise (``noise_std > 0``);
7. with probability ``jpeg_prob``, a JPEG round trip at a random quality;

then clips to [0, 1] and sets padding back to 0. Cropping (:func:`random_crop`) is separate
because its size belongs to the trainer; so is the magnification jitter (``scale_range``),
which the crop sampler applies by cropping a larger or smaller region and resampling it.
:meth:`AugmentConfig.robust` turns all of these on for models meant to generalise.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from sac.training.appearance import invert, jpeg_roundtrip, to_grey

STAIN_LOG_SCALE = float(np.log(1e6))  # skimage's HED unit: optical density / ln(1e6)
MODALITIES = ("he", "histology", "fluorescence", "brightfield", "any")


# --------------------------------------------------------------------------- validation


def _check_pair(
    image: np.ndarray, labels: np.ndarray, valid: np.ndarray | None = None,
    need_float: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Validate image (H, W, C), integer labels (H, W) and optional bool valid (H, W)."""
    image, labels = np.asarray(image), np.asarray(labels)
    if image.ndim != 3:
        raise ValueError(f"image must be 3-D (H, W, C); got shape {image.shape}")
    if need_float and not np.issubdtype(image.dtype, np.floating):
        raise ValueError(
            f"image must be float in [0, 1]; got dtype {image.dtype} "
            "(convert with sac.core.images.to_rgb_float first)"
        )
    if labels.ndim != 2:
        raise ValueError(f"labels must be 2-D (H, W); got shape {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must hold integer instance ids; got dtype {labels.dtype}")
    if labels.shape != image.shape[:2]:
        raise ValueError(
            f"image and labels differ in size: image {image.shape[:2]}, labels {labels.shape}"
        )
    if valid is not None:
        valid = _check_valid(valid, labels.shape)
    return image, labels, valid


def _check_valid(valid: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Validate a bool (H, W) mask of real pixels against the image size ``shape``."""
    valid = np.asarray(valid)
    if valid.dtype != bool:
        raise ValueError(f"valid must be a bool mask; got dtype {valid.dtype}")
    if valid.shape != tuple(shape):
        raise ValueError(
            f"valid and image differ in size: valid {valid.shape}, image {tuple(shape)}"
        )
    return valid


def _check_image(image: np.ndarray, channels: int | None = None) -> np.ndarray:
    """Validate a float (H, W, C) image (with exactly ``channels`` channels if given)."""
    image = np.asarray(image)
    if image.ndim != 3:
        raise ValueError(f"image must be 3-D (H, W, C); got shape {image.shape}")
    if channels is not None and image.shape[2] != channels:
        raise ValueError(f"image must have {channels} channels; got shape {image.shape}")
    if not np.issubdtype(image.dtype, np.floating):
        raise ValueError(f"image must be float in [0, 1]; got dtype {image.dtype}")
    return image


def _check_range(name: str, value: float, lo: float, hi: float, hi_open: bool = False) -> None:
    """Raise ValueError unless lo <= value <= hi (value < hi if ``hi_open``)."""
    ok = lo <= value < hi if hi_open else lo <= value <= hi
    if not ok:
        bracket = ")" if hi_open else "]"
        raise ValueError(f"{name} must be in [{lo}, {hi}{bracket}; got {value}")


# --------------------------------------------------------------------------- geometry


def random_crop(
    image: np.ndarray, labels: np.ndarray, size: int, rng: np.random.Generator,
    min_foreground: float = 0.0, tries: int = 10, least: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A ``size`` x ``size`` crop: float32 image, labels (same dtype) and bool ``valid``.

    Up to ``tries`` random positions are drawn; the first whose foreground fraction (labelled
    pixels over real pixels) is >= ``min_foreground`` wins, else the one with the most
    foreground. ``least``: all ``tries`` are drawn and the one with the least foreground wins
    (a nucleus-poor crop, :mod:`sac.training.negatives`). A side shorter than ``size`` is
    padded at the bottom/right, the way the inference pre-processing pads: the image with
    zeros (black), labels with 0, and ``valid`` is False there. Outputs are new arrays,
    never views of the inputs.
    """
    image, labels, _ = _check_pair(image, labels)
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size <= 0:
        raise ValueError(f"size must be a positive integer; got {size!r}")
    if isinstance(tries, bool) or not isinstance(tries, (int, np.integer)) or tries < 1:
        raise ValueError(f"tries must be an integer >= 1; got {tries!r}")
    _check_range("min_foreground", min_foreground, 0.0, 1.0)
    h, w = labels.shape
    ch, cw = min(h, size), min(w, size)  # the real part of the crop
    n_pos = (h - ch + 1) * (w - cw + 1)
    best, best_frac = (0, 0), 2.0 if least else -1.0
    for _ in range(1 if n_pos == 1 else tries):
        y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        frac = np.count_nonzero(labels[y:y + ch, x:x + cw]) / (ch * cw)
        if (frac < best_frac) if least else (frac > best_frac):
            best, best_frac = (y, x), frac
        if not least and frac >= min_foreground:
            break
    y, x = best
    return _cut(image, labels, y, x, size)


def _cut(image: np.ndarray, labels: np.ndarray, y: int, x: int, size: int
         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ``size`` x ``size`` crop at (y, x), padded at the bottom/right (image 0, labels 0,
    ``valid`` False) where the image is smaller; new arrays, never views."""
    ch, cw = min(labels.shape[0], size), min(labels.shape[1], size)
    out_img = np.zeros((size, size, image.shape[2]), np.float32)
    out_lab = np.zeros((size, size), labels.dtype)
    valid = np.zeros((size, size), bool)
    out_img[:ch, :cw] = image[y:y + ch, x:x + cw]
    out_lab[:ch, :cw] = labels[y:y + ch, x:x + cw]
    valid[:ch, :cw] = True
    return out_img, out_lab, valid


def crop_at(image: np.ndarray, labels: np.ndarray, size: int, centre: np.ndarray,
            rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A ``size`` x ``size`` crop (as :func:`random_crop` makes them) holding the pixel
    ``centre`` (row, col), placed at a random offset of up to a quarter side from it."""
    h, w = labels.shape
    ch, cw = min(h, size), min(w, size)
    jitter = rng.integers(-(size // 4), size // 4 + 1, 2)
    y = int(np.clip(int(centre[0]) - ch // 2 + int(jitter[0]), 0, h - ch))
    x = int(np.clip(int(centre[1]) - cw // 2 + int(jitter[1]), 0, w - cw))
    return _cut(image, labels, y, x, size)


def dihedral(
    image: np.ndarray, labels: np.ndarray, k: int, flip: bool, valid: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Rotate by ``k`` x 90 degrees counter-clockwise, then flip left-right if ``flip``.

    The same transform is applied to image (H, W, C), labels and ``valid`` (H, W; None passes
    through). Every output is a new C-contiguous array.
    """
    image, labels, valid = _check_pair(image, labels, valid, need_float=False)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise ValueError(f"k must be an integer number of quarter turns; got {k!r}")
    k = int(k) % 4

    def apply(a: np.ndarray) -> np.ndarray:
        a = np.rot90(a, k, axes=(0, 1))
        return np.array(a[:, ::-1] if flip else a, order="C")  # np.array always copies

    return apply(image), apply(labels), None if valid is None else apply(valid)


def random_dihedral(
    image: np.ndarray, labels: np.ndarray, rng: np.random.Generator,
    valid: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """:func:`dihedral` with one of the 8 transforms drawn uniformly from ``rng``."""
    k, flip = int(rng.integers(4)), bool(rng.integers(2))
    return dihedral(image, labels, k, flip, valid)


# --------------------------------------------------------------------------- colour


def intensity_jitter(
    image: np.ndarray, rng: np.random.Generator, brightness: float = 0.1,
    contrast: float = 0.2, gamma: float = 0.2, valid: np.ndarray | None = None,
) -> np.ndarray:
    """Per-image contrast, brightness and gamma change; float32 clipped to [0, 1].

    ``x -> clip((x - m) * c + m + b) ** g`` with c ~ U(1 - contrast, 1 + contrast),
    b ~ U(-brightness, brightness) and g = exp(U(-gamma, gamma)) (symmetric in log, so
    brightening and darkening are equally likely); m is the mean over real pixels (``valid``),
    so padding does not pull it down. One value of each for all channels keeps gray images gray.
    """
    image = _check_image(image)
    _check_range("brightness", brightness, 0.0, 1.0)
    _check_range("contrast", contrast, 0.0, 1.0, hi_open=True)
    _check_range("gamma", gamma, 0.0, 2.0)
    if valid is not None:
        valid = _check_valid(valid, image.shape[:2])
    c = rng.uniform(1.0 - contrast, 1.0 + contrast)
    b = rng.uniform(-brightness, brightness)
    g = np.exp(rng.uniform(-gamma, gamma))
    real = image if valid is None or not valid.any() else image[valid]
    m = float(real.mean()) if real.size else 0.0
    out = (image.astype(np.float32) - m) * np.float32(c) + np.float32(m + b)
    np.clip(out, 0.0, 1.0, out=out)
    np.power(out, np.float32(g), out=out)
    return out


def stain_jitter(
    image: np.ndarray, rng: np.random.Generator, sigma: float = 0.05, bias: float = 0.05,
) -> np.ndarray:
    """H&E stain augmentation in HED space (Ruifrok & Johnston deconvolution, skimage's matrices).

    Each stain concentration s_i (as :func:`skimage.color.rgb2hed` returns it) becomes
    ``s_i * a_i + b_i`` with a_i ~ U(1 - sigma, 1 + sigma) and b_i ~ U(-bias, bias), then the
    image is recombined as :func:`skimage.color.hed2rgb` does and clipped to [0, 1] (float32).

    Unlike calling rgb2hed / hed2rgb, negative concentrations are not clipped to 0, so with
    ``sigma = bias = 0`` this is the identity on every image (the clipped round trip alters real
    H&E by up to ~0.15 where colours fall outside the stain cone). Deconvolution, jitter and
    recombination fold into one 3x3 matrix on log-intensities, about 1 ms for 256x256.
    Note the scale: one HED unit is ln(1e6) ~ 13.8 natural optical-density units, so
    ``bias = 0.05`` is a strong shift (white can turn to about 0.6); 0.01-0.02 is mild.
    """
    from skimage.color import hed_from_rgb, rgb_from_hed  # heavy import, only when used

    image = _check_image(image, channels=3)
    _check_range("sigma", sigma, 0.0, 1.0, hi_open=True)
    _check_range("bias", bias, 0.0, 1.0)
    alpha = rng.uniform(1.0 - sigma, 1.0 + sigma, 3)
    beta = rng.uniform(-bias, bias, 3)
    # log_rgb -> od = -log_rgb / L -> hed = od @ A -> hed * alpha + beta -> od' = hed' @ B,
    # so log_rgb' = log_rgb @ (A diag(alpha) B) - L * (beta @ B)
    mix = (hed_from_rgb * alpha[None, :]) @ rgb_from_hed
    shift = -STAIN_LOG_SCALE * (beta @ rgb_from_hed)
    log_rgb = np.log(np.maximum(image.astype(np.float32), np.float32(1e-6)))
    out = log_rgb @ mix.astype(np.float32)
    out += shift.astype(np.float32)
    np.exp(out, out=out)
    np.clip(out, 0.0, 1.0, out=out)
    return out


def gaussian_blur(
    image: np.ndarray, sigma: float, valid: np.ndarray | None = None,
) -> np.ndarray:
    """Spatial Gaussian blur of each channel (float32).

    With a ``valid`` mask the blur is normalised by the blurred mask, so the zero padding does
    not darken the real pixels next to it.
    """
    image = _check_image(image)
    if sigma <= 0:
        raise ValueError(f"sigma must be > 0; got {sigma}")
    img = image.astype(np.float32)
    if valid is None or valid.all():
        return ndi.gaussian_filter(img, (sigma, sigma, 0), mode="reflect")
    valid = _check_valid(valid, image.shape[:2])
    w = valid.astype(np.float32)
    num = ndi.gaussian_filter(img * w[..., None], (sigma, sigma, 0), mode="reflect")
    den = ndi.gaussian_filter(w, sigma, mode="reflect")
    return num / np.maximum(den, np.float32(1e-6))[..., None]


def add_noise(image: np.ndarray, std: float, rng: np.random.Generator) -> np.ndarray:
    """Additive Gaussian noise N(0, std), clipped to [0, 1] (float32).

    A gray image (all channels equal, as fluorescence and brightfield become) gets the same
    noise in every channel, so it stays gray; a colour image gets independent noise per channel.
    """
    image = _check_image(image)
    if std < 0:
        raise ValueError(f"noise std must be >= 0; got {std}")
    gray = all(np.array_equal(image[..., 0], image[..., c]) for c in range(1, image.shape[2]))
    shape = (*image.shape[:2], 1) if gray else image.shape
    out = image.astype(np.float32) + rng.normal(0.0, std, shape).astype(np.float32)
    return np.clip(out, 0.0, 1.0, out=out)


# --------------------------------------------------------------------------- pipeline


@dataclass(frozen=True)
class AugmentConfig:
    """Which augmentations :func:`augment` applies, and how strongly (module docstring)."""

    flips_rotations: bool = True
    intensity: bool = True
    stain: bool = False
    brightness: float = 0.1
    contrast: float = 0.2
    gamma: float = 0.2
    stain_sigma: float = 0.05
    stain_bias: float = 0.05
    blur_prob: float = 0.0
    blur_sigma: tuple[float, float] = (0.5, 1.0)  # blur sigma ~ U(lo, hi) pixels
    noise_std: float = 0.0
    grey_prob: float = 0.0
    invert_prob: float = 0.0
    jpeg_prob: float = 0.0
    jpeg_quality: tuple[int, int] = (40, 95)  # quality ~ U{lo..hi}
    scale_range: tuple[float, float] = (1.0, 1.0)  # magnification factor, log-uniform

    def __post_init__(self) -> None:
        _check_range("brightness", self.brightness, 0.0, 1.0)
        _check_range("contrast", self.contrast, 0.0, 1.0, hi_open=True)
        _check_range("gamma", self.gamma, 0.0, 2.0)
        _check_range("stain_sigma", self.stain_sigma, 0.0, 1.0, hi_open=True)
        _check_range("stain_bias", self.stain_bias, 0.0, 1.0)
        _check_range("blur_prob", self.blur_prob, 0.0, 1.0)
        _check_range("noise_std", self.noise_std, 0.0, 1.0)
        for name in ("grey_prob", "invert_prob", "jpeg_prob"):
            _check_range(name, getattr(self, name), 0.0, 1.0)
        q0, q1 = self.jpeg_quality
        if not 1 <= q0 <= q1 <= 100:
            raise ValueError(f"jpeg_quality must be (lo, hi) in [1, 100]; got "
                             f"{self.jpeg_quality}")
        s0, s1 = self.scale_range
        if not 0.25 <= s0 <= s1 <= 4.0:
            raise ValueError(f"scale_range must be (lo, hi) with 0.25 <= lo <= hi <= 4; got "
                             f"{self.scale_range}")
        lo, hi = self.blur_sigma
        if not 0 < lo <= hi:
            raise ValueError(
                f"blur_sigma must be (lo, hi) with 0 < lo <= hi; got {self.blur_sigma}"
            )

    @classmethod
    def for_modality(cls, name: str, **overrides: Any) -> AugmentConfig:
        """Defaults for a modality: ``"he"`` (alias ``"histology"``) turns stain jitter on;
        ``"fluorescence"``, ``"brightfield"`` and ``"any"`` (mixed data) leave it off.
        Keyword ``overrides`` replace single fields."""
        key = name.strip().lower()
        if key not in MODALITIES:
            raise ValueError(f"unknown modality {name!r}; choose one of {', '.join(MODALITIES)}")
        return dataclasses.replace(cls(stain=key in ("he", "histology")), **overrides)

    @classmethod
    def robust(cls, name: str, **overrides: Any) -> AugmentConfig:
        """:meth:`for_modality` plus what users' images vary in: blur, noise, JPEG, +-25 %
        magnification, grey copies, and inverted contrast where the data mixes bright- and
        dark-nucleus images (``"any"``, ``"brightfield"``, ``"fluorescence"``)."""
        base = cls.for_modality(name)
        mixed = base.stain is False
        return dataclasses.replace(
            base, brightness=0.15, contrast=0.3, blur_prob=0.2, blur_sigma=(0.5, 1.5),
            noise_std=0.02, grey_prob=0.2, invert_prob=0.3 if mixed else 0.0, jpeg_prob=0.2,
            scale_range=(0.8, 1.25), **overrides)

    @property
    def rescales(self) -> bool:
        """Whether crops are drawn at a jittered magnification."""
        return self.scale_range != (1.0, 1.0)


def augment(
    image: np.ndarray, labels: np.ndarray, valid: np.ndarray | None, cfg: AugmentConfig,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Apply the enabled augmentations in the fixed order of the module docstring.

    Returns a float32 image in [0, 1] that is 0 on padding, labels with exactly the input ids
    (moved, never interpolated) and the moved ``valid`` mask (all True if None was given).
    Inputs are not modified.
    """
    image, labels, given = _check_pair(image, labels, valid)
    valid = np.ones(labels.shape, bool) if given is None else given
    if cfg.flips_rotations:
        image, labels, moved = random_dihedral(image, labels, rng, valid)
        valid = valid if moved is None else moved
    else:
        labels, valid = labels.copy(), valid.copy()
    out = image.astype(np.float32)  # always a copy
    if cfg.stain:
        out = stain_jitter(out, rng, cfg.stain_sigma, cfg.stain_bias)
    if cfg.intensity:
        out = intensity_jitter(out, rng, cfg.brightness, cfg.contrast, cfg.gamma, valid)
    if cfg.grey_prob > 0 and rng.random() < cfg.grey_prob:
        out = to_grey(out)
    if cfg.invert_prob > 0 and rng.random() < cfg.invert_prob:
        out = invert(out, valid)
    if cfg.blur_prob > 0 and rng.random() < cfg.blur_prob:
        out = gaussian_blur(out, float(rng.uniform(*cfg.blur_sigma)), valid)
    if cfg.noise_std > 0:
        out = add_noise(out, cfg.noise_std, rng)
    if cfg.jpeg_prob > 0 and rng.random() < cfg.jpeg_prob:
        np.clip(out, 0.0, 1.0, out=out)
        out[~valid] = 0.0
        out = jpeg_roundtrip(out, int(rng.integers(cfg.jpeg_quality[0],
                                                   cfg.jpeg_quality[1] + 1)))
    np.clip(out, 0.0, 1.0, out=out)
    out[~valid] = 0.0
    return out, labels, valid
