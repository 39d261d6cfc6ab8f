"""The SAM container: image encoder, prompt encoder and mask decoder under Meta's key prefixes."""

from __future__ import annotations

import torch
from torch import nn

from sac.modeling.mask_decoder import MaskDecoder
from sac.modeling.prompt_encoder import PromptEncoder


class Sam(nn.Module):
    """Holds ``image_encoder``, ``prompt_encoder`` and ``mask_decoder``; pure tensors in and out.

    Inputs to :meth:`encode` are already resized, normalised and padded to ``image_size``
    (see :mod:`sac.sam.transforms`); prompt coordinates are in that frame.
    """

    def __init__(
        self, image_encoder: nn.Module, prompt_encoder: PromptEncoder, mask_decoder: MaskDecoder
    ) -> None:
        super().__init__()
        self.image_encoder = image_encoder
        self.prompt_encoder = prompt_encoder
        self.mask_decoder = mask_decoder

    @property
    def image_size(self) -> int:
        """Side length of the square model input."""
        return int(self.image_encoder.img_size)

    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) normalised pixels to (B, C, S/4', S/4') embeddings.

        Inputs go in channels-last layout, which makes the encoders' convolutions about 30%
        faster on CPU (same values).
        """
        return self.image_encoder(pixels.contiguous(memory_format=torch.channels_last))

    def decode(
        self,
        embeddings: torch.Tensor,
        points: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        boxes: torch.Tensor | None = None,
        mask_inputs: torch.Tensor | None = None,
        multimask: bool = False,
        image_index: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Decode B prompt sets: ``points`` (B, N, 2) with ``labels`` (B, N), ``boxes`` (B, 4),
        ``mask_inputs`` (B, 1, 4h, 4w). Returns low-res logits (B, K, 4h, 4w) and IoU (B, K)."""
        if (points is None) != (labels is None):
            raise ValueError("points and labels go together")
        pts = (points, labels) if points is not None and labels is not None else None
        sparse, dense = self.prompt_encoder(pts, boxes, mask_inputs)
        return self.mask_decoder(
            embeddings, self.prompt_encoder.get_dense_pe(), sparse, dense, multimask, image_index
        )

    def decode_windows(
        self,
        embeddings: torch.Tensor,
        origins: torch.Tensor,
        size: int,
        points: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        boxes: torch.Tensor | None = None,
        multimask: bool = False,
        image_index: torch.Tensor | None = None,
        pe_origins: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Decode each prompt set on a ``size`` x ``size`` window of the embedding grid.

        A nucleus covers a few embedding tokens, so attending to a window around it instead of
        the whole grid gives nearly the same mask several times faster. ``origins`` (B, 2) are
        each window's top-left token ``(row, col)``; prompts stay in full-input coordinates and
        the positional encoding is cut from the full grid, so geometry is unchanged. Returns
        logits (B, K, 4*size, 4*size) covering input pixels ``[4*row, 4*(row+size))`` (times
        the input/grid ratio / 4 for other backbones) and IoU (B, K).

        ``pe_origins`` (B, 2): where each window sits in the decoder's own grid when the
        embedding came from a larger input than the model's (one encoding of a big tile): the
        positional encoding is cut there instead, and the prompts must be given relative to
        that virtual model-sized tile (see :meth:`SamPredictor.predict_instances`).
        """
        if (points is None) != (labels is None):
            raise ValueError("points and labels go together")
        b = origins.shape[0]
        if image_index is None:
            image_index = torch.zeros(b, dtype=torch.long, device=origins.device)
            if embeddings.shape[0] == b:
                image_index = torch.arange(b, device=origins.device)
        span = torch.arange(size, device=origins.device)
        rows = origins[:, 0, None] + span  # (B, size)
        cols = origins[:, 1, None] + span
        grid = embeddings.shape[-1]
        if int(rows.max()) >= embeddings.shape[-2] or int(cols.max()) >= grid or origins.min() < 0:
            raise ValueError(f"windows of {size} tokens at {origins.tolist()} leave the grid")
        win = embeddings[image_index[:, None, None], :, rows[:, :, None], cols[:, None, :]]
        win = win.permute(0, 3, 1, 2)
        if pe_origins is not None:
            rows = pe_origins[:, 0, None] + span
            cols = pe_origins[:, 1, None] + span
        pe = self.prompt_encoder.get_dense_pe()[0][:, rows[:, :, None], cols[:, None, :]]
        pe = pe.permute(1, 0, 2, 3).to(win.dtype)
        pts = (points, labels) if points is not None and labels is not None else None
        sparse, dense = self.prompt_encoder(pts, boxes, None)
        return self.mask_decoder(win, pe, sparse, dense[:, :, :size, :size], multimask)


def window_origins(centres: torch.Tensor, size: int, grid: int, stride: float) -> torch.Tensor:
    """Top-left token (row, col) of ``size``-token windows centred on (x, y) pixel ``centres``,
    kept inside a ``grid`` x ``grid`` embedding whose tokens are ``stride`` pixels apart."""
    tok = centres / stride - size / 2
    origin = torch.round(tok).long().clamp(0, grid - size)
    return torch.stack([origin[:, 1], origin[:, 0]], dim=1)


def window_sizes(extent: torch.Tensor, stride: float, minimum: int, grid: int,
                 margin: float = 1.5) -> torch.Tensor:
    """Window side in tokens for objects of ``extent`` (B,) input pixels (their larger side):
    ``margin`` times the extent plus a token each side, rounded up to a multiple of 4, at least
    ``minimum`` and at most the ``grid``."""
    need = torch.ceil(extent * margin / stride) + 2
    need = torch.ceil(need / 4) * 4
    return need.clamp(min=min(minimum, grid), max=grid).long()
