"""Many inputs at once: job-array shards, ``sac merge-slide`` and the Dask engine (a real
LocalCluster of 2 worker processes): the same files as one process, each worker loading the
model once, a killed worker's tasks rerun, and an interrupted run resumed without recomputing
what it finished. The shipped fluorescence model segments synthetic bright disks."""

from __future__ import annotations

import json
import os
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile

from sac.batch.settings import SegmentSettings
from sac.batch.shard import Shard
from sac.cli.main import main
from sac.core.errors import ConfigError
from sac.core.fileio import output_stems
from sac.data.inputs import expand_inputs
from sac.pipeline.options import SegmentOptions
from sac.slides.options import SlideOptions

from synthetic import disk_image, write_pyramid

pytestmark = pytest.mark.weights  # the shipped model runs on its LiteMedSAM base

MODEL = "sac-lite-dsb2018"
SLIDE_DISKS = [(60, 60, 9), (60, 200, 10), (130, 128, 11), (200, 60, 9), (250, 330, 10),
               (330, 250, 9), (100, 340, 8)]
CHUNKS = 6
FLAGS = ["--model", MODEL, "--no-auto-scale", "--wsi", "--no-tissue-mask", "--chunk-size", "256",
         "--save-geojson", "--save-csv", "--quiet"]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    """Four small images and one 384 x 400 pyramidal slide (6 chunks of 256 px)."""
    folder = tmp_path_factory.mktemp("inputs")
    for i in range(4):
        disks = [(30 + 7 * i, 40, 9), (40, 110 - 5 * i, 10), (100, 60, 8 + i), (95, 125, 9)]
        iio.imwrite(folder / f"img{i}.png", disk_image((128, 160), disks, seed=i)[0])
    write_pyramid(folder / "slide.tif", disk_image((384, 400), SLIDE_DISKS, seed=7)[0])
    return folder


@pytest.fixture(scope="module")
def reference(inputs: Path, tmp_path_factory) -> Path:
    """The single-process run every other run must reproduce."""
    out = tmp_path_factory.mktemp("reference")
    assert main(["segment", str(inputs), "-o", str(out), *FLAGS]) == 0
    return out


def settings(out: Path) -> SegmentSettings:
    """The library settings the CLI's FLAGS stand for."""
    return SegmentSettings(output=out, model=MODEL, options=SegmentOptions(auto_scale=False),
                           wsi=True, slide=SlideOptions(chunk=256, tissue=False),
                           save=("geojson", "csv"))


def files_of(inputs: Path) -> tuple[list[Path], dict[Path, str]]:
    files = expand_inputs([str(inputs)])[0]
    return files, output_stems(files)


def assert_same_outputs(a: Path, b: Path) -> None:
    """The same files with the same contents (labels, GeoJSON features, CSV rows)."""
    names = sorted(p.name for p in a.iterdir())
    assert names == sorted(p.name for p in b.iterdir())
    assert "slide.geojson" in names and "img0_labels.tif" in names
    for name in names:
        if name.endswith(".tif"):
            np.testing.assert_array_equal(tifffile.imread(a / name), tifffile.imread(b / name))
        elif name.endswith(".geojson"):
            assert json.loads((a / name).read_text()) == json.loads((b / name).read_text())
        else:
            assert (a / name).read_text() == (b / name).read_text(), name


def test_reference_finds_the_nuclei(reference: Path) -> None:
    doc = json.loads((reference / "slide.geojson").read_text())
    assert len(doc["features"]) == len(SLIDE_DISKS)
    assert int(tifffile.imread(reference / "img0_labels.tif").max()) == 4


def test_shard_parsing() -> None:
    assert Shard.parse("2/3") == Shard(2, 3) and Shard(1, 3).mine(4) and not Shard(0, 3).mine(4)
    for bad in ("3/3", "-1/2", "1", "a/b", "1/0"):
        with pytest.raises(ConfigError, match="--shard"):
            Shard.parse(bad)


