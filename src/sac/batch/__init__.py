"""Many inputs: the per-input jobs, the single-process loop, job-array shards and Dask.

:mod:`sac.batch.settings` (what a run does to each input), :mod:`sac.batch.jobs` (one input:
segment, then write), :mod:`sac.batch.run` (the loop in this process), :mod:`sac.batch.shard`
(``--shard I/N``) and :mod:`sac.batch.cluster` (``--cluster``, Dask; an optional extra).
"""
