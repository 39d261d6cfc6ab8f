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


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
    np.random.seed(0)


@pytest.fixture(autouse=True)
def _no_native_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    """``--precision auto`` means fp32 in tests on every CPU, so results do not depend on the
    machine's bf16 support (tests of bf16 ask for it; test_core_device tests the choice)."""
    from sac.core import device

    monkeypatch.setattr(device, "cpu_flags", lambda: frozenset())


@pytest.fixture(autouse=True)
def _torch_runtime(monkeypatch: pytest.MonkeyPatch) -> None:
    """``--runtime auto`` means torch in tests whether or not OpenVINO is installed (no
    conversions into the user's cache; tests of OpenVINO ask for it, with their own cache)."""
    from sac.sam import runtime

    monkeypatch.setattr(runtime, "has_openvino", lambda: False)


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