def test_three_shards_make_the_unsharded_outputs(inputs: Path, reference: Path,
                                                 tmp_path: Path) -> None:
    out = tmp_path / "out"
    for i in range(3):
        assert main(["segment", str(inputs), "-o", str(out), *FLAGS, "--shard", f"{i}/3"]) == 0
        done = (out / "slide.geojson").exists()
        assert done == (i == 2)  # the last shard finds every part and assembles the slide
        assert (out / "slide.sac-parts").is_dir() != done
    assert_same_outputs(reference, out)
    # a rerun of a shard with --skip-existing has nothing left to do
    assert main(["segment", str(inputs), "-o", str(out), *FLAGS, "--shard", "1/3",
                 "--skip-existing"]) == 0
    assert_same_outputs(reference, out)


def test_merge_slide_after_a_shard_died_before_assembling(inputs: Path, reference: Path,
                                                          tmp_path: Path, monkeypatch,
                                                          capsys) -> None:
    import sac.slides.segment as slide_segment

    out = tmp_path / "out"
    slide = [str(inputs / "slide.tif")]
    assert main(["segment", *slide, "-o", str(out), *FLAGS, "--shard", "0/2"]) == 0
    parts = out / "slide.sac-parts"
    assert main(["merge-slide", str(parts)]) == 2  # half the chunks have no part yet
    assert f"{CHUNKS // 2} of {CHUNKS} chunk(s) have no part yet" in capsys.readouterr().err
    monkeypatch.setattr(slide_segment, "finish_slide", lambda plan, overwrite=False: None)
    assert main(["segment", *slide, "-o", str(out), *FLAGS, "--shard", "1/2"]) == 0
    assert not (out / "slide.geojson").exists() and parts.is_dir()
    assert main(["merge-slide", str(parts)]) == 0
    assert not parts.exists()
    for name in ("slide.geojson", "slide_nuclei.csv"):
        assert (out / name).read_text() == (reference / name).read_text()
    assert main(["merge-slide", str(tmp_path)]) == 2  # not a parts folder: said so


def test_shard_refuses_what_shards_cannot_share(inputs: Path, tmp_path: Path, capsys) -> None:
    out = str(tmp_path / "o")
    assert main(["segment", str(inputs), "-o", out, *FLAGS, "--shard", "0/2",
                 "--slide-labels"]) == 4
    assert "--slide-labels" in capsys.readouterr().err
    assert main(["segment", str(inputs), "-o", out, *FLAGS, "--shard", "0/2",
                 "--cluster", "local:2"]) == 4


# --- Dask ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """Two worker processes; they inherit the task log location from the environment."""
    pytest.importorskip("distributed")  # installed by the test command: a skip means no extra
    from sac.batch.cluster import open_cluster

    log = tmp_path_factory.mktemp("tasklog") / "log"
    old = {k: os.environ.get(k) for k in ("SAC_TEST_TASK_LOG", "SAC_TEST_CRASH_STEM")}
    os.environ["SAC_TEST_TASK_LOG"] = str(log)
    os.environ["SAC_TEST_CRASH_STEM"] = "img2"
    c = open_cluster("local:2")
    yield c, log
    c.close()
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def _calls(log: Path, kind: str) -> list[str]:
    path = Path(f"{log}.{kind}")
    calls = path.read_text().split() if path.exists() else []
    path.unlink(missing_ok=True)
    return calls


def test_local_cluster_matches_one_process_and_loads_once(cluster, inputs: Path,
                                                          reference: Path,
                                                          tmp_path: Path) -> None:
    from sac.batch.cluster import run_dask, worker_loads

    from dask_tasks import logged_chunk_task, logged_image_task

    c, log = cluster
    files, stems = files_of(inputs)
    report = run_dask(c, files, stems, settings(tmp_path), quiet=True,
                      image_fn=logged_image_task, chunk_fn=logged_chunk_task)
    assert report.done == 5 and not report.failures
    assert_same_outputs(reference, tmp_path)
    assert sorted(_calls(log, "images")) == [f"img{i}" for i in range(4)]
    assert len(_calls(log, "chunks")) == CHUNKS  # each chunk once
    loads = c.client.run(worker_loads)
    assert sorted(loads.values()) == [1, 1]  # both workers worked, each loaded the model once


