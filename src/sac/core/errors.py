"""Exceptions that carry a message meant for the user (what is wrong and how to fix it)."""

from __future__ import annotations


class SACError(Exception):
    """Base class: the CLI prints the message (no traceback) and exits non-zero."""

    exit_code = 1


class InputError(SACError):
    """An input file or array is unreadable or has an unsupported shape, dtype or content."""

    exit_code = 2


class WeightsError(SACError):
    """Pretrained weights are missing, corrupt, or do not match the requested architecture."""

    exit_code = 3


class ConfigError(SACError):
    """An option, backbone name or model configuration is invalid."""

    exit_code = 4


class Terminated(BaseException):
    """SIGTERM arrived (``timeout``, SLURM, ``kill``): raised like Ctrl-C's
    KeyboardInterrupt, so the work in progress is cleaned up the same way; the CLI exits
    with 143 (128 + 15)."""

    exit_code = 143
