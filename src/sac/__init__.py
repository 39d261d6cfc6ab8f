"""Segment Any Cell: nucleus segmentation by fine-tuning Segment Anything on a CPU."""

__version__ = "0.1.0"

__all__ = ["__version__"]
