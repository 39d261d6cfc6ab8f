"""A whole training run from one set of options: ``sac train`` and :func:`sac.train` alike.

:class:`TrainOptions` holds every setting of a run (the CLI's options, by the same names);
:func:`run_training` opens the data, builds or loads the model, trains, tunes the thresholds
and fits the size head. :func:`train` is the keyword form for Python users.

Fine-tuning a trained model on a handful of images (``init`` given, at most
:data:`FEW_SHOT_MAX_IMAGES` training images, no ``epochs``/``steps_per_epoch``) follows the
few-shot recipe (:data:`FEW_SHOT`): a fixed, short schedule sized to finish in minutes on two
cores, on all the labelled images (none held back), thresholds tuned on them, the model's own
size head dropped rather than refitted (too few images to fit one), and its scale kept for
every image (``auto_scale`` false: a few images of one setting teach it that setting's scale,
and its own size reading, without a size head, misreads images its generator splits).
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sac.core.errors import ConfigError, InputError

if TYPE_CHECKING:
    from sac.model.config import PromptMode, PromptStrategy
    from sac.training.trainer import TrainConfig, TrainResult

MODALITY_OF_FORMAT = {"monuseg": "he", "dsb2018": "any", "folder": "any"}
#: model options a trained starting model fixes (its weights were trained with its own)
FIXED_BY_INIT = ("backbone", "tiny", "lora_rank", "lora_alpha", "lora_blocks", "prompt_mode",
                 "prompt_strategy", "neighbour_negatives", "background_negatives",
                 "semantic_points", "decode_window", "centre_target")
#: fine-tuning from a trained model on at most this many images uses :data:`FEW_SHOT`
FEW_SHOT_MAX_IMAGES = 20


@dataclass(frozen=True)
class FewShotRecipe:
    """The schedule for fine-tuning a trained model on 1-20 images: short (about 6 minutes
    of 2-crop steps on a 2-core CPU with native bf16 from five images on, 1-2 minutes for one
    or two), every image training and the last
    epoch kept (one or two held-back images choose epochs by noise: on one draw of five
    BitDepth 40x images the held-back image preferred the starting model, 19 others the
    fine-tuned one by 0.03 AJI), then the thresholds tuned on all the images."""

    epochs: int = 4
    steps_per_epoch: int = 25
    warmup_steps: int = 10
    # fewer images, fewer steps: each image gives at most this many steps per epoch (one or
    # two images seen 200 times are learnt by heart: scale steps with the images)
    steps_per_image: int = 5
    # fewer labelled images than this get a warning: on BitDepth 40x (benchmarks/fewshot.py)
    # one or two images lowered the AJI on the other images, five raised it
    advised_images: int = 5
    # tuned afterwards on all the labelled images: the detection thresholds judged by SAM's
    # masks too, then SAM's mask threshold and the foreground cut
    settings: tuple[str, ...] = ("centre", "min_distance", "fg", "mask_logit", "min_fg")


FEW_SHOT = FewShotRecipe()


@dataclass(frozen=True)
class TrainOptions:
    """Every setting of a training run; ``None`` means the default (or, for the model's
    settings, the ``init`` model's own). Names and meanings are ``sac train``'s options."""

    data: tuple[Path, ...]
    format: tuple[str, ...]
    output: Path
    split: tuple[str | None, ...] = (None,)
    share: tuple[float, ...] = ()  # per ``data`` folder: its weight in the crops (default equal)
    resume: bool = False
    overwrite: bool = False
    init: str | None = None
    # model (fixed by ``init``)
    backbone: str | None = None
    sam_checkpoint: Path | None = None
    tiny: bool | None = None
    lora_rank: int | None = None
    lora_alpha: float | None = None
    lora_blocks: str | None = None
    train_parts: str = "mask_decoder,generator"
    prompt_mode: PromptMode | None = None
    prompt_strategy: PromptStrategy | None = None
    neighbour_negatives: int | None = None
    background_negatives: int | None = None
    semantic_points: int | None = None
    decode_window: int | None = None
    centre_target: str | None = None
    scale: float | None = None
    pixel_size: float | None = None
    modality: str | None = None
    # optimisation
    epochs: int | None = None
    steps_per_epoch: int | None = None
    batch_size: int = 2
    generator_batch: int = 8
    prompts_per_crop: int = 16
    generator_prompt_prob: float = 0.5
    augment: str = "basic"
    sparse_crops: float = 0.15
    synthetic_negatives: float = 0.1
    hard_negatives: float = 0.0
    generator_steps: int = 0
    lr: float = 3e-4
    generator_lr: float = 2e-3
    seed: int = 0
    select_metric: str = "aji"
    limit: int | None = None
    val_limit: int | None = None
    device: str = "cpu"
    precision: str = "auto"
    tune: bool = True
    size_head: bool | None = None  # None: fitted unless the few-shot recipe runs
    fill: bool = True
    quiet: bool = False
    command: str = field(default="", compare=False)  # how the run was started, for the record

    def __post_init__(self) -> None:
        object.__setattr__(self, "data", tuple(Path(p) for p in self.data))
        object.__setattr__(self, "output", Path(self.output))
        object.__setattr__(self, "share", tuple(float(w) for w in self.share))
        if self.share and (len(self.data) < 2 or len(self.share) != len(self.data)
                           or min(self.share) <= 0):
            raise ConfigError(f"--share was given {len(self.share)} time(s) for "
                              f"{len(self.data)} --data folder(s): give one positive weight "
                              "per folder, in the same order, and only with several folders")
        if self.init is not None:
            given = [f"--{n.replace('_', '-')}" for n in FIXED_BY_INIT
                     if getattr(self, n) is not None]
            if given:
                raise ConfigError(f"--init: {', '.join(given)} cannot be given with it (the "
                                  "model's weights were trained with its own settings, which "
                                  "sac train keeps)")


def _parts(value: str, rank: int, fresh: bool = True) -> tuple[str, ...]:
    from sac.model.config import PARTS

    parts = [p.strip() for p in value.split(",") if p.strip()]
    bad = [p for p in parts if p not in PARTS[1:]]
    if bad:
        raise ConfigError(f"--train-parts: unknown part(s) {bad}; choose from {PARTS[1:]}")
    if fresh and "generator" not in parts:
        raise ConfigError("--train-parts must include generator (it has no pretrained weights)")
    return (("lora",) if rank > 0 else ()) + tuple(p for p in PARTS[1:] if p in parts)


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


StepHook = Callable[[int, int, dict[str, float]], None]


def run_training(opts: TrainOptions, say: Callable[[str], None] = _stderr,
                 on_step: StepHook | None = None) -> TrainResult:
    """Train as ``opts`` says (one process of several under torchrun, or alone).

    ``say`` receives the run's messages (skipped files, plan, tuning, size head);
    ``on_step(step, total, losses)`` runs after every joint step (an exception it raises
    stops the run; ``resume=True`` continues it later)."""
    import torch

    from sac.core.device import resolve_device, use_bf16
    from sac.data.open import open_training_data
    from sac.pipeline.size import training_size
    from sac.training.distributed import init_distributed, local_device
    from sac.training.sampler import load_images, require_nuclei
    from sac.training.trainer import Trainer

    init = None
    if opts.init is not None:
        from sac.model import read_config, resolve_model

        init = read_config(resolve_model(opts.init))
    scale = opts.scale if opts.scale is not None else init.input_scale if init else 1.0
    device = local_device(opts.device)
    sync = init_distributed(resolve_device(device))
    bf16 = use_bf16(opts.precision, resolve_device(device))
    kinds = {MODALITY_OF_FORMAT[f] for f in opts.format}
    modality = opts.modality or (kinds.pop() if len(kinds) == 1 else "any")
    if opts.modality is None and modality == "any" and init is not None:
        modality = init.modality  # a folder of images like the --init model's
    dataset, train_names, val_names = open_training_data(list(opts.data), list(opts.format),
                                                         list(opts.split), opts.seed)
    train, problems = load_images(dataset, train_names, scale, opts.limit)
    val, val_problems = load_images(dataset, val_names, scale, opts.val_limit)
    for msg in problems + val_problems:
        say(f"sac train: skipped {msg}")
    if not train:
        raise InputError(f"the training set is empty: no usable image/label pairs in "
                         f"{[str(p) for p in opts.data]} ({len(problems)} problem(s) listed "
                         "above)")
    require_nuclei(train, "training")
    require_nuclei(val, "validation")
    few_shot = init is not None and len(train) <= FEW_SHOT_MAX_IMAGES and \
        opts.epochs is None and opts.steps_per_epoch is None
    if few_shot:  # every labelled image trains: one held back is too few to choose an epoch
        train, val = train + val, []
        if len(train) < FEW_SHOT.advised_images:
            say(f"sac train: warning: fine-tuning on {len(train)} labelled image(s); with one "
                f"or two, the benchmark's fine-tuned models scored lower than the starting "
                f"model on other images of the same setting (benchmarks/fewshot.py): label "
                f"at least {FEW_SHOT.advised_images}, and compare both on an image you did not "
                "train on (sac evaluate)")
    cfg = _train_config(opts, dataset, modality, bf16, few_shot, init is not None, len(train))
    torch.manual_seed(opts.seed)
    pixel = None if opts.pixel_size is None else opts.pixel_size / scale
    if pixel is None and init is not None and scale == init.input_scale:
        pixel = init.pixel_size_um  # same input scale: the model's pixel size still holds
    diameter, diameter_range = training_size([im.labels for im in train])
    data = {"input_scale": scale, "pixel_size_um": pixel, "modality": modality,
            "nucleus_diameter": diameter, "nucleus_diameter_range": diameter_range,
            "auto_scale": not few_shot}  # a few images of one setting: their scale is its own
    model = _model(opts, device, data)
    one = len(opts.data) == 1
    summary = {"data": str(opts.data[0]) if one else [str(d) for d in opts.data],
               "format": opts.format[0] if len(opts.format) == 1 else list(opts.format),
               "split": opts.split[0] if len(opts.split) == 1 else list(opts.split),
               "train_images": len(train), "val_images": len(val),
               **({"init": str(opts.init), "few_shot": few_shot} if init is not None else {}),
               "skipped": problems + val_problems}
    trainer = Trainer(model, train, val, opts.output, cfg, summary, sync)
    if sync.main:
        procs = f" in each of {sync.world} processes" if sync.world > 1 else ""
        recipe = " (the few-shot recipe for fine-tuning on 1-20 images)" if few_shot else ""
        say(f"training on {len(train)} images, validating on {len(val)}; "
            f"{trainer.total_steps} steps of {cfg.batch_size} crops{procs}{recipe}")
    total = trainer.total_steps
    step_hook = None if on_step is None else (lambda step, loss: on_step(step, total, loss))
    result = trainer.run(resume=opts.resume, overwrite=opts.overwrite,
                         progress=not opts.quiet and sync.main, command=opts.command,
                         on_step=step_hook)
    result.skipped = problems + val_problems
    if not sync.main:
        return result
    if result.best_epoch == 0 and opts.init is not None:
        from sac.model import resolve_model
        from sac.model.store import copy_model

        copy_model(resolve_model(opts.init), result.model_dir)
        say(f"sac train: no epoch beat the starting model {opts.init} on the validation "
            f"images ({cfg.select_metric} {result.best_metric:.3f}); {result.model_dir} holds "
            "it unchanged")
        return result
    if opts.tune and (few_shot or (val and result.best_metric is not None)):
        from sac.training.tune import DEFAULT_SETTINGS, at_own_size, describe, tune_model_folder

        images, what = (train, "all the labelled images") if few_shot else \
            (val, "the validation images")
        full = None if not opts.fill else at_own_size(dataset, images, scale)
        s = tune_model_folder(result.model_dir, images, None, bf16, fill=opts.fill, full=full,
                              settings=FEW_SHOT.settings if few_shot else DEFAULT_SETTINGS)
        say(f"tuned on {what}: {describe(s)}")
    fit_size = opts.size_head if opts.size_head is not None else not few_shot
    if diameter is not None and fit_size:
        from sac.training.size_fit import add_size_head

        try:
            rec = add_size_head(result.model_dir, dataset, train_names, val_names)
        except ValueError as exc:  # too few usable images: the model works without one
            say(f"sac train: no size head ({exc}); the foreground map alone will estimate "
                "nucleus sizes")
        else:
            say(f"size head fitted on {rec['train_views']} views of {rec['train_images']} "
                f"training images: {rec.get('val', rec['train'])}")
    return result


def _train_config(opts: TrainOptions, dataset: Any, modality: str, bf16: bool,
                  few_shot: bool, fine_tune: bool = False, n_images: int = 0) -> TrainConfig:
    """The optimisation settings of ``opts`` (the few-shot schedule where it applies; a
    fine-tuning competes with its starting model)."""
    from sac.data.open import dataset_keys
    from sac.training.augment import AugmentConfig
    from sac.training.generator_stage import GeneratorStageConfig
    from sac.training.negatives import NegativeConfig
    from sac.training.step import StepConfig
    from sac.training.trainer import TrainConfig

    augment = AugmentConfig.robust if opts.augment == "robust" else AugmentConfig.for_modality
    formats = list(opts.format) * len(opts.data) if len(opts.format) == 1 else list(opts.format)
    # mixed data: each dataset augmented for its own image type (stain jitter for H&E)
    by_source = {} if opts.modality or len(opts.data) == 1 else {
        key: augment(MODALITY_OF_FORMAT[f], stain_bias=0.02)
        for key, f in zip(dataset_keys(formats), formats, strict=True)}
    shares = dict(zip(dataset_keys(formats), opts.share, strict=True)) if opts.share else {}
    schedule: dict[str, Any] = {"epochs": opts.epochs or 10,
                                "steps_per_epoch": opts.steps_per_epoch}
    if few_shot:
        steps = min(FEW_SHOT.steps_per_epoch, FEW_SHOT.steps_per_image * n_images)
        schedule = {"epochs": FEW_SHOT.epochs, "steps_per_epoch": steps,
                    "warmup_steps": min(FEW_SHOT.warmup_steps, steps)}
    return TrainConfig(
        **schedule, batch_size=opts.batch_size, generator_batch=opts.generator_batch,
        lr=opts.lr, generator_lr=opts.generator_lr, seed=opts.seed,
        select_metric=opts.select_metric, val_limit=opts.val_limit,
        step=StepConfig(prompts_per_crop=opts.prompts_per_crop,
                        generator_prompt_prob=opts.generator_prompt_prob, bf16=bf16),
        augment=augment(modality, stain_bias=0.02), source_augment=by_source,
        source_shares=shares,
        negatives=NegativeConfig(opts.sparse_crops, opts.synthetic_negatives,
                                 hard=opts.hard_negatives),
        generator_stage=GeneratorStageConfig(steps=opts.generator_steps,
                                             batch_size=opts.generator_batch,
                                             lr=opts.generator_lr, bf16=bf16),
        start_is_candidate=fine_tune,
    )


def _model(opts: TrainOptions, device: str, data: dict[str, Any]) -> Any:
    """The model to train: ``init`` loaded for fine-tuning, or a fresh one on the base SAM."""
    from sac.model import PromptConfig, create_model, load_for_training
    from sac.modeling import LoRAConfig
    from sac.sam.backbones import DEFAULT_BACKBONE

    if opts.init is not None:
        return load_for_training(opts.init, _parts(opts.train_parts, 0, False), device,
                                 opts.sam_checkpoint, **data)
    rank = 4 if opts.lora_rank is None else opts.lora_rank
    blocks = None if opts.lora_blocks is None else tuple(
        int(b) for b in opts.lora_blocks.split(",") if b.strip())
    lora = LoRAConfig(rank, opts.lora_alpha or float(max(rank, 1)), blocks)
    base = PromptConfig()
    prompts = PromptConfig(
        opts.prompt_mode or base.mode, opts.prompt_strategy or base.strategy,
        _or(opts.neighbour_negatives, base.neighbour_negatives),
        _or(opts.background_negatives, base.background_negatives),
        _or(opts.semantic_points, base.semantic_points))
    return create_model(opts.backbone or DEFAULT_BACKBONE, opts.sam_checkpoint,
                        tiny=bool(opts.tiny), lora=lora, prompts=prompts,
                        parts=_parts(opts.train_parts, rank), device=device,
                        decode_window=_or(opts.decode_window, 16),
                        centre_target=opts.centre_target or "gaussian", **data)


def _or(value: int | None, default: int) -> int:
    return default if value is None else value


def train(data: str | Path | Sequence[str | Path], output: str | Path, *,
          format: str | Sequence[str] = "folder", split: str | Sequence[str | None] | None = None,
          init: str | Path | None = None, on_step: StepHook | None = None,
          say: Callable[[str], None] = _stderr, **options: Any) -> TrainResult:
    """Train a model on labelled images from Python; ``sac train`` with keyword arguments.

    ``data`` is a dataset folder (or several), ``format`` its layout (``folder``: images/ and
    labels/ side by side; ``monuseg``; ``dsb2018``), ``init`` a trained model to fine-tune
    (folder or shipped name). ``options`` are :class:`TrainOptions` fields (``epochs``,
    ``lr``, ``precision``, ...). Returns the run's :class:`TrainResult`; the model is in
    ``result.model_dir``. Example: ``sac.train("my_folder", "runs/mine",
    init="sac-lite-nuclei")``."""
    unknown = sorted(set(options) - {f.name for f in dataclasses.fields(TrainOptions)})
    if unknown:
        raise ConfigError(f"sac.train: unknown option(s) {unknown}; see sac.training.run."
                          "TrainOptions for the settings")
    paths = (data,) if isinstance(data, str | Path) else tuple(data)
    formats = (format,) if isinstance(format, str) else tuple(format)
    splits = (split,) if split is None or isinstance(split, str) else tuple(split)
    options.setdefault("command", f"sac.train({paths[0]!s}, {output!s}, ...)")
    opts = TrainOptions(data=tuple(Path(p) for p in paths), format=formats,
                        output=Path(output), split=splits,
                        init=None if init is None else str(init), **options)
    return run_training(opts, say, on_step)
