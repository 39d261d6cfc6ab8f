"""Every inference setting of a :class:`~sac.pipeline.segmenter.Segmenter`, declared once.

:class:`SegmentOptions` is one frozen value, checked when it is made. Each field carries its
own range or choices and, when users may set it, its command-line flag and help
(:func:`option_flags`): ``sac segment``, ``sac evaluate``, ``sac refine`` and ``sac demo``
build their flags from here (:func:`sac.cli.common.add_segment_options`), the batch runner and
its workers pass the value along, and the napari widgets make one too. Adding a setting
means a field here and its use in the segmenter.

What depends on the model (a tile size above its input size must be a multiple of the
encoder's; the overlap below half the tile) is checked when a segmenter is made.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, cast

from sac.core.checks import number, replaced
from sac.core.device import PRECISIONS
from sac.core.errors import ConfigError
from sac.core.tiles import ENCODER_MULTIPLE, ENCODER_TILE, MAX_ENCODER_TILE
from sac.pipeline.decode import DECODE_WINDOW
from sac.pipeline.maps import TTA_CHOICES
from sac.sam.runtime import RUNTIMES

MASK_RESOLUTIONS = ("input", "model")


def _setting(default: Any, *, flag: str | None = None, help: str = "",
             bounds: tuple[float, float | None] | None = None, integer: bool = False,
             choices: tuple[Any, ...] | None = None, off: bool = False) -> Any:
    """A field with its range (``bounds``) or ``choices`` and, when ``flag`` is given, the
    command line's spelling; ``off``: a boolean that the flag switches off."""
    meta = {"flag": flag, "help": help, "bounds": bounds, "integer": integer,
            "choices": choices, "off": off}
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class SegmentOptions:
    """How a segmenter runs: precision, encoder runtime, tiling, batching, mask resolution,
    the automatic scale and the safeguards. The defaults are ``sac segment``'s."""

    precision: str = _setting(
        "auto", flag="--precision", choices=PRECISIONS,
        help="auto (default): bf16 where the CPU computes it natively (AVX512-BF16 or AMX; "
             "about 2x faster there) or on a GPU, fp32 elsewhere (bf16 is emulated on "
             "AVX2-only CPUs, most laptops, and several times slower)")
    runtime: str = _setting(
        "auto", flag="--runtime", choices=RUNTIMES,
        help="where the image encoder runs: auto (default) = OpenVINO on a CPU where it is "
             "installed (pip install 'segment-any-cell[openvino]'; about 2x faster, "
             "converted once into ~/.cache/sac or $SAC_CACHE), else torch")
    tile_size: int | None = _setting(
        None, flag="--tile-size", bounds=(32, MAX_ENCODER_TILE), integer=True,
        help=f"largest side in pixels (at the model's scale) of one encoder pass (default "
             f"{ENCODER_TILE}; above the model's input size a multiple of "
             f"{ENCODER_MULTIPLE}); smaller uses less memory")
    overlap: int | None = _setting(
        None, flag="--overlap", bounds=(0, None), integer=True,
        help="tile overlap in pixels (default: a quarter of the model's input size)")
    batch_size: int = _setting(64, flag="--batch-size", bounds=(1, 4096), integer=True,
                               help="prompt sets per decoder batch")
    mask_resolution: str = _setting(
        "input", flag="--mask-resolution", choices=MASK_RESOLUTIONS,
        help="input: decode each mask's edges at the input image's resolution (default); "
             "model: at the model's scale, labels resized (a little faster, blockier edges "
             "when the model shrinks the image)")
    auto_scale: bool = _setting(
        True, flag="--no-auto-scale", off=True,
        help="use the model's own scale for every image, without estimating the nucleus size")
    fill: bool = _setting(
        True, flag="--no-fill", off=True,
        help="do not complete the instance labels from the semantic mask even if the model's "
             "config asks for it (for images unlike its training data)")
    check_evidence: bool = True  # sac.pipeline.evidence: no nuclei from flat or noise data
    tta: int = _setting(1, choices=TTA_CHOICES)  # views the generator's maps average over
    decode_window: int = _setting(DECODE_WINDOW, bounds=(4, 64), integer=True)
    # the smallest decoder window, in embedding tokens a side (larger nuclei get larger ones)

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value, meta = getattr(self, f.name), f.metadata
            if value is None or not meta:
                continue
            if meta["choices"] is not None and value not in meta["choices"]:
                shown = ", ".join(str(c) for c in meta["choices"])
                raise ConfigError(f"{f.name.replace('_', ' ')} must be one of {shown}; got "
                                  f"{value!r}")
            if meta["bounds"] is not None:
                number(f.name, value, *meta["bounds"], integer=meta["integer"])
        for name in ("auto_scale", "fill", "check_evidence"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be True or False; got {getattr(self, name)!r}")

    def replace(self, **changes: Any) -> SegmentOptions:
        """A copy with ``changes`` (checked like a new value; unknown names refused)."""
        return cast(SegmentOptions, replaced(self, "segmentation option", changes))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready record (for reports)."""
        return dataclasses.asdict(self)


def option_flags() -> dict[str, dict[str, Any]]:
    """The settings users may set on the command line: field name -> its metadata (flag,
    help, bounds, integer, choices, off), in declaration order."""
    return {f.name: dict(f.metadata) for f in dataclasses.fields(SegmentOptions)
            if f.metadata and f.metadata["flag"]}
