"""SAM's mask decoder: output tokens attend to the image embedding, then hypernetwork MLPs turn
them into mask logits at 4x the embedding resolution, and a head predicts each mask's IoU."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sac.modeling.common import MLP, LayerNorm2d
from sac.modeling.transformer import TwoWayTransformer


class MaskDecoder(nn.Module):
    """Predict masks and quality scores from image and prompt embeddings."""

    def __init__(
        self,
        transformer_dim: int,
        transformer: TwoWayTransformer,
        num_multimask_outputs: int = 3,
        iou_head_depth: int = 3,
        iou_head_hidden_dim: int = 256,
    ) -> None:
        super().__init__()
        self.transformer_dim = transformer_dim
        self.transformer = transformer
        self.num_mask_tokens = num_multimask_outputs + 1
        self.iou_token = nn.Embedding(1, transformer_dim)
        self.mask_tokens = nn.Embedding(self.num_mask_tokens, transformer_dim)
        self.output_upscaling = nn.Sequential(
            nn.ConvTranspose2d(transformer_dim, transformer_dim // 4, kernel_size=2, stride=2),
            LayerNorm2d(transformer_dim // 4),
            nn.GELU(),
            nn.ConvTranspose2d(transformer_dim // 4, transformer_dim // 8, kernel_size=2, stride=2),
            nn.GELU(),
        )
        self.output_hypernetworks_mlps = nn.ModuleList(
            MLP(transformer_dim, transformer_dim, transformer_dim // 8, 3)
            for _ in range(self.num_mask_tokens)
        )
        self.iou_prediction_head = MLP(
            transformer_dim, iou_head_hidden_dim, self.num_mask_tokens, iou_head_depth
        )

    def forward(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
        multimask_output: bool,
        image_index: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Decode B prompt sets.

        ``image_embeddings`` is (1, C, H, W) (shared by every prompt set), (B, C, H, W) (one per
        set), or any (M, C, H, W) with ``image_index`` (B,) naming each set's image. Returns mask
        logits (B, K, 4H, 4W) and IoU predictions (B, K), K = 3 with ``multimask_output`` else 1.
        """
        masks, iou = self.predict_masks(
            image_embeddings, image_pe, sparse_prompt_embeddings, dense_prompt_embeddings,
            image_index,
        )
        sl = slice(1, None) if multimask_output else slice(0, 1)
        return masks[:, sl], iou[:, sl]

    def predict_masks(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse: torch.Tensor,
        dense: torch.Tensor,
        image_index: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """All K+1 masks and IoU predictions (see :meth:`forward`)."""
        b = sparse.shape[0]
        out_tokens = torch.cat([self.iou_token.weight, self.mask_tokens.weight], dim=0)
        tokens = torch.cat([out_tokens[None].expand(b, -1, -1).to(sparse.dtype), sparse], dim=1)
        if image_index is not None:
            image_embeddings = image_embeddings.index_select(0, image_index)
        src = image_embeddings + dense  # broadcasts a shared (1, C, H, W) embedding
        if src.shape[0] != b:
            raise ValueError(
                f"{src.shape[0]} image embeddings for {b} prompt sets; pass image_index"
            )
        _, c, h, w = src.shape
        hs, src_out = self.transformer(src, image_pe, tokens)
        iou_out = hs[:, 0]
        mask_out = hs[:, 1 : 1 + self.num_mask_tokens]
        upscaled = self.output_upscaling(src_out.transpose(1, 2).reshape(b, c, h, w))
        hyper = torch.stack(
            [mlp(mask_out[:, i]) for i, mlp in enumerate(self.output_hypernetworks_mlps)], dim=1
        )
        masks = (hyper @ upscaled.flatten(2)).view(b, -1, *upscaled.shape[-2:])
        return masks, self.iou_prediction_head(iou_out)


def upscale_logits(
    logits: torch.Tensor, input_size: int, valid: tuple[int, int], original: tuple[int, int]
) -> torch.Tensor:
    """Low-res logits (B, K, h, w) to the original image size: upsample to the model input size,
    crop the padding (``valid`` = resized image size), resize to ``original`` (H, W)."""
    x = F.interpolate(logits, (input_size, input_size), mode="bilinear", align_corners=False)
    x = x[..., : valid[0], : valid[1]]
    return F.interpolate(x, original, mode="bilinear", align_corners=False)
