"""Typed exceptions for the :mod:`rsae` package.

One small hierarchy: every error raised on purpose by ``rsae`` derives from :class:`RSAEError`, so callers can
catch the whole package with one ``except`` clause, or a single failure mode with the subclass.
Messages say what was wrong and how to fix it.
"""

from __future__ import annotations

__all__ = ["RSAEError", "ConfigError", "SAEFileError", "DataError", "ModelLoadError", "TrainingError"]


class RSAEError(Exception):
    """Base class of every deliberate error raised by :mod:`rsae`."""


class ConfigError(RSAEError, ValueError):
    """An invalid configuration value or argument (unknown family, non-positive size, k > d_sae, ...)."""


class SAEFileError(RSAEError):
    """A saved SAE folder is missing, malformed or unsafe.

    Raised for missing ``cfg.json`` / ``sae_weights.safetensors``, unknown architecture names, missing or
    extra tensor keys, wrong shapes or dtypes, and non-finite tensor values.
    """


class DataError(RSAEError):
    """An activation store or in-memory data source is invalid (bad ``meta.json``, shard shape, dtype)."""


class ModelLoadError(RSAEError):
    """A language model (or one of its pieces: weights, tokenizer, config) could not be found or loaded."""


class TrainingError(RSAEError, RuntimeError):
    """Training diverged: the loss or a weight became NaN or inf.

    The trainer stops at the first such step (nothing non-finite is ever checkpointed or saved); the message
    names the step, what became non-finite and the last good checkpoint, if any.
    """
