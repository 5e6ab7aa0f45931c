r"""Residual-stream hooks of a language model (:class:`rsae.lm.loading.LanguageModel`): read or edit one block.

Residual stream convention (SAELens ``blocks.L.hook_resid_post``, sparsify ``layers.L``): **layer L is the
output of decoder block L (0-based)**, i.e. the residual stream after L + 1 blocks, which is
``hidden_states[L + 1]`` of a ``transformers`` forward pass with ``output_hidden_states=True``
(``hidden_states[0]`` is the token embedding). Valid layers are 0 … n_layers − 2: the output of the last
block is only exposed after the final RMSNorm.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from rsae.errors import ConfigError, ModelLoadError

if TYPE_CHECKING:
    from rsae.lm.loading import LanguageModel

__all__ = [
    "DEFAULT_LAYER",
    "decoder_layers",
    "check_layer",
    "residual_stream",
    "edit_residual",
]

DEFAULT_LAYER = 15
"""Middle of the 30 blocks: the output of block 15, ``hidden_states[16]``."""


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """Decoder blocks of a causal LM (Llama-style ``model.model.layers``, GPT-2-style ``transformer.h``)."""
    for owner in ("model", "transformer", "gpt_neox"):
        inner = getattr(model, owner, None)
        for attr in ("layers", "h"):
            blocks = getattr(inner, attr, None)
            if isinstance(blocks, nn.ModuleList):
                return blocks
    raise ModelLoadError(
        f"cannot find the decoder blocks of {type(model).__name__} (looked for model.layers, transformer.h, "
        "gpt_neox.layers); use a Llama/GPT-2/NeoX-style causal LM"
    )


def check_layer(lm: LanguageModel, layer: int) -> nn.Module:
    """Block ``layer`` of ``lm``; raises ConfigError unless 0 ≤ layer ≤ n_layers − 2."""
    n = lm.n_layers
    if not 0 <= layer <= n - 2:
        raise ConfigError(
            f"layer must be a block index in [0, {n - 2}] for this {n}-block model (layer L = output of "
            f"block L = hidden_states[L + 1]; the last block's output is only exposed after the final norm), "
            f"got {layer}"
        )
    return decoder_layers(lm.model)[layer]


def _block_output(output: Any) -> Tensor:
    return output[0] if isinstance(output, tuple) else output


def _replace_block_output(output: Any, hidden: Tensor) -> Any:
    return (hidden, *output[1:]) if isinstance(output, tuple) else hidden


class _StopForward(Exception):
    """Raised from a hook once the wanted block has run, to skip the rest of the forward pass."""


def residual_stream(lm: LanguageModel, input_ids: Tensor, layer: int) -> Tensor:
    """Residual stream after block ``layer`` (= ``hidden_states[layer + 1]``), float32 [batch, ctx, d_model].

    The forward pass stops right after that block (a hook raises), so the remaining blocks and the LM head
    are never computed. The result is on the model's device.
    """
    block = check_layer(lm, layer)
    captured: list[Tensor] = []

    def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
        captured.append(_block_output(output))
        raise _StopForward

    handle = block.register_forward_hook(hook)
    try:
        with torch.inference_mode():
            lm.model(input_ids=input_ids.to(lm.device), use_cache=False)
    except _StopForward:
        pass
    finally:
        handle.remove()
    return captured[0]


@contextmanager
def edit_residual(lm: LanguageModel, layer: int, edit: Callable[[Tensor], Tensor]) -> Iterator[None]:
    """Inside the ``with`` block, forward passes run on ``edit(h)`` instead of h = output of block ``layer``.

    ``edit`` receives the float32 [batch, ctx, d_model] block output and must return a tensor of that shape;
    the rest of the network then runs on the edited stream.
    """
    block = check_layer(lm, layer)

    def hook(_module: nn.Module, _inputs: Any, output: Any) -> Any:
        hidden = _block_output(output)
        edited = edit(hidden)
        if edited.shape != hidden.shape:
            raise ConfigError(f"a residual edit must keep the shape {tuple(hidden.shape)}, got {tuple(edited.shape)}")
        return _replace_block_output(output, edited.to(hidden.dtype))

    handle = block.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()
