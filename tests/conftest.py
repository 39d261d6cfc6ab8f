"""Shared fixtures: fixed seeds, the real LiteMedSAM model (loaded once), the shared data folder."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("QT_QPA_PLATFORM", "xcb")  # napari runs on the virtual screen of pytest-xvfb

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
# --precision auto and --runtime auto mean fp32 and torch in every test, and in the processes
# tests start (CLI runs, Dask workers), whatever the machine: results do not depend on its bf16
# support, and nothing is converted into the user's cache. Tests of the choice clear these.
os.environ["SAC_PRECISION"] = "fp32"
os.environ["SAC_RUNTIME"] = "torch"


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
    np.random.seed(0)


@pytest.fixture(scope="session")
def lite_medsam():
    """The real LiteMedSAM model. The test command installs its weights package, so a missing
    package is a failure here, not a skip."""
    from sac.sam.backbones import load_sam

    torch.set_num_threads(max(1, torch.get_num_threads()))
    return load_sam("lite_medsam")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is absent (only in the development setup)")
    return SHARED_DATA


#: fixtures that load the real LiteMedSAM weights; a test using one (or a fixture built on one)
#: needs the weights marker
WEIGHT_FIXTURES = {"lite_medsam"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test that loads the real weights carries ``@pytest.mark.weights``, so that
    ``-m "not weights"`` really runs without them: a missing marker is a collection error."""
    unmarked = [item.nodeid for item in items
                if WEIGHT_FIXTURES & set(getattr(item, "fixturenames", ()))
                and item.get_closest_marker("weights") is None]
    if unmarked:
        raise pytest.UsageError("tests that load the real weights lack @pytest.mark.weights: "
                                + ", ".join(unmarked))
