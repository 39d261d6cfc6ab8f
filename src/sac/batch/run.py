"""Running a batch of inputs in this process: the loop, its progress bar and its report.

A failing input is reported and removed of any partial outputs; the others go on. The Dask
engine (:mod:`sac.batch.cluster`) reports through the same :class:`Progress`, so a run reads
the same whichever way it ran.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from sac.batch.jobs import as_sac_error, is_slide, named, process_input
from sac.batch.settings import SegmentSettings, cached_segmenter
from sac.batch.shard import Shard
from sac.core.errors import SACError

if TYPE_CHECKING:
    from sac.pipeline.segmenter import AnySegmenter


@dataclass
class BatchReport:
    """What a batch did: inputs finished, nuclei found, failures by input."""

    done: int = 0
    nuclei: int = 0
    failures: list[tuple[str, SACError]] = field(default_factory=list)
    seconds: float = 0.0


class Progress:
    """A progress bar over ``total`` units with one line per finished input (unless quiet)."""

    def __init__(self, total: int, unit: str, quiet: bool) -> None:
        from tqdm import tqdm

        self.quiet = quiet
        self.bar = tqdm(total=total, disable=quiet or total < 2, unit=unit,
                        dynamic_ncols=True)
        self.report = BatchReport()

    def done(self, path: Path | str, n: int, where: str, seconds: float) -> None:
        self.report.done += 1
        self.report.nuclei += n
        if not self.quiet:
            self.bar.write(f"{Path(path).name}: {n} nuclei in {seconds:.1f} s -> {where}")

    def failed(self, path: Path | str, exc: BaseException, out: Path) -> None:
        err = as_sac_error(exc, path, out)
        self.report.failures.append((str(path), err))
        self.bar.write(f"sac segment: error: {named(str(path), err)}", file=sys.stderr)

    def advance(self, units: int = 1) -> None:
        self.bar.update(units)

    def close(self) -> BatchReport:
        self.bar.close()
        return self.report


def run_local(files: list[Path], stems: dict[Path, str], settings: SegmentSettings,
              shard: Shard | None = None, quiet: bool = False,
              seg: AnySegmenter | None = None
              ) -> BatchReport:
    """Segment ``files`` one after another in this process (a shard's share of them)."""
    t0 = time.perf_counter()
    seg = seg if seg is not None else cached_segmenter(settings)
    progress = Progress(len(files), "image", quiet)
    select = None if shard is None else shard.chunk_filter()
    for path in files:
        t = time.perf_counter()
        written: list[Path] = []
        try:
            n, where = process_input(path, stems[path], settings, seg, written,
                                     progress=not quiet,
                                     select=select if is_slide(path, settings) else None)
        except Exception as exc:  # one bad file never ends the batch
            for out in written:  # no partial set of outputs for a failed image
                out.unlink(missing_ok=True)
            progress.failed(path, exc, settings.output)
        except BaseException:  # Ctrl-C or SIGTERM: the image in progress leaves nothing
            for out in written:
                out.unlink(missing_ok=True)
            progress.close()
            raise
        else:
            progress.done(path, n, where, time.perf_counter() - t)
        progress.advance()
    report = progress.close()
    report.seconds = time.perf_counter() - t0
    return report


def shard_inputs(files: list[Path], settings: SegmentSettings, shard: Shard | None
                 ) -> list[Path]:
    """This shard's inputs: every N-th image, and every slide (whose chunks are shared)."""
    if shard is None:
        return files
    images = [p for p in files if not is_slide(p, settings)]
    mine = {p for i, p in enumerate(images) if shard.mine(i)}
    return [p for p in files if is_slide(p, settings) or p in mine]
