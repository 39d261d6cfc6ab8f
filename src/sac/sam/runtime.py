"""Where the image encoder runs: torch (always there), OpenVINO or ONNX Runtime (optional
extras, CPU only).

The encoder is most of SAC's time on a CPU; a runtime made for CPU inference runs the same
network faster than torch eager (``benchmarks/speed.py`` measures each). The network, with
its LoRA, is converted on first use from the model's own weights (nothing is shipped twice)
into ``<cache>/<runtime>/<digest>/``, the digest being of the encoder's weights, so a
retrained model never meets a stale file; files are written under temporary names and then
renamed, and later runs load them. OpenVINO takes one file for every input size and computes
in bf16 where the CPU has it natively; ONNX Runtime takes one file per input size (inputs are
padded to a multiple of :data:`ONNX_MULTIPLE`) and computes in fp32.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from sac.core.errors import ConfigError

#: ``--runtime`` choices
RUNTIMES = ("torch", "openvino", "onnx")
#: with ONNX Runtime, encoder inputs are padded to a multiple of this (one file per size)
ONNX_MULTIPLE = 256
#: extras that the onnx runtime needs (to run, and to export the network once)
ONNX_EXTRA = "pip install 'segment-any-cell[onnx]' (onnxruntime, onnx, onnxscript)"
OPENVINO_EXTRA = "pip install 'segment-any-cell[openvino]'"


class Encoder(Protocol):
    """Normalised, padded (1, 3, S, S) pixels to the (1, C, S/4, S/4) image embedding."""

    multiple: int  # encoder inputs are padded to a multiple of this

    def __call__(self, pixels: torch.Tensor, bf16: bool) -> torch.Tensor: ...


class TorchEncoder:
    """The encoder in torch eager, fp32 or bf16 autocast."""

    multiple = 16

    def __init__(self, sam: nn.Module) -> None:
        self.sam = sam

    def __call__(self, pixels: torch.Tensor, bf16: bool) -> torch.Tensor:
        from sac.core.device import autocast_context

        device = pixels.device
        with autocast_context(device, bf16):
            return self.sam.encode(pixels).float()


def cache_root() -> Path:
    """``$SAC_CACHE``, else ``$XDG_CACHE_HOME/sac``, else ``~/.cache/sac``."""
    if os.environ.get("SAC_CACHE"):
        return Path(os.environ["SAC_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "sac"


def weights_digest(module: nn.Module) -> str:
    """A digest of a module's parameters and buffers (names, shapes and values)."""
    h = hashlib.blake2b(digest_size=12)
    for name, t in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


class OnnxEncoder:
    """The encoder in ONNX Runtime (fp32, CPU), exported per input size on first use."""

    multiple = ONNX_MULTIPLE

    def __init__(self, sam: nn.Module, cache: Path | None = None,
                 threads: int | None = None) -> None:
        self.ort = _import_onnxruntime()
        self.sam = sam
        self.folder = (cache or cache_root() / "onnx") / weights_digest(sam.image_encoder)
        self.threads = threads or torch.get_num_threads()
        self.sessions: dict[int, Any] = {}

    def path(self, size: int) -> Path:
        return self.folder / f"encoder_{size}.onnx"

    def session(self, size: int) -> Any:
        """The ORT session for ``size`` x ``size`` inputs (exported first if not cached)."""
        if size not in self.sessions:
            path = self.path(size)
            if not path.is_file():
                self.export(size)
            options = self.ort.SessionOptions()
            options.intra_op_num_threads = self.threads
            options.inter_op_num_threads = 1
            self.sessions[size] = self.ort.InferenceSession(
                str(path), options, providers=["CPUExecutionProvider"])
        return self.sessions[size]

    def export(self, size: int) -> Path:
        """Export the encoder for ``size`` x ``size`` inputs to the cache (atomically)."""
        path = self.path(size)
        self.folder.mkdir(parents=True, exist_ok=True)
        encoder = self.sam.image_encoder.eval()
        x = torch.zeros(1, 3, size, size)
        fd, tmp = tempfile.mkstemp(prefix=".encoder_", suffix=".onnx", dir=self.folder)
        os.close(fd)
        try:
            with torch.no_grad():
                torch.onnx.export(encoder, (x,), tmp, dynamo=True, optimize=True,
                                  external_data=False, verbose=False)
            os.replace(tmp, path)
        except Exception as exc:
            raise ConfigError(f"exporting the image encoder to ONNX failed ({exc}); use "
                              "--runtime torch") from exc
        finally:
            Path(tmp).unlink(missing_ok=True)
        return path

    def __call__(self, pixels: torch.Tensor, bf16: bool) -> torch.Tensor:
        if pixels.shape[0] != 1 or pixels.shape[-1] != pixels.shape[-2]:
            raise ValueError(f"the ONNX encoder takes one square image; got {tuple(pixels.shape)}")
        sess = self.session(int(pixels.shape[-1]))
        name = sess.get_inputs()[0].name
        out = sess.run(None, {name: pixels.detach().float().cpu().contiguous().numpy()})[0]
        return torch.from_numpy(out).to(pixels.device)


