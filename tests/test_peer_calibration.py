"""cellpose's timing runs (benchmarks/peers/cellpose_run.py) fit the budget they measure for."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks" / "peers"))
import cellpose_run  # plain numpy + tifffile at import: no skip, a break fails


def test_short_epochs_keep_the_full_timing_runs() -> None:
    assert cellpose_run.calibration_epochs(20.0, 110 * 60) == (2, 12)


def test_long_epochs_shrink_the_timing_runs_to_a_tenth_of_the_budget() -> None:
    """DSB 2018's ~7-min epochs: 1 and 2 epochs of timing, not 2 and 12 (100 min)."""
    a, b = cellpose_run.calibration_epochs(420.0, 102 * 60)
    assert (a, b) == (1, 2)
    for warmup in (5.0, 30.0, 60.0, 120.0, 300.0, 3000.0):
        a, b = cellpose_run.calibration_epochs(warmup, 102 * 60)
        assert 1 <= a < b <= 12
        assert b == 2 or b * warmup <= 0.1 * 102 * 60  # the longer run: about a tenth
