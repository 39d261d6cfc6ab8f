"""One joint training step: generator, LoRA-adapted encoder and mask decoder on a batch of crops.

Per crop, prompts come either from the ground truth (jittered points, optional jittered boxes)
or from the generator's own detections (what SAM will see at inference), so SAM learns both to
follow good prompts and to handle the generator's mistakes: a detection that covers no nucleus
gets an empty target, which also teaches the quality head to score it low. Each crop also
trains one semantic prompt set (all its prompts in one set, target = all foreground).

CPU economy: the encoder part before the first trainable block runs without autograd (and in
bf16 if asked), prompts are decoded on small embedding windows, batched across crops.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from sac.core.device import autocast_context
from sac.model import PromptConfig, SACModel
from sac.modeling.generator import map_probabilities
from sac.modeling.sam import window_origins, window_sizes
from sac.modeling.tiny_vit import TinyViT
from sac.pipeline.maps import Maps
from sac.pipeline.nuclei import detect, extents
from sac.pipeline.prompt_sets import instance_sets, semantic_negatives, semantic_set, set_options
from sac.pipeline.prompts import (
    PromptSet,
    batch_prompt_sets,
    ground_truth_prompts,
    semantic_prompts,
)
from sac.sam.transforms import prepare_batch
from sac.training.losses import generator_loss, mask_losses
from sac.training.sampler import Crop
from sac.training.sync import Sync
from sac.training.targets import generator_targets


@dataclass(frozen=True)
class StepConfig:
    """Loss weights and prompt mixing of a training step."""

    prompts_per_crop: int = 16
    generator_prompt_prob: float = 0.5  # share of crops prompted from the generator's output
    generator_warmup: int = 100  # steps with ground-truth prompts only (generator untrained)
    point_jitter: float = 0.3  # positive point within this many nucleus radii of the centre
    box_jitter: float = 0.05  # box noise, fraction of the box size
    generator_weight: float = 1.0
    semantic_weight: float = 0.5
    iou_weight: float = 1.0
    bf16: bool = False
    frozen_prefix_no_grad: bool = True  # False only to measure what it saves


def encode_train(model: SACModel, pixels: torch.Tensor, bf16: bool,
                 frozen_prefix_no_grad: bool = True) -> torch.Tensor:
    """Image embeddings with autograd only from the first stage holding trainable weights."""
    enc = model.sam.image_encoder
    stages = list(enc.layers[1:]) if isinstance(enc, TinyViT) else list(enc.blocks)
    trainable = [any(p.requires_grad for p in s.parameters()) for s in stages]
    first = trainable.index(True) if any(trainable) else len(stages)
    ctx = autocast_context(pixels.device, bf16)
    x = pixels.contiguous(memory_format=torch.channels_last)
    if not frozen_prefix_no_grad:  # measurement only: autograd through the whole encoder
        x = x.requires_grad_(True)
        first = 0
    with torch.set_grad_enabled(not frozen_prefix_no_grad), ctx:
        x = enc.stem(x)
        for s in stages[:first]:
            x = s(x)
    with torch.set_grad_enabled(first < len(stages) and torch.is_grad_enabled()), ctx:
        for s in stages[first:]:
            x = s(x)
        out = enc.neck(x.permute(0, 3, 1, 2))
    return out.float()


def match_targets(det: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """For each detection (ids 1..N of ``det``), the ground-truth id it overlaps most, or 0
    when that overlap is under a third of the detection (a false detection)."""
    n = int(det.max())
    if n == 0:
        return np.zeros(0, np.int64)
    d, g = det.ravel().astype(np.int64), gt.ravel().astype(np.int64)
    fg = (d > 0) & (g > 0)
    gids, ginv = np.unique(g[fg], return_inverse=True)
    counts = np.zeros((n + 1, len(gids) + 1), np.int64)
    np.add.at(counts, (d[fg], ginv + 1), 1)
    best = counts.argmax(1)
    size = np.bincount(d, minlength=n + 1)
    ok = counts[np.arange(n + 1), best] * 3 >= np.maximum(size, 1)
    out = np.where(ok & (best > 0), np.concatenate([[0], gids])[best], 0)
    return out[1:]


@dataclass
class _Sets:
    """Instance prompt sets of a batch with their crop index, target id and window extent."""

    sets: list[PromptSet]
    crop: list[int]
    target: list[int]
    extent: list[np.ndarray]


def _bbox(mask: np.ndarray) -> np.ndarray:
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    return np.array([cols[0], rows[0], cols[-1], rows[-1]], np.float32)


def crop_prompts(model: SACModel, crop: Crop, maps: Maps | None, cfg: StepConfig,
                 rng: np.random.Generator) -> tuple[list[PromptSet], list[int], np.ndarray,
                                                    PromptSet]:
    """Instance sets, their target ids and extents, and the semantic set for one crop.

    ``maps`` given: prompts from the generator's detections; else from the ground truth.
    """
    pc, th = model.config.prompts, model.config.thresholds
    gt = crop.labels
    if maps is not None:
        det = detect(maps, th)
        if det.any():
            sets = instance_sets(det, maps, pc, rng)
            targets = match_targets(det, gt).tolist()
            return sets, targets, extents(det), semantic_set(det, maps, pc, th, rng)
    sets = ground_truth_prompts(gt, rng, jitter=cfg.point_jitter, box_jitter=cfg.box_jitter,
                                **set_options(pc))
    fg = (gt > 0).astype(np.float32)
    pos = np.array([s.points[0] for s in sets if len(s.points)], np.float32).reshape(-1, 2)
    if not pc.use_points:  # box-only sets: jittered box centres as positives
        pos = np.array([(s.box[:2] + s.box[2:]) / 2 for s in sets if s.box is not None],
                       np.float32).reshape(-1, 2)
    semantic = semantic_prompts(pos, semantic_negatives(fg, pc, rng), pc.semantic_points, rng)
    return sets, [s.instance for s in sets], extents(gt), semantic


def _windows(arr: np.ndarray, origins: np.ndarray, size: int, stride: int) -> np.ndarray:
    """(n, size*stride, size*stride) crops of (B, H, W) ``arr`` at token ``origins``."""
    side = size * stride
    return np.stack([arr[b, r * stride : r * stride + side, c * stride : c * stride + side]
                     for b, r, c in origins.tolist()])


def _to_low_res(x: np.ndarray, ratio: int, device: torch.device) -> torch.Tensor:
    """Input-pixel masks (n, H, W) to the decoder's low-res frame (average over ratio^2)."""
    t = torch.from_numpy(x.astype(np.float32)).to(device)
    return F.avg_pool2d(t[:, None], ratio)[:, 0] if ratio > 1 else t


