"""One rule for numbers from users: command-line options, model configs and API arguments.

Every number is checked to be finite and inside its range before any work, with a message
that names the option or key, the range and the value given. :func:`number` raises
:class:`~sac.core.errors.ConfigError` (exit code 4); :func:`option` wraps it as an ``argparse``
``type=`` so that a bad option is refused while the command line is parsed.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import Any

from sac.core.errors import ConfigError

# resampled images above this many pixels are refused before allocation (12 bytes a pixel
# for the float image alone): larger inputs are whole slides (--wsi)
MAX_PIXELS = 400_000_000


def number(name: str, value: Any, lo: float | None = None, hi: float | None = None, *,
           integer: bool = False, lo_open: bool = False) -> Any:
    """``value`` if it is a finite number (an integer when ``integer``) in [lo, hi] (lo
    excluded when ``lo_open``); else :class:`ConfigError` naming ``name``."""
    want = "an integer" if integer else "a number"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{name} must be {want}; got {value!r}")
    if integer and not float(value).is_integer():
        raise ConfigError(f"{name} must be an integer; got {value!r}")
    if not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number; got {value!r}")
    below = lo is not None and (value <= lo if lo_open else value < lo)
    if below or (hi is not None and value > hi):
        raise ConfigError(f"{name} must be {_range(lo, hi, lo_open)}; got {value!r}")
    return int(value) if integer else value


def _range(lo: float | None, hi: float | None, lo_open: bool) -> str:
    if lo is not None and hi is not None:
        return f"in {'(' if lo_open else '['}{lo:g}, {hi:g}]"
    if lo is not None:
        return f"{'>' if lo_open else '>='} {lo:g}"
    return f"<= {hi:g}"


def option(flag: str, lo: float | None = None, hi: float | None = None, *,
           integer: bool = False, lo_open: bool = False) -> Callable[[str], Any]:
    """An ``argparse`` type for ``flag``: parses the text and applies :func:`number`."""
    def parse(text: str) -> Any:
        try:
            value: Any = int(text) if integer else float(text)
        except ValueError:
            kind = "an integer" if integer else "a number"
            raise argparse.ArgumentTypeError(f"must be {kind}; got {text!r}") from None
        try:
            return number(flag, value, lo, hi, integer=integer, lo_open=lo_open)
        except ConfigError as exc:
            raise argparse.ArgumentTypeError(str(exc).removeprefix(f"{flag} ")) from None

    parse.__name__ = "integer" if integer else "number"  # argparse names it in errors
    return parse


def check_resampled(shape: tuple[int, ...], size: tuple[int, int], scale: float,
                    source: str) -> None:
    """Refuse resampling ``shape`` by ``scale`` to ``size`` (H, W) when that is over
    :data:`MAX_PIXELS`, before anything is allocated, saying what it would need."""
    h, w = size
    if h * w > MAX_PIXELS:
        gb = h * w * 12 / 1e9
        raise ConfigError(f"{source}: resampling {shape[1]}x{shape[0]} by {scale:g} gives "
                          f"{w}x{h} pixels (about {gb:,.0f} GB for the image alone), more "
                          f"than the {MAX_PIXELS / 1e6:.0f} megapixels SAC resamples in "
                          "memory; check --scale/--pixel-size/--diameter, or segment it as a "
                          "whole slide (--wsi)")


def check_pixel_size(pixel_size_um: float | None) -> float | None:
    """None, or the pixel size as a positive finite float (micrometres): the one check every
    writer and reader of pixel sizes uses."""
    if pixel_size_um is None:
        return None
    size = float(pixel_size_um)
    if not (math.isfinite(size) and size > 0):
        raise ConfigError(f"pixel size must be a positive number of micrometres, got {size}")
    return size


def replaced(value: Any, what: str, changes: dict[str, Any]) -> Any:
    """A copy of the frozen dataclass ``value`` with ``changes``, checked as a new value is;
    names that are not fields are refused (:class:`ConfigError` naming ``what``)."""
    import dataclasses

    known = [f.name for f in dataclasses.fields(value)]
    unknown = sorted(set(changes) - set(known))
    if unknown:
        raise ConfigError(f"unknown {what}(s) {unknown}; known: {known}")
    return dataclasses.replace(value, **changes)
