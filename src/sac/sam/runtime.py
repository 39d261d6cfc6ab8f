"""Where the image encoder runs: OpenVINO where it is installed (the ``openvino`` extra), else
torch.

The encoder is most of SAC's time on a CPU. OpenVINO runs the same network about twice as
fast as torch eager, in bf16 where the CPU has it natively and in fp32 elsewhere
(``benchmarks/speed.py``; ONNX Runtime, also measured, was slower than OpenVINO and needs one
exported file per input size, so it is not offered). The network, with its LoRA, is
converted once from the model's own weights (nothing is shipped twice) into
``<cache>/openvino/<digest>/`` for inputs of any size; the digest is of the encoder's
weights, so a retrained model never meets a stale file. Files are written under temporary
names and then renamed; later runs load them.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import tempfile
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from sac.core.device import autocast_context
from sac.core.errors import ConfigError

#: ``--runtime`` choices: ``auto`` = openvino on a CPU where it is installed, else torch
RUNTIMES = ("auto", "torch", "openvino")
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
        with autocast_context(pixels.device, bf16):
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
        """The compiled encoder at the asked precision (converted first if not cached).

        OpenVINO keeps what it compiled in ``compiled/`` beside the converted files (its own
        cache, keyed by the network, the CPU and the settings), which takes about 0.7 s off
        each later process's start; where that cache cannot be used, it compiles afresh."""
        if bf16 not in self.compiled:
            if not self.path.is_file():
                self.convert()
            core = self.ov.Core()
            config = {"INFERENCE_NUM_THREADS": self.threads,
                      "INFERENCE_PRECISION_HINT": "bf16" if bf16 else "f32"}
            try:
                compiled = core.compile_model(str(self.path), "CPU", {
                    **config, "CACHE_DIR": str(self.folder / "compiled")})
            except RuntimeError:  # an unwritable or damaged cache: compile without it
                compiled = core.compile_model(core.read_model(self.path), "CPU", config)
            self.compiled[bf16] = compiled
        return self.compiled[bf16]

    def __call__(self, pixels: torch.Tensor, bf16: bool) -> torch.Tensor:
        out = self.model(bf16)(pixels.detach().float().cpu().contiguous().numpy())[0]
        return torch.from_numpy(out).to(pixels.device)


def has_openvino() -> bool:
    """Whether OpenVINO can be imported here."""
    return importlib.util.find_spec("openvino") is not None


def resolve_runtime(runtime: str, device: torch.device) -> str:
    """``torch`` or ``openvino`` for ``runtime`` (one of :data:`RUNTIMES`) on ``device``;
    ``auto`` follows ``$SAC_RUNTIME`` (torch or openvino) where it is set."""
    if runtime not in RUNTIMES:
        raise ConfigError(f"runtime must be one of {', '.join(RUNTIMES)}; got {runtime!r}")
    if runtime == "auto" and os.environ.get("SAC_RUNTIME"):
        runtime = os.environ["SAC_RUNTIME"]
        if runtime not in RUNTIMES[1:]:
            raise ConfigError(f"$SAC_RUNTIME must be torch or openvino; got {runtime!r}")
    if runtime == "auto":
        return "openvino" if device.type == "cpu" and has_openvino() else "torch"
    if runtime == "openvino" and device.type != "cpu":
        raise ConfigError(f"--runtime openvino runs on the CPU; got device {device}: use "
                          "--runtime torch (or auto) there")
    return runtime


def make_encoder(runtime: str, sam: nn.Module, device: torch.device) -> Encoder:
    """The encoder for ``runtime`` (one of :data:`RUNTIMES`, resolved by
    :func:`resolve_runtime`)."""
    if resolve_runtime(runtime, device) == "torch":
        return TorchEncoder(sam)
    return OpenVinoEncoder(sam)