class OpenVinoEncoder:
    """The encoder in OpenVINO (CPU), converted once for inputs of any size; bf16 where asked
    (OpenVINO then uses the CPU's native bf16, fp32 elsewhere)."""

    multiple = 16

    def __init__(self, sam: nn.Module, cache: Path | None = None,
                 threads: int | None = None) -> None:
        try:
            import openvino
        except ImportError:
            raise ConfigError(f"--runtime openvino needs OpenVINO: {OPENVINO_EXTRA}") from None
        self.ov = openvino
        self.sam = sam
        self.folder = (cache or cache_root() / "openvino") / weights_digest(sam.image_encoder)
        self.threads = threads or torch.get_num_threads()
        self.compiled: dict[bool, Any] = {}

    @property
    def path(self) -> Path:
        return self.folder / "encoder.xml"

    def convert(self) -> Path:
        """Convert the encoder (dynamic height and width) into the cache, atomically: the
        weights file first, the graph file, whose presence means both are whole, last."""
        self.folder.mkdir(parents=True, exist_ok=True)
        encoder = self.sam.image_encoder.eval()
        tmp = Path(tempfile.mkdtemp(prefix=".convert_", dir=self.folder))
        try:
            with torch.no_grad():
                model = self.ov.convert_model(encoder, example_input=torch.zeros(1, 3, 256, 256),
                                              input=[1, 3, -1, -1])
            self.ov.save_model(model, tmp / "encoder.xml", compress_to_fp16=False)
            os.replace(tmp / "encoder.bin", self.folder / "encoder.bin")
            os.replace(tmp / "encoder.xml", self.path)
        except Exception as exc:
            raise ConfigError(f"converting the image encoder to OpenVINO failed ({exc}); use "
                              "--runtime torch") from exc
        finally:
            for f in tmp.iterdir():
                f.unlink()
            tmp.rmdir()
        return self.path

    def model(self, bf16: bool) -> Any:
        """The compiled encoder at the asked precision (converted first if not cached)."""
        if bf16 not in self.compiled:
            if not self.path.is_file():
                self.convert()
            core = self.ov.Core()
            config = {"INFERENCE_NUM_THREADS": self.threads,
                      "INFERENCE_PRECISION_HINT": "bf16" if bf16 else "f32"}
            self.compiled[bf16] = core.compile_model(core.read_model(self.path), "CPU", config)
        return self.compiled[bf16]

    def __call__(self, pixels: torch.Tensor, bf16: bool) -> torch.Tensor:
        out = self.model(bf16)(pixels.detach().float().cpu().contiguous().numpy())[0]
        return torch.from_numpy(out).to(pixels.device)


def _import_onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError:
        raise ConfigError(f"--runtime onnx needs ONNX Runtime: {ONNX_EXTRA}") from None
    return onnxruntime


def make_encoder(runtime: str, sam: nn.Module, device: torch.device) -> Encoder:
    """The encoder for ``runtime`` (one of :data:`RUNTIMES`); ONNX Runtime on CPU only."""
    if runtime not in RUNTIMES:
        raise ConfigError(f"runtime must be one of {', '.join(RUNTIMES)}; got {runtime!r}")
    if runtime == "torch":
        return TorchEncoder(sam)
    if device.type != "cpu":
        raise ConfigError(f"--runtime {runtime} runs on the CPU; got device {device}: use "
                          "--runtime torch there")
    return OpenVinoEncoder(sam) if runtime == "openvino" else OnnxEncoder(sam)
