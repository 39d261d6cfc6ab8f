"""Segment Anything: the backbone registry, base checkpoints, pre-processing and the promptable
predictor (embed an image once, decode any number of point and box prompts)."""

from sac.sam.backbones import BACKBONES, DEFAULT_BACKBONE, BackboneSpec, get_spec, load_sam
from sac.sam.predictor import Prediction, SamPredictor

__all__ = ["BACKBONES", "DEFAULT_BACKBONE", "BackboneSpec", "Prediction", "SamPredictor",
           "get_spec", "load_sam"]
