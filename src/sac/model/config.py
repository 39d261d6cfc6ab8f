"""The settings of a trained SAC model, stored as ``config.json`` in its model folder.

Everything inference needs besides tensors lives here: which base SAM and which exact weights
(sha256), the LoRA and generator layout, how prompts are made, the detection thresholds and the
scale the model was trained at. Parsing is strict: unknown or missing keys, wrong types and
values out of range (NaN, infinite, a threshold above 1) are reported by name, so a
hand-edited or foreign file fails clearly instead of loading half. Only the keys in
:data:`OPTIONAL_KEYS` may be left out.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

from sac.core.checks import number
from sac.core.errors import ConfigError

FORMAT = "sac-model"
# keys config.json may leave out, and what leaving them out means: no recorded nucleus size
# (no automatic scale), no training record, no version note, the backbone as registered
#: nucleus sizes (px at the model's input) a config may record
NUCLEUS_PX = (0.5, 10000.0)
OPTIONAL_KEYS = frozenset({"nucleus_diameter", "nucleus_diameter_range", "training",
                           "sac_version", "backbone_overrides", "centre_target",
                           "size_head", "mask_logit", "min_fg", "file_sha256",
                           "auto_scale"})
FORMAT_VERSION = 1
MASK_LOGIT_LIMIT = 8.0  # |mask_logit| beyond this keeps (or drops) nearly every pixel

PromptMode = Literal["points", "boxes", "points+boxes"]
PromptStrategy = Literal["centroid", "probability"]
BaseSource = Literal["bundled", "file", "included"]
CentreTarget = Literal["gaussian", "distance", "hv"]
PARTS = ("lora", "mask_decoder", "prompt_encoder", "generator")
PROMPT_MODES: tuple[str, ...] = typing.get_args(PromptMode)
PROMPT_STRATEGIES: tuple[str, ...] = typing.get_args(PromptStrategy)


@dataclass(frozen=True)
class PromptConfig:
    """How SAM is prompted: per nucleus (instances) and per tile (the paper's semantic mask).

    ``mode`` picks points (one positive plus negatives), boxes, or both; ``strategy`` places the
    positive point at the detected nucleus's centroid or at its most probable pixel. Negatives
    are the centres of up to ``neighbour_negatives`` touching nuclei and up to
    ``background_negatives`` confident background pixels. A semantic prompt set holds at most
    ``semantic_points`` points (the paper's "number of prompts").

    Instance sets have no negatives by default: over 3 seeds each at 960 steps, models trained
    (and run) without them beat those with 2 neighbour + 1 background negatives on every
    seed (MoNuSeg AJI 0.585 +- 0.001 against 0.576 +- 0.001, PQ 0.568 against 0.552;
    ``benchmarks/results/ablations/ablations_train_negatives.md``). Models trained with
    negatives keep theirs in their config.
    """

    mode: PromptMode = "points"
    strategy: PromptStrategy = "centroid"
    neighbour_negatives: int = 0
    background_negatives: int = 0
    semantic_points: int = 64
    box_pad: float = 2.0

    def __post_init__(self) -> None:
        if self.mode not in PROMPT_MODES:
            raise ConfigError(f"prompt mode must be one of {PROMPT_MODES}; got {self.mode!r}")
        if self.strategy not in PROMPT_STRATEGIES:
            raise ConfigError(
                f"prompt strategy must be one of {PROMPT_STRATEGIES}; got {self.strategy!r}")
        number("neighbour_negatives", self.neighbour_negatives, 0, 64, integer=True)
        number("background_negatives", self.background_negatives, 0, 64, integer=True)
        number("semantic_points", self.semantic_points, 1, 4096, integer=True)
        number("box_pad", self.box_pad, 0, 64)

    @property
    def use_points(self) -> bool:
        return self.mode in ("points", "points+boxes")

    @property
    def use_boxes(self) -> bool:
        return self.mode in ("boxes", "points+boxes")


@dataclass(frozen=True)
class Thresholds:
    """Detection and post-processing thresholds (generator probabilities, SAM quality)."""

    fg: float = 0.5  # generator foreground probability
    centre: float = 0.3  # minimum centre-map peak for a nucleus seed
    min_distance: int = 3  # px between seeds, at the model's scale
    min_area: int = 8  # px, smallest nucleus kept, at the model's scale
    min_score: float = 0.3  # SAM's predicted IoU below which a mask is dropped
    min_visible: float = 0.5  # share of a mask left free after better masks, else a duplicate
    # completion from the semantic mask (sac.pipeline.complete); chosen by ``sac tune``
    fill_new_area: int = 0  # px at the model's scale; uncovered semantic regions -> nuclei
    fill_attach: bool = False  # uncovered semantic pixels touching a nucleus join it
    # SAM's mask logit above which a pixel belongs to a nucleus (SAM's own: 0); lower grows
    # every mask, higher shrinks it; chosen by ``sac tune``
    mask_logit: float = 0.0
    # masks where the upper quartile of the generator's foreground probability is below this
    # are dropped (SAM also answers prompts on background); 0 = off; chosen by ``sac tune``
    min_fg: float = 0.0

    def __post_init__(self) -> None:
        for name in ("fg", "centre", "min_score", "min_visible", "min_fg"):
            number(name, getattr(self, name), 0, 1)
        number("min_distance", self.min_distance, 1, 1000, integer=True)
        number("min_area", self.min_area, 0, 10**6, integer=True)
        number("fill_new_area", self.fill_new_area, 0, 10**6, integer=True)
        number("mask_logit", self.mask_logit, -MASK_LOGIT_LIMIT, MASK_LOGIT_LIMIT)

    @property
    def fills(self) -> bool:
        """Whether the instance labels are completed from the semantic mask."""
        return self.fill_new_area > 0 or self.fill_attach

    def without_fill(self) -> Thresholds:
        """The same thresholds with the completion from the semantic mask off."""
        return dataclasses.replace(self, fill_new_area=0, fill_attach=False)


@dataclass(frozen=True)
class BaseWeights:
    """The base SAM weights the trained parts were fitted on.

    ``bundled``: the installed LiteMedSAM file; ``file``: a checkpoint the user passes at load
    time; ``included``: ``base.safetensors`` inside the model folder (small or custom bases).
    """

    source: BaseSource
    sha256: str
    name: str = ""


@dataclass(frozen=True)
class SACConfig:
    """Everything in ``config.json`` (see the module docstring)."""

    backbone: str
    base: BaseWeights
    lora_rank: int = 4
    lora_alpha: float = 4.0
    lora_blocks: tuple[int, ...] | None = None
    generator_widths: tuple[int, ...] = (16, 32, 64, 128)
    centre_target: CentreTarget = "gaussian"  # what the generator's centre map was trained on
    prompts: PromptConfig = PromptConfig()
    thresholds: Thresholds = Thresholds()
    decode_window: int = 16  # embedding tokens a side for per-nucleus decoding in training
    input_scale: float = 1.0  # resampling applied to images of the training data's scale
    pixel_size_um: float | None = None  # pixel size at the model's input, when known
    # median nucleus diameter of the training data at the model's input (px); None: unknown,
    # and no automatic scale (sac.pipeline.size)
    nucleus_diameter: float | None = None
    nucleus_diameter_range: tuple[float, float] | None = None  # 5th-95th percentile per image
    # how the size head (size_head.safetensors, sac.model.size_head) was fitted; None: the
    # model has none, and the automatic scale reads the generator's foreground map alone
    size_head: dict[str, Any] | None = None
    modality: str = "any"  # "he", "fluorescence" or "any"
    # False: the model was fine-tuned on a few images of one setting at one scale (few-shot),
    # and that scale is its images' own: the automatic scale keeps it (a user's scale, pixel
    # size or diameter still applies)
    auto_scale: bool = True
    backbone_overrides: dict[str, Any] = field(default_factory=dict)  # tiny test models only
    dtype: str = "float32"  # storage dtype of the trained tensors
    parts: tuple[str, ...] = ("lora", "mask_decoder", "generator")  # safetensors files
    training: dict[str, Any] = field(default_factory=dict)  # data summary, command, metrics
    # sha256 of each stored file (parts, size head) when saved; checked at load (models saved
    # before it was recorded have none and load unchecked)
    file_sha256: dict[str, str] = field(default_factory=dict)
    format: str = FORMAT
    format_version: int = FORMAT_VERSION
    sac_version: str = ""

    def __post_init__(self) -> None:
        number("lora_rank", self.lora_rank, 0, 256, integer=True)
        number("lora_alpha", self.lora_alpha, 0, 1e4, lo_open=True)
        number("input_scale", self.input_scale, 0.05, 20)
        if self.pixel_size_um is not None:
            number("pixel_size_um", self.pixel_size_um, 0, 100, lo_open=True)
        if not self.generator_widths:
            raise ConfigError("generator_widths must list at least one channel count")
        for width in self.generator_widths:
            number("generator_widths", width, 1, 1024, integer=True)
        if self.centre_target not in ("gaussian", "distance", "hv"):
            raise ConfigError(f"centre_target must be 'gaussian', 'distance' or 'hv'; got "
                              f"{self.centre_target!r}")
        if self.lora_blocks is not None:
            for block in self.lora_blocks:
                number("lora_blocks", block, 0, 1000, integer=True)
        lo, hi = NUCLEUS_PX
        if self.nucleus_diameter is not None and not (
                math.isfinite(self.nucleus_diameter) and lo <= self.nucleus_diameter <= hi):
            raise ConfigError(f"nucleus_diameter must be a nucleus size in pixels, {lo}-{hi}; "
                              f"got {self.nucleus_diameter}")
        rng = self.nucleus_diameter_range
        if rng is not None and not (len(rng) == 2 and all(math.isfinite(v) for v in rng)
                                    and lo <= rng[0] <= rng[1] <= hi):
            raise ConfigError(f"nucleus_diameter_range must be [low, high] with {lo} <= low "
                              f"<= high <= {hi} pixels; got {list(rng)}")
        if self.size_head is not None and "factors" in self.size_head:
            factors = self.size_head["factors"]
            if not (isinstance(factors, list) and factors and all(
                    isinstance(f, int | float) and not isinstance(f, bool)
                    and math.isfinite(f) and 0.01 <= f <= 100 for f in factors)):
                raise ConfigError(f"size_head.factors must list the resampling factors the "
                                  f"head was fitted at (numbers in 0.01-100); got {factors!r}")
        number("decode_window", self.decode_window, 4, 64, integer=True)
        bad = sorted(set(self.parts) - set(PARTS))
        if bad:
            raise ConfigError(f"unknown model part(s) {bad}; known: {PARTS}")
        if ("lora" in self.parts) != (self.lora_rank > 0):
            raise ConfigError("parts must list 'lora' exactly when lora_rank > 0")
        if "generator" not in self.parts:
            raise ConfigError("a SAC model always stores its prompt generator")
        if self.dtype not in ("float32", "float16", "bfloat16"):
            raise ConfigError(f"dtype must be float32, float16 or bfloat16; got {self.dtype!r}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples become lists)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Any, source: str = "config.json") -> SACConfig:
        """Strictly parse a dict read from ``config.json``; errors name the offending key."""
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: expected a JSON object, got {type(data).__name__}")
        if data.get("format") != FORMAT:
            raise ConfigError(f"{source}: not a SAC model config (format {data.get('format')!r},"
                              f" expected {FORMAT!r})")
        version = data.get("format_version")
        if version != FORMAT_VERSION:
            raise ConfigError(f"{source}: format_version {version!r} is not supported by this "
                              f"version of sac (expects {FORMAT_VERSION}); upgrade sac")
        return _build(cls, data, source)


def _build(cls: type, data: dict[str, Any], where: str) -> Any:
    """Instantiate dataclass ``cls`` from ``data``, checking keys and value types recursively."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}")
    missing = [k for k in sorted(names - OPTIONAL_KEYS) if k not in data]
    if missing:
        raise ConfigError(f"{where}: missing key(s) {missing}")
    kwargs = {k: _convert(hints[k], v, f"{where}: {k}") for k, v in data.items()}
    try:
        return cls(**kwargs)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _convert(hint: Any, value: Any, where: str) -> Any:
    """Check ``value`` against a type hint and convert lists to tuples where declared."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _convert(inner[0], value, where)
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected an object")
        return _build(hint, value, where)  # type: ignore[arg-type]
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is not one of {args}")
        return value
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: expected a list")
        return tuple(_convert(args[0], v, where) for v in value)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected an object")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if hint is str and not isinstance(value, str):
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    if hint is bool and not isinstance(value, bool):
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    return value
