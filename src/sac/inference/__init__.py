"""Turning model outputs into label images: tiling, prompting pipelines and instance merging."""
