"""From an image to instance labels, one module per stage: maps -> nuclei -> prompt_sets ->
decode -> merge/complete, orchestrated by :class:`sac.pipeline.segmenter.Segmenter`; plus the
size estimate, evidence check, folding of thin strips, expert clicks and the baselines.
"""