@dataclass(frozen=True)
class _Batch:
    """What every part of a step sees: the crops' labels and valid masks, the embeddings and
    the embedding geometry (tokens per side, input pixels per token, low-res ratio)."""

    labels: np.ndarray  # (B, H, W) instance ids
    valid: np.ndarray  # (B, H, W) bool, pixels that are real image
    emb: torch.Tensor
    grid: int
    stride: int
    ratio: int


@dataclass
class _Generator:
    """The generator's logits on a step's crops, their targets and valid masks."""

    logits: torch.Tensor
    targets: torch.Tensor
    valid: torch.Tensor

    def loss(self, counts: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        return generator_loss(self.logits, self.targets, self.valid, counts=counts)


def generator_part(model: SACModel, crops: list[Crop], n_prompted: int
                   ) -> tuple[_Generator, np.ndarray]:
    """The generator's outputs on ``crops`` (its loss to be normalised later) and its
    probabilities (detached) for the first ``n_prompted`` of them, the crops SAM is prompted
    on."""
    dev = model.device
    imgs = torch.from_numpy(np.stack([c.rgb for c in crops])).permute(0, 3, 1, 2)
    logits = model.generator(imgs.contiguous().to(dev))
    centre = model.config.centre_target
    targets = torch.from_numpy(np.stack([generator_targets(c.labels, centre=centre)
                                         for c in crops])).to(dev)
    valid = torch.from_numpy(np.stack([c.valid for c in crops])).to(dev)
    probs = map_probabilities(logits[:n_prompted].detach().float(),
                              model.generator.config.hv).cpu().numpy()
    return _Generator(logits, targets, valid), probs


def prompt_part(model: SACModel, crops: list[Crop], probs: np.ndarray, cfg: StepConfig,
                rngs: list[np.random.Generator], step: int) -> tuple[_Sets, list[PromptSet]]:
    """Each crop's instance sets (at most ``cfg.prompts_per_crop``, from the truth or, after
    the warm-up, from the generator's maps ``probs``) and its semantic set. Crop ``b``'s
    random choices come from ``rngs[b]``, so they do not depend on which process holds it."""
    inst = _Sets([], [], [], [])
    semantic: list[PromptSet] = []
    for b, (crop, rng) in enumerate(zip(crops, rngs, strict=True)):
        use_gen = step >= cfg.generator_warmup and rng.random() < cfg.generator_prompt_prob
        maps = Maps(probs[b, 0], probs[b, 1], probs[b, 2]) if use_gen else None
        sets, targets, ext, sem = crop_prompts(model, crop, maps, cfg, rng)
        keep = np.arange(len(sets))
        if len(sets) > cfg.prompts_per_crop:
            keep = np.sort(rng.choice(len(sets), cfg.prompts_per_crop, replace=False))
        for k in keep.tolist():
            e = ext[k]
            if targets[k]:  # the window covers both the prompt's extent and its target
                t = _bbox(crop.labels == targets[k])
                e = np.concatenate([np.minimum(e[:2], t[:2]), np.maximum(e[2:], t[2:])])
            inst.sets.append(sets[k])
            inst.crop.append(b)
            inst.target.append(targets[k])
            inst.extent.append(e)
        semantic.append(sem)
    return inst, semantic


def instance_loss(model: SACModel, batch: _Batch, inst: _Sets,
                  n_total: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """SAM's mask and quality losses on the instance sets, decoded on embedding windows
    grouped by window size (``mask``, ``iou`` and the true IoU ``mask_iou``): sums over the
    sets divided by ``n_total`` (default: their number, giving means)."""
    dev, sam, grid, stride = model.device, model.sam, batch.grid, batch.stride
    ext = torch.from_numpy(np.stack(inst.extent))
    sizes = window_sizes((ext[:, 2:] - ext[:, :2]).amax(1) + 1, stride,
                         model.config.decode_window, grid)
    centres = (ext[:, :2] + ext[:, 2:]) / 2
    n = len(inst.sets) if n_total is None else n_total
    m_loss, i_loss, ious = 0.0, 0.0, []
    for s in torch.unique(sizes).tolist():
        idx = np.flatnonzero((sizes == s).numpy())
        pts, lbl, boxes = batch_prompt_sets([inst.sets[i] for i in idx],
                                            pad_to=max_points(model.config.prompts))
        origins = window_origins(centres[idx], s, grid, stride)
        crop_idx = np.array([inst.crop[i] for i in idx])
        target_ids = np.array([inst.target[i] for i in idx])[:, None, None]
        tgt_full = (batch.labels[crop_idx] == target_ids) & (target_ids > 0)
        org = np.concatenate([crop_idx[:, None], origins.numpy()], axis=1)
        tgt = _windows(tgt_full, np.concatenate([np.arange(len(idx))[:, None], org[:, 1:]],
                                                axis=1), s, stride)
        val = _windows(batch.valid, org, s, stride)
        p = torch.from_numpy(pts).to(dev) if pts.shape[1] else None
        lb = torch.from_numpy(lbl).to(dev) if pts.shape[1] else None
        bx = torch.from_numpy(boxes).to(dev) if boxes is not None else None
        logits, iou = sam.decode_windows(batch.emb, origins.to(dev), s, p, lb, bx,
                                         image_index=torch.from_numpy(crop_idx).to(dev))
        losses = mask_losses(logits[:, 0], iou[:, 0], _to_low_res(tgt, batch.ratio, dev),
                             _to_low_res(val, batch.ratio, dev), denom=n)
        m_loss = m_loss + losses["mask"]
        i_loss = i_loss + losses["iou"]
        ious.append(losses["true_iou"])
    return {"mask": m_loss, "iou": i_loss, "mask_iou": torch.cat(ious).sum() / n}  # type: ignore[dict-item]


def max_points(pc: PromptConfig) -> int:
    """The most points an instance set can hold: its positive and its negatives."""
    return 1 + pc.neighbour_negatives + pc.background_negatives if pc.use_points else 0


def semantic_crops(semantic: list[PromptSet]) -> list[int]:
    """The crops whose semantic set has a positive prompt (the others are not decoded)."""
    return [b for b, s in enumerate(semantic) if (s.labels == 1).any()]


def semantic_loss(model: SACModel, batch: _Batch, semantic: list[PromptSet],
                  n_total: torch.Tensor | None = None) -> dict[str, torch.Tensor] | None:
    """The paper's semantic output: one set per crop with all its prompts, target = all
    foreground (``mask``, ``iou``, ``true_iou``), summed over crops and divided by
    ``n_total`` (default: their number); None when no crop has a positive prompt."""
    has_pos = semantic_crops(semantic)
    if not has_pos:
        return None
    dev = model.device
    pts, lbl, _ = batch_prompt_sets([semantic[b] for b in has_pos],
                                    pad_to=model.config.prompts.semantic_points)
    sel = torch.tensor(has_pos, device=dev)
    logits, iou = model.sam.decode(batch.emb, torch.from_numpy(pts).to(dev),
                                   torch.from_numpy(lbl).to(dev), image_index=sel)
    tgt = _to_low_res((batch.labels[has_pos] > 0), batch.ratio, dev)
    return mask_losses(logits[:, 0], iou[:, 0], tgt,
                       _to_low_res(batch.valid[has_pos], batch.ratio, dev), denom=n_total)


def train_step(model: SACModel, crops: list[Crop], cfg: StepConfig,
               rngs: list[np.random.Generator], step: int, extra: list[Crop] | None = None,
               sync: Sync | None = None) -> dict[str, torch.Tensor]:
    """Losses of one step: ``total`` to back-propagate, the parts detached for logging.

    ``extra`` crops train only the generator: it is cheap next to SAM and learns faster from
    more crops per step. ``rngs`` holds one generator per crop (its prompt choices). With
    ``sync`` over several processes every value is this process's share: normalised by the
    item counts of the whole batch (:mod:`sac.training.sync`), so the shares add up to the
    loss of one process holding every crop.
    """
    sync = sync or Sync()
    gen, probs = generator_part(model, crops + list(extra or []), len(crops))
    size = model.spec.image_size
    pixels, _ = prepare_batch([c.rgb for c in crops], size, model.spec.normalization,
                              upscale=False)
    emb = encode_train(model, pixels.to(model.device), cfg.bf16, cfg.frozen_prefix_no_grad)
    grid = emb.shape[-1]
    stride = size // grid
    batch = _Batch(np.stack([c.labels for c in crops]), np.stack([c.valid for c in crops]),
                   emb, grid, stride, max(1, stride // 4))
    inst, semantic = prompt_part(model, crops, probs, cfg, rngs, step)
    n_sem = len(semantic_crops(semantic)) if cfg.semantic_weight > 0 else 0
    counts = sync.sum(torch.tensor([float(gen.valid.sum()), float(len(gen.logits)),
                                    float(len(inst.sets)), float(n_sem)], dtype=torch.float64))
    px, n_gen, n_sets, n_sem_all = (c.to(torch.float32) for c in counts)
    loss_gen = gen.loss((px.clamp(min=1), n_gen))
    zero = torch.zeros((), device=model.device)
    out: dict[str, torch.Tensor] = {"generator": loss_gen.detach(), "mask": zero,
                                    "iou": zero, "mask_iou": zero}
    total = cfg.generator_weight * loss_gen
    if inst.sets:
        parts = instance_loss(model, batch, inst, n_sets)
        total = total + parts["mask"] + cfg.iou_weight * parts["iou"]
        out.update(mask=parts["mask"].detach(), iou=parts["iou"].detach(),
                   mask_iou=parts["mask_iou"])
    sem = semantic_loss(model, batch, semantic, n_sem_all) if n_sem else None
    if cfg.semantic_weight > 0:
        out["semantic"] = out["semantic_iou"] = zero
    if sem is not None:
        total = total + cfg.semantic_weight * (sem["mask"] + cfg.iou_weight * sem["iou"])
        out["semantic"] = sem["mask"].detach()
        out["semantic_iou"] = sem["true_iou"].sum() / n_sem_all
    out["total"] = total
    return out
