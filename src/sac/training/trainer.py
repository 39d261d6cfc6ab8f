"""The training loop: steps, validation each epoch, best model, resumable checkpoints, logs.

A run folder holds:

* ``model/``: the best model so far on the validation images (a normal model folder);
* ``last/state.pt``: everything needed to resume (trained tensors, optimiser, scheduler, step,
  the current epoch's time and loss sums so far; plain tensors and numbers only, read with
  ``weights_only=True``);
* ``train_config.json``: the settings; a resumed run must use the same ones;
* ``log.jsonl``: one JSON object per epoch (losses, learning rate, speed, validation metrics).

Each crop and its prompts come from generators seeded by ``(seed, step, crop index)``, so a
run that is interrupted and resumed ends with the same weights as one that is not, and N
data-parallel processes of batch B (:mod:`sac.training.distributed`) train as one process of
batch N x B on the same crops; rank 0 alone writes the run folder.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sac.core.errors import ConfigError, InputError
from sac.core.fileio import atomic_path
from sac.model import SACModel, save_model
from sac.training.augment import AugmentConfig
from sac.training.distributed import barrier, broadcast_from_main, wrap
from sac.training.generator_stage import GeneratorStageConfig, train_generator, warmup_cosine
from sac.training.mining import false_detections
from sac.training.negatives import NegativeConfig
from sac.training.resume import damaged_advice, read_state, setting_changes
from sac.training.sampler import CropSampler, TrainImage, first_per_source
from sac.training.step import StepConfig
from sac.training.sync import Sync
from sac.training.validation import validate

SELECT_METRICS = ("aji", "pq", "dsb_score", "f1_obj", "pixel_dice")


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings of a run (the model's own settings live in its config)."""

    epochs: int = 10
    steps_per_epoch: int | None = None  # default: crops covering the training area once
    batch_size: int = 2
    generator_batch: int = 8  # crops per step for the generator (the SAM crops plus extra)
    lr: float = 3e-4  # LoRA, mask decoder (and prompt encoder if trained)
    generator_lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 50
    grad_clip: float = 1.0
    seed: int = 0
    select_metric: str = "aji"
    val_limit: int | None = None
    checkpoint_every: int = 50  # steps between resumable checkpoints inside an epoch
    save_dtype: str = "float16"
    step: StepConfig = field(default_factory=StepConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    # a source's own augmentation in place of ``augment`` (mixed data: keys are the sources)
    source_augment: dict[str, AugmentConfig] = field(default_factory=dict)
    # mixed data: a source's weight in the crops (relative; absent sources weigh 1)
    source_shares: dict[str, float] = field(default_factory=dict)
    generator_stage: GeneratorStageConfig = field(default_factory=GeneratorStageConfig)
    negatives: NegativeConfig = field(default_factory=NegativeConfig)
    # fine-tuning: the starting model is validated as epoch 0 and handed back unless an epoch
    # beats it (a few images can make a good model worse)
    start_is_candidate: bool = False

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise ConfigError("epochs and batch size must be >= 1")
        if self.select_metric not in SELECT_METRICS:
            raise ConfigError(f"--select-metric must be one of {SELECT_METRICS}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class TrainResult:
    """What a run produced."""

    model_dir: Path
    best_metric: float | None
    best_epoch: int | None
    steps: int
    wall_time_s: float
    history: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # input problems the run went past


def _optimizer(model: SACModel, parts: tuple[str, ...], cfg: TrainConfig
               ) -> torch.optim.Optimizer:
    groups = []
    for part in parts:
        params = [p for n, p in model.part_module(part).named_parameters()
                  if p.requires_grad and (part != "lora" or ".lora_" in n)]
        if params:
            lr = cfg.generator_lr if part == "generator" else cfg.lr
            groups.append({"params": params, "lr": lr, "name": part})
    if not groups:
        raise ConfigError("nothing to train: every part is frozen")
    return torch.optim.AdamW(groups, weight_decay=cfg.weight_decay)


def _schedule(opt: torch.optim.Optimizer, warmup: int, total: int
              ) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up, then cosine decay to 5% of the peak learning rate."""
    return torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(warmup, total))


def set_trainable(model: SACModel, parts: tuple[str, ...]) -> None:
    """requires_grad only on the trained parts (LoRA: only its A and B matrices)."""
    for p in model.parameters():
        p.requires_grad_(False)
    for part in parts:
        for name, p in model.part_module(part).named_parameters():
            if part != "lora" or ".lora_" in name:
                p.requires_grad_(True)


@dataclass
class _EpochSoFar:
    """The current epoch's steps, loss sums and training seconds; checkpointed mid-epoch so
    that a resumed run reports the whole epoch's time, crops/s and loss means."""

    steps: int = 0
    seconds: float = 0.0  # up to `since`, when the clock was last started (None: stopped)
    sums: dict[str, float] = field(default_factory=dict)
    since: float | None = None

    def elapsed(self) -> float:
        running = 0.0 if self.since is None else time.perf_counter() - self.since
        return self.seconds + running

    def add(self, loss: dict[str, float]) -> None:
        for k, v in loss.items():
            self.sums[k] = self.sums.get(k, 0.0) + v
        self.steps += 1

    def state(self) -> dict[str, Any]:
        return {"steps": self.steps, "seconds": self.elapsed(), "sums": dict(self.sums)}

    @classmethod
    def from_state(cls, d: dict[str, Any]) -> _EpochSoFar:
        return cls(int(d["steps"]), float(d["seconds"]),
                   {k: float(v) for k, v in d["sums"].items()})


class Trainer:
    """Trains a :class:`SACModel` into a run folder (see the module docstring)."""

    def __init__(self, model: SACModel, train_images: list[TrainImage],
                 val_images: list[TrainImage], out_dir: str | Path, cfg: TrainConfig,
                 data_summary: dict[str, Any] | None = None, sync: Sync | None = None) -> None:
        self.model, self.cfg = model, cfg
        self.sync = sync or Sync()
        self.val_images = val_images
        self.out = Path(out_dir)
        self.parts = model.config.parts
        self.sampler = CropSampler(train_images, model.spec.image_size, cfg.augment,
                                   by_source=cfg.source_augment, negatives=cfg.negatives,
                                   shares=cfg.source_shares)
        self.steps_per_epoch = cfg.steps_per_epoch or max(
            1, math.ceil(self.sampler.crops_per_epoch / cfg.batch_size))
        self.total_steps = cfg.epochs * self.steps_per_epoch
        set_trainable(model, self.parts)
        self.opt = _optimizer(model, self.parts, cfg)
        self.step_fn = wrap(model, self.sync)  # frozen first, so DDP sees trained tensors only
        self.sched = _schedule(self.opt, cfg.warmup_steps, self.total_steps)
        self.step = 0
        self.seconds = {"train": 0.0, "validation": 0.0,  # summed over resumed sessions
                        "generator_stage": 0.0}
        self.best: float | None = None
        self.best_epoch: int | None = None
        self.epoch = _EpochSoFar()
        self.summary = dict(data_summary or {})
        self.summary.update(n_train_images=len(train_images), n_val_images=len(val_images))

    # --- checkpoints ---------------------------------------------------------------------
    @property
    def state_path(self) -> Path:
        return self.out / "last" / "state.pt"

    def _save_state(self) -> None:
        if not self.sync.main:
            return
        state = {
            "step": self.step, "best": self.best if self.best is not None else float("nan"),
            "best_epoch": -1 if self.best_epoch is None else self.best_epoch,
            "parts": {p: {k: v.detach().cpu().clone() for k, v in
                          self.model.part_state(p).items()} for p in self.parts},
            "optimizer": self.opt.state_dict(), "scheduler": self.sched.state_dict(),
            "seconds": dict(self.seconds), "epoch": self.epoch.state(),
            "hard": [torch.from_numpy(p) for p in self.sampler.hard],
        }
        with atomic_path(self.state_path, overwrite=True) as tmp:
            torch.save(state, tmp)

    def _load_state(self) -> None:
        state = read_state(self.state_path)
        try:
            self._restore(state)
        except (KeyError, TypeError, ValueError, AttributeError, RuntimeError) as exc:
            raise InputError(f"cannot resume from {self.state_path}: it does not hold a SAC "
                             f"training state ({type(exc).__name__}: {str(exc)[:100]})"
                             f"{damaged_advice(self.state_path)}") from None

    def _restore(self, state: dict[str, Any]) -> None:
        """Put a checkpoint's weights, optimiser, schedule and counters in place."""
        with torch.no_grad():
            for part, tensors in state["parts"].items():
                own = self.model.part_state(part)
                for k, v in tensors.items():
                    own[k].copy_(v)
        self.opt.load_state_dict(state["optimizer"])
        self.sched.load_state_dict(state["scheduler"])
        self.step = int(state["step"])
        self.seconds.update({k: float(v) for k, v in state.get("seconds", {}).items()})
        self.epoch = _EpochSoFar.from_state(state["epoch"]) if "epoch" in state else \
            _EpochSoFar()  # written before checkpoints kept the epoch's progress
        if "hard" in state:  # mined false detections (runs before mining kept none)
            self.sampler.set_hard([t.numpy() for t in state["hard"]])
        best = float(state["best"])
        self.best = None if math.isnan(best) else best
        self.best_epoch = None if int(state["best_epoch"]) < 0 else int(state["best_epoch"])

    def _prepare_dir(self, resume: bool, overwrite: bool) -> None:
        cfg_path = self.out / "train_config.json"
        settings: dict[str, Any] = {"train": self.cfg.to_dict(),
                                    "model": self.model.config.to_dict()}
        if self.sync.world > 1:  # a resumed run needs the same number of processes
            settings["processes"] = self.sync.world
        settings["model"].pop("training", None)
        settings["model"].pop("sac_version", None)
        text = json.dumps(settings, indent=2, default=str) + "\n"
        if not self.sync.main:  # rank 0 prepares the folder; the others wait, then resume
            barrier(self.sync)
            if resume:
                self._load_state()
            return
        try:
            self._prepare_main(resume, overwrite, cfg_path, text)
        finally:
            barrier(self.sync)

    def _prepare_main(self, resume: bool, overwrite: bool, cfg_path: Path, text: str) -> None:
        if resume:
            if not self.state_path.is_file():
                raise InputError(f"nothing to resume: {self.state_path} does not exist")
            if cfg_path.is_file():
                try:
                    before = json.loads(cfg_path.read_text())
                except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
                    raise InputError(f"cannot resume: {cfg_path} is damaged ({exc}); start "
                                     "the run again with --overwrite") from None
                changed = setting_changes(before, json.loads(text))
                if changed:
                    raise ConfigError(f"--resume needs the same settings as the interrupted "
                                      f"run; these differ from {cfg_path}: "
                                      f"{', '.join(changed[:6])}")
            self._load_state()
            return
        if self.out.exists() and any(self.out.iterdir()) and not overwrite:
            raise InputError(f"run folder {self.out} is not empty; pass --resume to continue "
                             "it or --overwrite to start again")
        self.out.mkdir(parents=True, exist_ok=True)
        for old in ("log.jsonl", "last/state.pt"):
            (self.out / old).unlink(missing_ok=True)
        with atomic_path(cfg_path, overwrite=True) as tmp:
            tmp.write_text(text)

    def _log(self, record: dict[str, Any]) -> None:
        if not self.sync.main:
            return
        with (self.out / "log.jsonl").open("a") as fh:
            fh.write(json.dumps(record, default=float) + "\n")

    # --- loop ----------------------------------------------------------------------------
    def run(self, resume: bool = False, overwrite: bool = False, progress: bool = True,
            command: str = "", on_step: Callable[[int, dict[str, float]], None] | None = None
            ) -> TrainResult:
        """Train to the configured number of epochs; returns where the best model went.

        ``on_step(step, losses)`` is called after each joint step and its bookkeeping
        (checkpoints, validation), e.g. for a progress display; an exception it raises stops
        the run as an interruption would (``resume=True`` continues it)."""
        from tqdm import tqdm

        self._prepare_dir(resume, overwrite)
        t_start = time.perf_counter()
        if not resume and self.cfg.generator_stage.steps:
            self._generator_stage(progress)
        history: list[dict[str, Any]] = []
        bar = tqdm(total=self.total_steps, initial=self.step,
                   disable=not progress or not self.sync.main,
                   unit="step", dynamic_ncols=True)
        if not resume and self.cfg.start_is_candidate and self.sync.main and self.val_images:
            history.append(self._validate_and_save(0, {"epoch": 0, "step": 0}, command))
            bar.write(_epoch_line(history[-1]))
        self.epoch.since = time.perf_counter()  # the epoch's clock runs during steps only
        while self.step < self.total_steps:
            loss = self._one_step()
            self.epoch.add(loss)
            self.step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss['total']:.3f}", miou=f"{loss.get('mask_iou', 0):.2f}")
            if self.step % self.steps_per_epoch == 0 or self.step == self.total_steps:
                epoch = math.ceil(self.step / self.steps_per_epoch)
                done, self.epoch = self.epoch, _EpochSoFar()  # saved states start afresh
                self._mine()  # before the epoch's state is saved, so a resume has them
                rec = self._end_epoch(epoch, done.sums, done.steps, done.elapsed(), command)
                history.append(rec)
                if self.sync.main:
                    bar.write(_epoch_line(rec))
                self.epoch.since = time.perf_counter()
            elif self.step % self.cfg.checkpoint_every == 0:
                self._save_state()
            if on_step is not None:
                on_step(self.step, loss)
        bar.close()
        return TrainResult(self.out / "model", self.best, self.best_epoch, self.step,
                           time.perf_counter() - t_start, history)

    def _generator_stage(self, progress: bool) -> None:
        """The standalone generator stage; its end is checkpointed, so --resume skips it."""
        from tqdm import tqdm

        gs = self.cfg.generator_stage
        t0 = time.perf_counter()

        def log(rec: dict[str, Any]) -> None:
            self._log(rec)
            if progress:
                tqdm.write(f"generator stage: step {rec['step']}/{gs.steps}, loss "
                           f"{rec['loss']:.4f}")

        if self.sync.main:  # cheap: rank 0 trains it, then every process takes its weights
            train_generator(self.model.generator, self.sampler, gs, self.cfg.seed,
                            self.model.device, log, centre=self.model.config.centre_target)
        broadcast_from_main(self.model.generator, self.sync)
        self.seconds["generator_stage"] += time.perf_counter() - t0
        self._save_state()

    def _mine(self) -> None:
        """The model's false detections on the training images, for the next epoch's hard
        crops (every process mines the same weights, so all agree)."""
        if self.cfg.negatives.hard > 0:
            self.sampler.set_hard(false_detections(self.model, self.sampler.images,
                                                   self.cfg.step.bf16))

    def _one_step(self) -> dict[str, float]:
        """One step on this process's share of the crops: SAM crops ``rank * B ..`` of
        stream 0 and generator-only crops of stream 1, prompts from per-crop generators."""
        cfg, rank, world = self.cfg, self.sync.rank, self.sync.world
        bs = cfg.batch_size
        n_extra = max(0, cfg.generator_batch - bs)
        crops = self.sampler.batch(cfg.seed, self.step, bs, start=rank * bs)
        extra = self.sampler.batch(cfg.seed, self.step, n_extra, start=rank * n_extra,
                                   stream=1)
        rngs = [np.random.default_rng([cfg.seed, self.step, 1, rank * bs + j])
                for j in range(bs)]
        self.model.train_mode(self.parts)
        out = self.step_fn(crops, cfg.step, rngs, self.step, extra, self.sync)
        self.opt.zero_grad(set_to_none=True)
        (out["total"] * world).backward()  # DDP averages over processes; shares add up
        params = [p for g in self.opt.param_groups for p in g["params"]]
        torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        self.opt.step()
        self.sched.step()
        keys = sorted(out)
        values = self.sync.sum(torch.stack([out[k].detach().float().cpu() for k in keys]))
        return dict(zip(keys, values.tolist(), strict=True))

    def _end_epoch(self, epoch: int, sums: dict[str, float], n: int, seconds: float,
                   command: str) -> dict[str, Any]:
        rec: dict[str, Any] = {"epoch": epoch, "step": self.step,
                               "lr": self.opt.param_groups[0]["lr"],
                               "seconds": round(seconds, 2),
                               "crops_per_s": round(n * self.cfg.batch_size * self.sync.world
                                                    / seconds, 3)}
        rec.update({f"train_{k}": round(v / max(n, 1), 5) for k, v in sums.items()})
        self.seconds["train"] += seconds
        if not self.sync.main:  # rank 0 validates and saves; the rest go on to the next step
            return rec
        return self._validate_and_save(epoch, rec, command)

    def _validate_and_save(self, epoch: int, rec: dict[str, Any], command: str
                           ) -> dict[str, Any]:
        """Validate the model as it is now (after ``epoch``; 0: the starting model), save it
        as the model folder when it is the best so far, checkpoint and log."""
        t0 = time.perf_counter()
        metric = None
        if self.val_images:
            images = self.val_images if not self.cfg.val_limit else first_per_source(
                self.val_images, lambda im: im.source, self.cfg.val_limit)
            val = validate(self.model, images, self.cfg.step.bf16)
            rec.update({f"val_{k}": round(v, 5) for k, v in val.items()})
            rec["val_seconds"] = round(time.perf_counter() - t0, 2)
            self.seconds["validation"] += rec["val_seconds"]
            metric = val[self.cfg.select_metric]
        improved = metric is None or self.best is None or metric >= self.best  # ties: newer
        if improved:
            self.best, self.best_epoch = metric, epoch
            train_s = self.seconds["train"]
            training = dict(self.summary, command=command, epochs_done=epoch, steps=self.step,
                            select_metric=self.cfg.select_metric,
                            train_seconds=round(train_s, 1),
                            generator_stage_steps=self.cfg.generator_stage.steps,
                            generator_stage_seconds=round(self.seconds["generator_stage"], 1),
                            validation_seconds=round(self.seconds["validation"], 1),
                            crops_per_s=round(self.step * self.cfg.batch_size * self.sync.world
                                              / max(train_s, 1e-9), 3),
                            validation={k[4:]: v for k, v in rec.items()
                                        if k.startswith("val_")})
            save_model(self.model, self.out / "model", overwrite=True,
                       dtype=self.cfg.save_dtype, training=training)
        rec["best"] = improved
        self._save_state()
        self._log(rec)
        return rec


def _epoch_line(rec: dict[str, Any]) -> str:
    val = ", ".join(f"{k[4:]} {rec[k]:.3f}" for k in ("val_pixel_dice", "val_aji", "val_pq")
                    if k in rec)
    mark = " (best, saved)" if rec.get("best") else ""
    if rec["epoch"] == 0:
        return f"epoch 0, the starting model: val {val}{mark}"
    return (f"epoch {rec['epoch']}: loss {rec.get('train_total', float('nan')):.3f}, "
            f"{rec['crops_per_s']:.2f} crops/s" + (f"; val {val}" if val else "") + mark)
