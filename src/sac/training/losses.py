"""Losses for joint training: SAM's masks and quality head, and the prompt generator's maps.

All losses take a ``valid`` mask so padding (crops of images smaller than the model input) is
ignored. Masks use BCE (optionally focal, as SAM was trained) plus Dice; the generator uses BCE
(soft targets for the centre heatmap) plus Dice on the foreground, and squared errors of values
and gradients for horizontal/vertical maps.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

EPS = 1.0


def dice_loss(logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """1 - soft Dice per item over the last two axes, (B,)."""
    p = torch.sigmoid(logits) * valid
    t = target * valid
    inter = (p * t).flatten(1).sum(1)
    denom = p.flatten(1).sum(1) + t.flatten(1).sum(1)
    return 1.0 - (2 * inter + EPS) / (denom + EPS)


def focal_loss(logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor,
               gamma: float = 2.0, alpha: float = 0.25) -> torch.Tensor:
    """Sigmoid focal loss per item, averaged over valid pixels, (B,)."""
    ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    p = torch.sigmoid(logits)
    pt = p * target + (1 - p) * (1 - target)
    w = (alpha * target + (1 - alpha) * (1 - target)) * (1 - pt) ** gamma
    n = valid.flatten(1).sum(1).clamp(min=1)
    return (ce * w * valid).flatten(1).sum(1) / n


def mask_iou(logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """IoU of the thresholded masks with the targets, (B,); 1 when both are empty."""
    pred = (logits > 0).float() * valid
    t = target * valid
    inter = (pred * t).flatten(1).sum(1)
    union = (pred + t).clamp(max=1).flatten(1).sum(1)
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))


def bce_loss(logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy per item, averaged over valid pixels, (B,)."""
    ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    return (ce * valid).flatten(1).sum(1) / valid.flatten(1).sum(1).clamp(min=1)


def mask_losses(logits: torch.Tensor, iou_pred: torch.Tensor, target: torch.Tensor,
                valid: torch.Tensor, focal_weight: float = 0.0,
                denom: float | torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Mask loss BCE + Dice (or ``focal_weight`` x focal + Dice, SAM's recipe, when > 0), and
    the MSE of the predicted IoU.

    BCE is the default because focal loss (alpha 0.25) lets a decoder that starts from empty
    masks, as LiteMedSAM does for point prompts, settle on predicting nothing.
    ``logits``/``target``/``valid`` are (B, h, w); ``iou_pred`` is (B,). Returns scalar
    ``mask`` and ``iou`` losses (sums over the B items divided by ``denom``, default B: the
    means) and the detached true ``iou`` values.
    """
    pixel = focal_weight * focal_loss(logits, target, valid) if focal_weight > 0 else \
        bce_loss(logits, target, valid)
    dice = dice_loss(logits, target, valid)
    true_iou = mask_iou(logits.detach(), target, valid)
    d = len(logits) if denom is None else denom
    return {"mask": (pixel + dice).sum() / d,
            "iou": ((iou_pred.float() - true_iou) ** 2).sum() / d, "true_iou": true_iou}


def generator_loss(logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor,
                   weights: tuple[float, float, float] = (1.0, 1.0, 2.0),
                   counts: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """Loss of the (B, C, H, W) generator logits against (B, C, H, W) targets.

    Foreground: BCE + Dice; boundary: BCE weighted up 3x on the thin ring (it is rare);
    centre map (C = 3): BCE against the soft targets; horizontal and vertical maps (C = 4,
    :func:`hv_loss`) in its place. ``valid`` is (B, H, W). Pixel terms are divided by the
    valid pixel count and the Dice term by the crop count: these batch's own, or ``counts`` =
    (pixels, crops) of the whole batch across processes (:mod:`.sync`).
    """
    if logits.shape[1] != target.shape[1] or target.shape[1] not in (3, 4):
        raise ValueError(f"generator logits {tuple(logits.shape)} and targets "
                         f"{tuple(target.shape)} must both have 3 or 4 channels")
    v = valid[:, None].float()
    n, items = counts if counts is not None else (v.sum().clamp(min=1), len(logits))
    hv = target.shape[1] == 4  # channels 2, 3: horizontal/vertical maps, not probabilities
    k = 2 if hv else 3
    bce = F.binary_cross_entropy_with_logits(logits[:, :k].float(), target[:, :k],
                                             reduction="none") * v
    ring = 1.0 + 2.0 * target[:, 1]
    fg = bce[:, 0].sum() / n + dice_loss(logits[:, 0], target[:, 0], v[:, 0]).sum() / items
    boundary = (bce[:, 1] * ring).sum() / n
    if hv:
        centre = hv_loss(logits[:, 2:4].float(), target[:, 2:4], v[:, 0] * target[:, 0], v, n)
    else:
        centre = bce[:, 2].sum() / n
    w = weights
    return w[0] * fg + w[1] * boundary + w[2] * centre


def hv_loss(logits: torch.Tensor, target: torch.Tensor, focus: torch.Tensor,
            valid: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
    """HoVer-Net-style loss of the (B, 2, H, W) horizontal/vertical logits (tanh: [-1, 1]).

    Squared error over valid pixels, plus the squared error of the maps' gradients (the
    horizontal map's along x, the vertical map's along y; central differences over 2 px)
    inside the nuclei (``focus``, (B, H, W)), where sharp sign changes mark touching nuclei.
    Both sums are divided by ``n``, the valid pixel count, so that data-parallel processes
    that share ``n`` add up to one process's loss.
    """
    pred = torch.tanh(logits)
    mse = ((pred - target) ** 2 * valid).sum() / n
    err = pred - target
    gx = err[:, 0, :, 2:] - err[:, 0, :, :-2]
    gy = err[:, 1, 2:, :] - err[:, 1, :-2, :]
    msge = ((gx**2) * focus[:, :, 1:-1]).sum() / n + ((gy**2) * focus[:, 1:-1, :]).sum() / n
    return mse + msge
