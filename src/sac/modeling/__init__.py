"""SAM-family model code: pure tensor modules, no file or network I/O."""

from sac.modeling.lora import LoRAConfig, LoRAQKV, apply_lora, lora_state_dict, merge_lora
from sac.modeling.mask_decoder import MaskDecoder
from sac.modeling.prompt_encoder import PromptEncoder
from sac.modeling.sam import Sam
from sac.modeling.tiny_vit import TinyViT, TinyViTConfig
from sac.modeling.transformer import TwoWayTransformer
from sac.modeling.vit import ImageEncoderViT, ViTConfig

__all__ = [
    "ImageEncoderViT",
    "LoRAConfig",
    "LoRAQKV",
    "MaskDecoder",
    "PromptEncoder",
    "Sam",
    "TinyViT",
    "TinyViTConfig",
    "TwoWayTransformer",
    "ViTConfig",
    "apply_lora",
    "lora_state_dict",
    "merge_lora",
]
