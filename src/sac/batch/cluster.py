"""``sac segment --cluster``: images and slide chunks as Dask tasks, outputs written here.

Workers run pure tasks (:func:`image_task`, :func:`chunk_task`); each loads the model once
per process (:func:`sac.batch.settings.cached_segmenter`) and returns what it found. This
client writes every file, atomically and in the same form as the single-process path, as
results stream in: an image's outputs, a slide's parts, and the slide's GeoJSON and CSV once
its last part is in. A worker that dies has its tasks rerun elsewhere by Dask's scheduler
(``distributed.scheduler.allowed-failures``); a task that raises fails its input only. An
interrupted run resumes on the next: finished images are skipped with ``--skip-existing``,
finished slide chunks always.

Dask and dask-jobqueue are an optional extra: ``pip install 'segment-any-cell[distributed]'``.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sac.batch.jobs import (
    ImageOutcome,
    as_sac_error,
    check_image_outputs,
    is_slide,
    outputs_for,
    scale_request,
    segment_image,
    slide_segmenter,
    write_image,
)
from sac.batch.run import BatchReport, Progress
from sac.batch.settings import SegmentSettings, cached_segmenter, load_count
from sac.core.checks import number
from sac.core.errors import ConfigError, SACError

if TYPE_CHECKING:
    from sac.pipeline.segmenter import AnySegmenter

JOBQUEUE = {"slurm": "SLURMCluster", "pbs": "PBSCluster", "lsf": "LSFCluster",
            "sge": "SGECluster"}
#: the command each scheduler's jobs are submitted with
SUBMIT = {"slurm": "sbatch", "pbs": "qsub", "lsf": "bsub", "sge": "qsub"}
log = logging.getLogger("sac.batch")


def _need_dask() -> Any:
    try:
        import distributed
    except ImportError:
        raise ConfigError("--cluster needs Dask: pip install 'segment-any-cell[distributed]'"
                          ) from None
    return distributed


@dataclass
class Cluster:
    """A Dask client, the cluster it started (if any), and the torch threads per worker."""

    client: Any
    cluster: Any = None
    threads: int | None = None

    def close(self) -> None:
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()


def open_cluster(spec: str, config: Path | None = None) -> Cluster:
    """``local:N`` (N worker processes here, the cores split between them),
    ``tcp://HOST:PORT`` (an existing scheduler), or ``slurm`` / ``pbs`` / ``lsf`` / ``sge``
    (dask-jobqueue, settings from the YAML or JSON file ``config``: the cluster class's
    keyword arguments plus ``jobs``, how many batch jobs to start, and optionally
    ``torch_threads``)."""
    distributed = _need_dask()
    if spec.startswith("local:"):
        try:
            n = int(spec.split(":", 1)[1])
            if n < 1:
                raise ValueError
        except ValueError:
            raise ConfigError(f"--cluster {spec!r}: expected local:N with N >= 1") from None
        cores = os.cpu_count() or 1
        if n > cores:  # more worker processes than cores only slow each other down
            log.warning("--cluster local:%d: this machine has %d cores; starting %d workers",
                        n, cores, cores)
            n = cores
        threads = max(1, cores // n)
        import dask

        env = worker_environment(threads)
        with dask.config.set(env):
            cluster = distributed.LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                               dashboard_address=":0", silence_logs=40)
        return Cluster(distributed.Client(cluster), cluster, threads)
    if "://" in spec:
        try:
            return Cluster(distributed.Client(spec, timeout="30s"))
        except OSError as exc:
            raise ConfigError(f"--cluster {spec}: cannot reach the Dask scheduler ({exc})"
                              ) from None
    if spec in JOBQUEUE:
        settings = read_cluster_config(config, spec)
        try:
            import dask_jobqueue
        except ImportError:
            raise ConfigError(f"--cluster {spec} needs dask-jobqueue: pip install "
                              "'segment-any-cell[distributed]'") from None
        jobs = number("jobs", settings.pop("jobs", 1), 1, 100_000, integer=True)
        threads = settings.pop("torch_threads", None)
        if threads is not None:
            threads = number("torch_threads", threads, 1, 1024, integer=True)
        wait = number("worker_timeout", settings.pop("worker_timeout", 600), 1, 86_400)
        submit = SUBMIT[spec]
        if shutil.which(submit) is None:
            raise ConfigError(f"--cluster {spec} submits jobs with {submit}, which is not on "
                              "this machine's PATH; run sac on the cluster's login node")
        try:
            cluster = getattr(dask_jobqueue, JOBQUEUE[spec])(**settings)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"--cluster-config {config}: {exc} (the keys are "
                              f"dask_jobqueue.{JOBQUEUE[spec]}'s arguments plus jobs, "
                              "torch_threads and worker_timeout)") from None
        cluster.scale(jobs=jobs)
        client = distributed.Client(cluster)
        try:
            client.wait_for_workers(1, timeout=wait)
        except (TimeoutError, OSError):
            client.close()
            cluster.close()
            raise ConfigError(f"--cluster {spec}: no worker joined within {wait:g} s; check "
                              "the queue (is the job pending or failed?) or raise "
                              "worker_timeout in --cluster-config") from None
        return Cluster(client, cluster, threads)
    raise ConfigError(f"--cluster {spec!r}: expected local:N, tcp://HOST:PORT or one of "
                      f"{', '.join(JOBQUEUE)}")


def worker_environment(threads: int) -> dict[str, Any]:
    """Dask settings for the environment of local worker processes.

    Dask starts workers with OMP_NUM_THREADS=1 (and MKL, OpenBLAS), where each should have
    its share of the cores, and with MALLOC_TRIM_THRESHOLD_=65536, which makes glibc return
    every large block at once: SAM's encoder then runs 1.7x slower (measured). Unset here;
    on a cluster of your own, unset it in the workers' Dask config the same way.
    """
    env: dict[str, Any] = {f"distributed.nanny.pre-spawn-environ.{k}": threads
                           for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS",
                                     "OPENBLAS_NUM_THREADS")}
    env["distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_"] = None
    return env


def read_cluster_config(path: Path | None, kind: str) -> dict[str, Any]:
    """The ``--cluster-config`` file as a dict (YAML or JSON)."""
    import yaml

    if path is None:
        raise ConfigError(f"--cluster {kind} needs --cluster-config FILE (the job settings: "
                          "cores, memory, walltime, queue, jobs; see docs/scaling.md)")
    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"--cluster-config {path}: cannot read it ({exc})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"--cluster-config {path}: expected a mapping of settings")
    return dict(data)


@dataclass
class Failed:
    """A task's failure, returned as a value: raised on a worker, it would be logged there
    with its traceback (a bad file is the user's business, reported once by the client)."""

    error: SACError


def _result(fut: Any) -> Any:
    """A finished task's value, raising the error of a :class:`Failed` one."""
    value = fut.result()
    if isinstance(value, Failed):
        raise value.error
    return value


def image_task(path: Path, stem: str, settings: SegmentSettings) -> ImageOutcome | Failed:
    """Worker side: segment one image with this worker's cached model."""
    try:
        return segment_image(path, stem, settings, cached_segmenter(settings))
    except Exception as exc:
        return Failed(as_sac_error(exc, path, settings.output))


def chunk_task(settings: SegmentSettings, plan: Any, tile: Any
               ) -> tuple[list[dict[str, Any]], np.ndarray | None] | Failed:
    """Worker side: one slide chunk's nuclei (and kept labels for ``--slide-labels``)."""
    from sac.slides.segment import segment_chunk

    try:
        nuclei, kept = segment_chunk(slide_segmenter(cached_segmenter(settings)), plan, tile)
    except Exception as exc:
        return Failed(as_sac_error(exc, plan.path, settings.output))
    return nuclei, kept if settings.slide_labels else None


def worker_loads() -> int:
    """How many models this worker process has loaded (``client.run(worker_loads)``)."""
    return load_count()


@dataclass
class _Slide:
    path: Path
    plan: Any
    pending: set[str] = field(default_factory=set)
    labels: np.ndarray | None = None
    next_id: int = 0
    failed: bool = False
    t0: float = field(default_factory=time.perf_counter)
    resumed: int = 0


def run_dask(cluster: Cluster, files: list[Path], stems: dict[Path, str],
             settings: SegmentSettings, quiet: bool = False,
             image_fn: Callable[..., Any] = image_task,
             chunk_fn: Callable[..., Any] = chunk_task, seg: AnySegmenter | None = None
             ) -> BatchReport:
    """Segment ``files`` on the cluster's workers; see the module docstring. ``seg`` (this
    process's segmenter, loaded if needed) plans whole slides."""
    distributed = _need_dask()
    t0 = time.perf_counter()
    if cluster.threads is not None:
        settings = settings.replace(threads=cluster.threads)
    client = cluster.client
    work: dict[Any, tuple[str, Any, Any]] = {}  # future -> (kind, input, tile)
    slides: dict[Path, _Slide] = {}
    early: list[tuple[Path, BaseException]] = []
    for path in files:
        try:
            if is_slide(path, settings):
                seg = seg if seg is not None else cached_segmenter(settings)
                slides[path] = _plan(path, stems[path], settings, seg)
            else:
                check_image_outputs(settings, stems[path])
                fut = client.submit(image_fn, path, stems[path], settings, pure=False)
                work[fut] = ("image", path, None)
        except Exception as exc:
            early.append((path, exc))
    for state in slides.values():
        for tile in state.plan.tiles:
            fut = _chunk(client, chunk_fn, settings, state, tile)
            if fut is not None:
                work[fut] = ("chunk", state.path, tile)
    progress = Progress(len(work), "task", quiet)
    for path, err in early:
        progress.failed(path, err, settings.output)
    for state in slides.values():
        if not state.pending:
            _finish(state, settings, progress)
    started = {path: time.perf_counter() for path in files}
    try:
        for fut in distributed.as_completed(list(work)):
            entry = work.pop(fut, None)
            if entry is None:  # cancelled with its slide
                continue
            kind, path, tile = entry
            progress.advance()
            if kind == "image":
                _image_done(fut, path, stems[path], settings, progress, started[path])
            else:
                _chunk_done(fut, slides[path], tile, settings, progress, work)
            fut.release()
    finally:
        for fut in work:  # interrupted: nothing more is computed for this run
            fut.cancel()
    report = progress.close()
    report.seconds = time.perf_counter() - t0
    return report


def _plan(path: Path, stem: str, settings: SegmentSettings, seg: AnySegmenter) -> _Slide:
    """The client plans each slide (level, scale, chunks, resume folder) with its own model."""
    from sac.slides.segment import plan_slide

    seg = slide_segmenter(seg)
    out_labels = outputs_for(settings, stem, slide=True).get("labels")  # --slide-labels
    if out_labels is not None:
        from sac.core.fileio import check_writable

        check_writable(out_labels, settings.overwrite)
    plan = plan_slide(seg, path, settings.output, settings.slide,
                      overwrite=settings.overwrite, scale=scale_request(settings), stem=stem)
    state = _Slide(path, plan)
    if settings.slide_labels:
        from sac.slides.segment import region_canvas

        state.labels = region_canvas(plan.tiles)
    return state


def _chunk(client: Any, chunk_fn: Callable[..., Any], settings: SegmentSettings,
           state: _Slide, tile: Any) -> Any:
    """Submit one chunk, or settle it here (resumed, or no tissue: an empty part)."""
    from sac.slides.parts import has_part, write_part

    plan = state.plan
    if state.labels is None and has_part(plan.parts, tile):
        state.resumed += 1
        return None
    if not plan.has_tissue(tile):
        write_part(plan.parts, tile, [], "no tissue")
        return None
    state.pending.add(tile.id)
    return client.submit(chunk_fn, settings, plan, tile, pure=False)


def _image_done(fut: Any, path: Path, stem: str, settings: SegmentSettings,
                progress: Progress, t: float) -> None:
    written: list[Path] = []
    try:
        n, where = write_image(_result(fut), stem, settings, written)
    except Exception as exc:
        for out in written:
            out.unlink(missing_ok=True)
        progress.failed(path, exc, settings.output)
        return
    progress.done(path, n, where, time.perf_counter() - t)


def _chunk_done(fut: Any, state: _Slide, tile: Any, settings: SegmentSettings,
                progress: Progress, work: dict[Any, tuple[str, Any, Any]]) -> None:
    from sac.slides.parts import write_part
    from sac.slides.segment import paste_chunk

    if state.failed:
        return
    try:
        nuclei, kept = _result(fut)
        write_part(state.plan.parts, tile, nuclei, "done")
    except Exception as exc:
        state.failed = True
        for other, (_, path, _) in list(work.items()):  # the slide's other chunks are moot
            if path == state.path:
                other.cancel()
                del work[other]
        progress.failed(state.path, exc, settings.output)
        return
    if state.labels is not None and kept is not None:
        state.next_id = paste_chunk(state.labels, kept, tile, state.plan.tiles[0], state.next_id)
    state.pending.discard(tile.id)
    if not state.pending:
        _finish(state, settings, progress)


def _finish(state: _Slide, settings: SegmentSettings, progress: Progress) -> None:
    """Assemble a slide whose parts are all in; write its label image if asked."""
    from sac.slides.segment import finish_slide

    plan = state.plan
    try:
        n = finish_slide(plan, settings.overwrite) or 0
        where = ", ".join(str(p) for p in plan.outputs.values())
        if state.labels is not None:
            from sac.core.labels import relabel_sequential
            from sac.outputs.images import write_labels_tif

            out = outputs_for(settings, plan.stem, slide=True)["labels"]
            write_labels_tif(out, relabel_sequential(state.labels), settings.overwrite,
                             plan.pixel_um)
            where += f", {out}"
    except Exception as exc:
        progress.failed(state.path, exc, settings.output)
        return
    progress.done(state.path, n, f"{where} ({len(plan.tiles)} chunks, {state.resumed} "
                  "resumed)", time.perf_counter() - state.t0)