def test_interrupted_cluster_run_resumes_without_recomputing(cluster, inputs: Path,
                                                             reference: Path, tmp_path: Path,
                                                             monkeypatch) -> None:
    import sac.batch.cluster as engine
    from sac.batch.jobs import outputs_complete

    from dask_tasks import logged_chunk_task, logged_image_task

    c, log = cluster
    files, stems = files_of(inputs)
    real = engine._chunk_done
    seen: list[str] = []

    def interrupt_after_two(fut, state, tile, *rest):  # the user presses Ctrl-C
        real(fut, state, tile, *rest)
        seen.append(tile.id)
        if len(seen) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(engine, "_chunk_done", interrupt_after_two)
    with pytest.raises(KeyboardInterrupt):
        engine.run_dask(c, files, stems, settings(tmp_path), quiet=True,
                        image_fn=logged_image_task, chunk_fn=logged_chunk_task)
    monkeypatch.setattr(engine, "_chunk_done", real)
    parts = {p.stem for p in (tmp_path / "slide.sac-parts").glob("*.json")} - {"manifest"}
    assert set(seen) <= parts and len(parts) < CHUNKS
    finished = [p for p in files if outputs_complete(p, stems[p], settings(tmp_path))]
    _calls(log, "images"), _calls(log, "chunks")
    todo = [p for p in files if p not in finished]  # what --skip-existing leaves
    report = engine.run_dask(c, todo, stems, settings(tmp_path), quiet=True,
                             image_fn=logged_image_task, chunk_fn=logged_chunk_task)
    assert not report.failures
    again = _calls(log, "chunks")
    assert not set(again) & parts and len(again) == CHUNKS - len(parts)
    assert sorted(_calls(log, "images")) == sorted(stems[p] for p in todo
                                                   if p.suffix == ".png")
    assert_same_outputs(reference, tmp_path)


def test_killed_workers_tasks_are_rerun(cluster, inputs: Path, reference: Path,
                                        tmp_path: Path) -> None:
    from sac.batch.cluster import run_dask

    from dask_tasks import crash_once_chunk_task, crash_once_image_task

    c, log = cluster
    files, stems = files_of(inputs)
    report = run_dask(c, files, stems, settings(tmp_path), quiet=True,
                      image_fn=crash_once_image_task, chunk_fn=crash_once_chunk_task)
    assert Path(f"{log}.crashed").exists() and Path(f"{log}.chunk-crashed").exists()
    assert report.done == 5 and not report.failures
    assert_same_outputs(reference, tmp_path)  # nothing lost, nothing twice


def test_segment_cli_on_a_local_cluster(inputs: Path, reference: Path, tmp_path: Path) -> None:
    pytest.importorskip("distributed")
    assert main(["segment", str(inputs), "-o", str(tmp_path), *FLAGS,
                 "--cluster", "local:2"]) == 0
    assert_same_outputs(reference, tmp_path)


def test_cluster_specs_are_checked(tmp_path: Path) -> None:
    pytest.importorskip("distributed")
    from sac.batch.cluster import open_cluster, read_cluster_config

    for bad in ("local:0", "local:x", "kubernetes"):
        with pytest.raises(ConfigError, match="--cluster"):
            open_cluster(bad)
    with pytest.raises(ConfigError, match="--cluster-config"):
        open_cluster("slurm")
    cfg = tmp_path / "slurm.yaml"
    cfg.write_text("cores: 8\nmemory: 32GB\nwalltime: '02:00:00'\njobs: 4\n")
    assert read_cluster_config(cfg, "slurm") == {"cores": 8, "memory": "32GB",
                                                 "walltime": "02:00:00", "jobs": 4}
    cfg.write_text("- not a mapping\n")
    with pytest.raises(ConfigError, match="mapping"):
        read_cluster_config(cfg, "slurm")


