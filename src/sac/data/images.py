"""Reading one image or label file, and normalising images to RGB uint8.

Files: PNG and JPEG are read with imageio's Pillow plugin (what scikit-image uses; turned upright
by their EXIF orientation, as every viewer shows them), TIFF
(``.tif``/``.tiff``) with tifffile.
Every failure becomes an :class:`~sac.core.errors.InputError` that names the file, says what is
wrong and what to do: missing file, 0-byte file, unsupported extension, undecodable (corrupt) file,
and unsupported array shape. Leading singleton axes of TIFF stacks, e.g. (1, H, W), are dropped.

Normalisation rules of :func:`to_rgb_uint8` (the same for every dataset reader):

- channels: gray (H, W) or (H, W, 1) is repeated to three channels; gray+alpha (H, W, 2) keeps
  the gray channel; RGBA (H, W, 4) drops alpha (it is *not* composited); RGB is kept;
- uint8 is kept as is (no rescaling);
- bool becomes 0 / 255;
- float data with every value in [0, 1] is multiplied by 255 and rounded;
- anything else (uint16, other integers, floats outside [0, 1]) is linearly min-max scaled per
  image, over all colour channels together (so colour balance is kept), from [min, max] of that
  image to 0..255; a constant image becomes all zeros. Note that this stretches contrast: a
  16-bit image whose values span 100..900 maps 100 -> 0 and 900 -> 255.

Label images (:func:`read_labels`) are not rescaled: they must be 2-D non-negative integers
(or integer-valued floats) and are returned as uint32 instance ids, 0 = background.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sac.core.errors import ConfigError, InputError
from sac.core.images import SUPPORTED, supported_shape, to_rgb_uint8
from sac.core.labels import check_label_image

TIFF_SUFFIXES = (".tif", ".tiff")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", *TIFF_SUFFIXES)
#: Extensions of the vendor whole-slide formats OpenSlide reads (some of them are TIFF inside).
SLIDE_SUFFIXES = (".svs", ".ndpi", ".mrxs", ".scn", ".vms", ".vmu", ".bif", ".svslide")
#: Pixel sizes (micrometres) plausible for microscopy; a file claiming another is not believed
#: (many writers store a nominal 72 or 300 dpi).
PLAUSIBLE_PIXEL_UM = (0.01, 50.0)



#: Micrometres per TIFF ResolutionUnit (2 inch, 3 centimetre; 4 and 5 are tifffile's
#: millimetre and micrometre extensions).
UM_PER_TIFF_UNIT = {2: 25_400.0, 3: 10_000.0, 4: 1_000.0, 5: 1.0}
#: Micrometres per unit name in ImageJ descriptions.
UM_PER_NAMED_UNIT = {
    "micron": 1.0, "microns": 1.0, "um": 1.0, "\u00b5m": 1.0, "\u03bcm": 1.0,
    "nm": 1e-3, "nanometer": 1e-3, "mm": 1e3, "cm": 1e4, "inch": 25_400.0,
}


def is_image_file(path: Path) -> bool:
    """True for a visible file with a supported image extension (case-insensitive)."""
    return (
        path.is_file() and not path.name.startswith(".") and (path.suffix.lower() in IMAGE_SUFFIXES)
    )


def _squeeze_leading(arr: np.ndarray) -> np.ndarray:
    """Drop leading size-1 axes of stacks such as (1, H, W) or (1, 1, H, W, 3)."""
    while arr.ndim > 2 and arr.shape[0] == 1:
        if arr.ndim == 3 and arr.shape[2] in (1, 2, 3, 4):
            break  # a genuine (1, W, C) image row, not a stack axis
        arr = arr[0]
    return arr


def _pick_channel(arr: np.ndarray, channel: int, path: Path) -> np.ndarray:
    """One page of a stack (first axis) or one channel of a channels-last image."""
    if arr.ndim == 2:
        if channel == 0:  # its only channel: a folder mixing gray and multi-channel files
            return arr
        raise InputError(f"{path}: --channel {channel} given, but the image has one channel "
                         "(0)")
    # (H, W, C) when the last axis is the short one, else pages first: (P, H, W[, C])
    # a z-stack of 150 pages of 128 x 128 is pages first: the last axis must be the shortest
    channels_last = arr.ndim == 3 and arr.shape[2] < min(arr.shape[0], arr.shape[1])
    n = arr.shape[2] if channels_last else arr.shape[0]
    if not 0 <= channel < n:
        raise InputError(f"{path}: --channel {channel} is out of range; the image has {n} "
                         f"{'channels' if channels_last else 'pages'} (0..{n - 1}), shape "
                         f"{arr.shape}")
    return arr[..., channel] if channels_last else arr[channel]


def _tiff_pages(tif: object) -> np.ndarray:
    """The TIFF's pixels: its first series, or, when it holds several series of the same
    shape (pages written one by one), all of them stacked as pages (P, H, W[, C])."""
    series = tif.series  # type: ignore[attr-defined]
    first = series[0]
    same = [s for s in series if s.shape == first.shape and s.dtype == first.dtype]
    if len(same) < 2:
        return np.asarray(tif.asarray())  # type: ignore[attr-defined]
    return np.stack([np.asarray(s.asarray()) for s in same])


def _read_pillow(path: Path) -> np.ndarray:
    """PNG/JPEG pixels, up to :data:`sac.core.checks.MAX_PIXELS` (Pillow's own "decompression
    bomb" limit, about 179 megapixels, would refuse a valid 20000 x 20000 image), turned
    upright by their EXIF orientation."""
    import imageio.v3 as iio
    from PIL import Image


    limit = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None  # SAC's own limit below (Pillow's fires on opening)
    try:
        with Image.open(path) as im:
            w, h = im.size
        check_pixels(path, h, w)
        # EXIF orientation applied (as Pillow's exif_transpose): labels in the grid every
        # viewer shows, not the stored one
        return np.asarray(iio.imread(path, plugin="pillow", rotate=True))
    finally:
        Image.MAX_IMAGE_PIXELS = limit


def check_pixels(path: Path, h: int, w: int) -> None:
    """Refuse an image over :data:`sac.core.checks.MAX_PIXELS` from its declared size,
    before decoding it."""
    from sac.core import checks

    if h * w > checks.MAX_PIXELS:
        raise InputError(f"{path}: the image is {w} x {h} = {w * h / 1e6:,.0f} megapixels, "
                         f"more than the {checks.MAX_PIXELS / 1e6:,.0f} SAC reads into memory; "
                         "save it as a tiled pyramidal TIFF and segment it with --wsi")


def _max_pixels() -> int:
    from sac.core import checks

    return int(checks.MAX_PIXELS)


def read_image(path: str | Path, channel: int | None = None) -> np.ndarray:
    """Read one PNG/JPEG/TIFF file as a numpy array (no conversion), with clear errors.

    Returns the decoded array with its own dtype, shaped (H, W) or (H, W, C), C in 1..4.
    ``channel`` picks one page of a multi-page stack (P, H, W[, C]) or one channel of a
    channels-last image (H, W, C), which is returned as a gray (H, W) image.
    """
    path = Path(path)
    if channel is not None and (isinstance(channel, bool) or not isinstance(channel, int)
                                or channel < 0):
        raise ConfigError(f"channel must be an integer >= 0 (a page or channel index); got "
                          f"{channel!r}")
    if not path.exists():
        raise InputError(f"{path}: file not found; check the path and that the data is in place")
    if not path.is_file():
        raise InputError(f"{path}: is not a regular file (a folder?); pass an image file")
    if path.stat().st_size == 0:
        raise InputError(
            f"{path}: file is empty (0 bytes); the download or export was probably interrupted, "
            "re-create or re-download it"
        )
    suffix = path.suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        raise InputError(
            f"{path}: unsupported file type {suffix or '(no extension)'!r}; "
            f"use one of {', '.join(IMAGE_SUFFIXES)}"
        )
    try:
        if suffix in TIFF_SUFFIXES:
            import tifffile

            with tifffile.TiffFile(path) as tif:
                shape = tif.series[0].shape
                page = tif.pages.first
                check_pixels(path, int(page.imagelength), int(page.imagewidth))
                if int(np.prod(shape, dtype=np.float64)) > 4 * _max_pixels():
                    raise InputError(f"{path}: the file holds {shape} values, more than SAC "
                                     "reads into memory; pick a plane with another tool")
                arr = _tiff_pages(tif)
                page = tif.pages.first
                planar = page.planarconfig == tifffile.PLANARCONFIG.SEPARATE
                samples = page.samplesperpixel
            if planar and arr.ndim == 3 and arr.shape[0] == samples > 1:
                arr = np.moveaxis(arr, 0, -1)  # channels stored as separate planes
        else:  # Pillow only: no fall-through to unrelated imageio plugins on corrupt files
            arr = _read_pillow(path)
    except InputError:
        raise
    except PermissionError as exc:
        raise InputError(f"{path}: cannot read the file ({exc.strerror}); check its "
                         "permissions") from exc
    except Exception as exc:  # decoders raise many different types for corrupt data
        raise InputError(
            f"{path}: cannot decode the file as {suffix.lstrip('.').upper()} "
            f"({type(exc).__name__}: {exc}); the file is corrupt or not really this format, "
            "re-export or re-download it"
        ) from exc
    arr = np.asarray(arr)
    if arr.dtype == object or arr.ndim == 0:
        raise InputError(f"{path}: decoder returned no pixel array; re-export the file")
    arr = _squeeze_leading(arr)
    if channel is not None:
        arr = _pick_channel(arr, channel, path)
    if not supported_shape(arr.shape):
        raise InputError(
            f"{path}: unsupported image shape {arr.shape}; expected {SUPPORTED}. For a "
            "multi-page or multi-channel file pass --channel N (from 0) to pick the plane "
            "with the nuclei; for other stacks or time series save one 2-D plane first"
        )
    if min(arr.shape[:2]) < 1:
        raise InputError(f"{path}: image has no pixels (shape {arr.shape}); re-export it")
    return arr


def read_rgb(path: str | Path) -> np.ndarray:
    """Read an image file and normalise it with :func:`to_rgb_uint8`."""
    return to_rgb_uint8(read_image(path), source=str(path))


def as_label_image(arr: np.ndarray, source: str = "labels") -> np.ndarray:
    """Validate an instance-label array and return it as uint32 (H, W); 0 = background.

    Bool masks, (H, W, 1) arrays and floats holding whole numbers are accepted
    (:func:`sac.core.labels.check_label_image`)."""
    arr = check_label_image(arr, source, bool_ok=True, float_ok=True)
    if arr.size and float(arr.max()) > np.iinfo(np.uint32).max:
        raise InputError(f"{source}: label ids exceed the uint32 range")
    return arr.astype(np.uint32)


def read_labels(path: str | Path) -> np.ndarray:
    """Read an instance-label image file (e.g. uint16 PNG) as uint32 (H, W), 0 = background."""
    return as_label_image(read_image(path), source=str(path))


def check_same_size(
    image: np.ndarray, labels: np.ndarray, image_path: str | Path, labels_path: str | Path
) -> None:
    """Raise :class:`InputError` naming both files and shapes if their (H, W) differ."""
    if tuple(image.shape[:2]) != tuple(labels.shape[:2]):
        raise InputError(
            f"size mismatch: image {image_path} has shape {tuple(image.shape)} but labels "
            f"{labels_path} have shape {tuple(labels.shape)}; height and width must be equal "
            "(check that the two files belong together and that neither was resized or cropped)"
        )


def read_pixel_size_um(path: str | Path) -> float | None:
    """Pixel width in micrometres from a TIFF's resolution tags, or None when not recorded.

    Understands ResolutionUnit CENTIMETER, INCH, MILLIMETER and MICROMETER, and ImageJ files
    (resolution in pixels per the unit named in the ImageJ description). Beware: many
    non-microscopy writers store a nominal 72 or 300 dpi, read here as ~353 or ~85 um.
    """
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            tags = tif.pages[0].tags
            xres = tags.get("XResolution")
            unit_tag = tags.get("ResolutionUnit")
            unit = int(unit_tag.value) if unit_tag is not None else 2  # TIFF default: inch
            ij_unit = (tif.imagej_metadata or {}).get("unit") if tif.is_imagej else None
    except (OSError, tifffile.TiffFileError) as exc:
        raise InputError(f"cannot read TIFF {path}: {exc}") from None
    if xres is None:
        return None
    num, den = xres.value
    if not num or not den:
        return None
    per_unit = num / den
    if ij_unit is not None:  # as in ImageJ, the description's unit wins
        um = UM_PER_NAMED_UNIT.get(str(ij_unit).strip().lower())
        return None if um is None else um / per_unit
    if unit not in UM_PER_TIFF_UNIT:
        return None
    return UM_PER_TIFF_UNIT[unit] / per_unit


def plausible_pixel_size(path: str | Path) -> float | None:
    """The pixel size a TIFF records when it is within :data:`PLAUSIBLE_PIXEL_UM`, else None
    (also for other files, and for TIFFs that cannot be read)."""
    path = Path(path)
    if path.suffix.lower() not in TIFF_SUFFIXES:
        return None
    try:
        size = read_pixel_size_um(path)
    except (OSError, ValueError, InputError):
        return None
    lo, hi = PLAUSIBLE_PIXEL_UM
    return size if size is not None and lo <= size <= hi else None
