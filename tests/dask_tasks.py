"""Task functions for the distributed tests, importable by Dask worker processes (they inherit
the test process's sys.path): the library's tasks, wrapped to log calls or to crash once."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sac.batch.cluster import chunk_task, image_task


def _log(name: str, what: str) -> None:
    with open(os.environ["SAC_TEST_TASK_LOG"] + name, "a") as f:
        f.write(what + "\n")


def logged_image_task(path: Path, stem: str, settings: Any) -> Any:
    """image_task, recording each call in $SAC_TEST_TASK_LOG.images."""
    _log(".images", stem)
    return image_task(path, stem, settings)


def logged_chunk_task(settings: Any, plan: Any, tile: Any) -> Any:
    """chunk_task, recording each call in $SAC_TEST_TASK_LOG.chunks."""
    _log(".chunks", tile.id)
    return chunk_task(settings, plan, tile)


def crash_once_image_task(path: Path, stem: str, settings: Any) -> Any:
    """The first call on the image stem in $SAC_TEST_CRASH_STEM kills its worker process
    outright (as the out-of-memory killer would); later calls work."""
    marker = Path(os.environ["SAC_TEST_TASK_LOG"] + ".crashed")
    if stem == os.environ["SAC_TEST_CRASH_STEM"] and not marker.exists():
        marker.write_text(str(os.getpid()))
        os._exit(1)
    return logged_image_task(path, stem, settings)


def crash_once_chunk_task(settings: Any, plan: Any, tile: Any) -> Any:
    """The first call on the slide's chunk 1 kills its worker; later calls work."""
    marker = Path(os.environ["SAC_TEST_TASK_LOG"] + ".chunk-crashed")
    if tile.index == 1 and not marker.exists():
        marker.write_text(str(os.getpid()))
        os._exit(1)
    return logged_chunk_task(settings, plan, tile)