def test_slurm_cluster_is_built_from_the_config_file(tmp_path: Path, monkeypatch) -> None:
    """dask-jobqueue gets the file's settings and is scaled to its job count (a fake
    SLURMCluster: no scheduler here)."""
    distributed = pytest.importorskip("distributed")
    import types

    from sac.batch.cluster import open_cluster

    made: dict[str, object] = {}

    class FakeSLURM:
        def __init__(self, **kwargs):
            made["kwargs"] = kwargs

        def scale(self, jobs):
            made["jobs"] = jobs

        def close(self):
            made["closed"] = True

    monkeypatch.setitem(__import__("sys").modules, "dask_jobqueue",
                        types.SimpleNamespace(SLURMCluster=FakeSLURM))
    monkeypatch.setattr(distributed, "Client", lambda cluster: types.SimpleNamespace(
        close=lambda: made.setdefault("client_closed", True), cluster=cluster,
        wait_for_workers=lambda n, timeout: None))
    import sac.batch.cluster as cluster_module

    monkeypatch.setattr(cluster_module.shutil, "which", lambda cmd: f"/usr/bin/{cmd}")
    cfg = tmp_path / "slurm.yaml"
    cfg.write_text("cores: 4\nmemory: 16GB\nqueue: normal\njobs: 3\ntorch_threads: 4\n")
    c = open_cluster("slurm", cfg)
    assert made["kwargs"] == {"cores": 4, "memory": "16GB", "queue": "normal"}
    assert made["jobs"] == 3 and c.threads == 4
    c.close()
    assert made["closed"] and made["client_closed"]


@pytest.mark.parametrize("text, which, waits, said", [
    ("jobs: abc\n", True, True, "jobs"),
    ("cores: 4\nbogus_key: 1\n", True, True, "bogus_key"),
    ("cores: 4\n", False, True, "sbatch"),
    ("cores: 4\nworker_timeout: 1\n", True, False, "no worker joined within 1 s"),
])
def test_cluster_configs_and_schedulers_are_checked(tmp_path: Path, monkeypatch, text,
                                                    which, waits, said) -> None:
    """``jobs: abc`` and unknown keys gave tracebacks; ``--cluster slurm`` without sbatch an
    asyncio traceback and then a wait for workers that never ended."""
    distributed = pytest.importorskip("distributed")
    import types

    import sac.batch.cluster as cluster_module
    from sac.batch.cluster import open_cluster

    class FakeSLURM:
        def __init__(self, cores=1, memory="1GB"):
            pass

        def scale(self, jobs):
            pass

        def close(self):
            pass

    def wait(n, timeout):
        if not waits:
            raise TimeoutError

    monkeypatch.setitem(__import__("sys").modules, "dask_jobqueue",
                        types.SimpleNamespace(SLURMCluster=FakeSLURM))
    monkeypatch.setattr(distributed, "Client", lambda cluster: types.SimpleNamespace(
        close=lambda: None, wait_for_workers=wait))
    monkeypatch.setattr(cluster_module.shutil, "which",
                        lambda cmd: f"/usr/bin/{cmd}" if which else None)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(text)
    with pytest.raises(ConfigError, match=said):
        open_cluster("slurm", cfg)


def test_local_cluster_is_bounded_by_the_cores(monkeypatch, caplog) -> None:
    """``--cluster local:99999`` on 2 cores started nothing for 300 s."""
    distributed = pytest.importorskip("distributed")
    import types

    from sac.batch.cluster import open_cluster

    made: dict[str, int] = {}

    def local(n_workers, **kwargs):
        made["n"] = n_workers
        return types.SimpleNamespace(close=lambda: None)

    monkeypatch.setattr(distributed, "LocalCluster", local)
    monkeypatch.setattr(distributed, "Client", lambda c: types.SimpleNamespace(
        close=lambda: None))
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    c = open_cluster("local:99999")
    assert made["n"] == 2 and c.threads == 1 and "2 cores" in caplog.text


def test_a_bad_file_on_a_cluster_prints_no_worker_traceback(cluster, inputs: Path,
                                                            tmp_path: Path, capfd) -> None:
    """One truncated PNG among the inputs: the batch went on and the summary was right, but
    a Dask worker's traceback reached the terminal."""
    from sac.batch.cluster import run_dask

    c, _ = cluster
    bad = tmp_path / "in" / "broken.png"
    bad.parent.mkdir()
    bad.write_bytes((inputs / "img0.png").read_bytes()[:200])
    files, stems = files_of(inputs)
    files = [*[p for p in files if p.suffix == ".png"][:2], bad]
    stems = {p: p.stem for p in files}
    report = run_dask(c, files, stems, settings(tmp_path / "out"), quiet=True)
    err = capfd.readouterr().err
    assert report.done == 2 and len(report.failures) == 1
    assert "broken.png" in err and "Traceback" not in err and "Compute Failed" not in err
