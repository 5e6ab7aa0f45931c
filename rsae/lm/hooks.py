r"""Residual-stream hooks of a language model (:class:`rsae.lm.loading.LanguageModel`): read the output of one or
several blocks from one forward pass (optionally under ``torch.autocast``), or edit one block's output.

Residual stream convention (SAELens ``blocks.L.hook_resid_post``, sparsify ``layers.L``): **layer L is the
output of decoder block L (0-based)**, i.e. the residual stream after L + 1 blocks, which is
``hidden_states[L + 1]`` of a ``transformers`` forward pass with ``output_hidden_states=True``
(``hidden_states[0]`` is the token embedding). Valid layers are 0 … n_layers − 2: the output of the last
block is only exposed after the final RMSNorm.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
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
    "residual_streams",
    "autocast_context",
    "AUTOCAST_DTYPES",
    "edit_residual",
    "ResidualPrefix",
    "residual_prefix",
    "start_after_block",
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


AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp16": torch.float16, "float16": torch.float16}
"""Names accepted by ``autocast`` (:func:`autocast_context`)."""


def autocast_context(device: torch.device | str, autocast: str | None) -> AbstractContextManager:
    """``torch.autocast`` to ``autocast`` (``"bf16"``, ``"fp16"``) on ``device``; a no-op context for ``None``.

    Raises ConfigError for an unknown name or a device type / dtype pair torch cannot autocast.
    """
    if autocast is None or autocast == "none":
        return nullcontext()
    if autocast not in AUTOCAST_DTYPES:
        raise ConfigError(f"autocast must be one of {sorted(AUTOCAST_DTYPES)} or None, got {autocast!r}")
    device_type = torch.device(device).type
    try:
        return torch.autocast(device_type=device_type, dtype=AUTOCAST_DTYPES[autocast])
    except RuntimeError as exc:  # e.g. a device type without autocast support
        raise ConfigError(f"torch cannot autocast to {autocast} on {device_type}: {exc}") from exc


def residual_streams(
    lm: LanguageModel, input_ids: Tensor, layers: Sequence[int], *, autocast: str | None = None
) -> dict[int, Tensor]:
    """Residual streams after each block of ``layers`` from one forward pass: ``{L: [batch, ctx, d_model]}``.

    The pass stops right after the deepest of ``layers`` (a hook raises), so later blocks and the LM head are
    never computed. The tensors are on the model's device, in the dtype the blocks produce: float32, also under
    ``autocast`` for Llama-style models, whose residual additions promote to float32 (callers that need float32
    cast anyway). ``autocast`` (``"bf16"``, ``"fp16"`` or ``None``) runs the pass under :func:`autocast_context`.
    """
    return {layer: _block_output(output) for layer, output in _block_outputs(lm, input_ids, layers, autocast).items()}


def _block_outputs(lm: LanguageModel, input_ids: Tensor, layers: Sequence[int], autocast: str | None) -> dict[int, Any]:
    """The whole outputs (as each block returns them) of the blocks ``layers`` from one inference-mode forward
    pass that stops right after the deepest of them (a hook raises)."""
    wanted = sorted(set(int(layer) for layer in layers))
    if not wanted:
        raise ConfigError("layers must name at least one block")
    blocks = {layer: check_layer(lm, layer) for layer in wanted}
    deepest = wanted[-1]
    captured: dict[int, Any] = {}

    def make_hook(layer: int) -> Callable[..., None]:
        def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
            captured[layer] = output
            if layer == deepest:
                raise _StopForward

        return hook

    handles = [blocks[layer].register_forward_hook(make_hook(layer)) for layer in wanted]
    try:
        with torch.inference_mode(), autocast_context(lm.device, autocast):
            lm.model(input_ids=input_ids.to(lm.device), use_cache=False)
    except _StopForward:
        pass
    finally:
        for handle in handles:
            handle.remove()
    if deepest not in captured:
        raise ModelLoadError(f"block {deepest} did not run in the forward pass of {type(lm.model).__name__}")
    return captured


def residual_stream(lm: LanguageModel, input_ids: Tensor, layer: int, *, autocast: str | None = None) -> Tensor:
    """Residual stream after block ``layer`` (= ``hidden_states[layer + 1]``), float32 [batch, ctx, d_model].

    The forward pass stops right after that block (a hook raises), so the remaining blocks and the LM head
    are never computed. The result is on the model's device. ``autocast`` as in :func:`residual_streams`.
    """
    return residual_streams(lm, input_ids, [layer], autocast=autocast)[layer]


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


@dataclass(frozen=True)
class ResidualPrefix:
    """The residual stream after block ``layer`` for one batch of contexts, kept so that further passes over the
    same contexts can skip blocks 0 … ``layer`` (:func:`start_after_block`). Made by :func:`residual_prefix`."""

    input_ids: Tensor
    """The contexts [batch, ctx] (on the model's device)."""
    layer: int
    """The block whose output ``hidden`` is."""
    hidden: Tensor
    """Output of block ``layer`` [batch, ctx, d_model] (an inference tensor)."""
    template: Any
    """The block's whole output as the block returned it (a tensor, or a tuple whose first entry is the stream)."""


def residual_prefix(lm: LanguageModel, input_ids: Tensor, layer: int) -> ResidualPrefix:
    """Run blocks 0 … ``layer`` on ``input_ids`` once (the pass stops there) and keep their output.

    Every later pass over the same contexts inside :func:`start_after_block` then computes only the blocks after
    ``layer`` and the head, and its logits are bit for bit those of a full pass (the same operations on the same
    inputs): the downstream stage of ``rsae reproduce`` splices dozens of SAEs into the same contexts this way.
    """
    input_ids = input_ids.to(lm.device)
    output = _block_outputs(lm, input_ids, [layer], None)[int(layer)]
    return ResidualPrefix(input_ids, int(layer), _block_output(output), output)


@contextmanager
def start_after_block(lm: LanguageModel, prefix: ResidualPrefix) -> Iterator[None]:
    """Inside the ``with`` block, forward passes skip blocks 0 … ``prefix.layer``: the earlier blocks pass their
    input through and block ``prefix.layer`` returns (a copy of) the kept stream, after which its forward hooks
    (e.g. :func:`edit_residual`) run as usual. Only passes over ``prefix.input_ids`` are allowed (a pre-hook on the
    model checks; anything else raises ConfigError, since it would silently be given another text's stream).
    """
    blocks = decoder_layers(lm.model)
    check_layer(lm, prefix.layer)

    def passthrough(hidden_states: Tensor, *_args: Any, **_kwargs: Any) -> Any:
        return _replace_block_output(prefix.template, hidden_states)

    def cached(*_args: Any, **_kwargs: Any) -> Any:
        return _replace_block_output(prefix.template, prefix.hidden.clone())

    def same_contexts(_module: nn.Module, args: Any, kwargs: dict[str, Any]) -> None:
        ids = kwargs.get("input_ids", args[0] if args else None)
        if ids is None or ids.shape != prefix.input_ids.shape or not torch.equal(ids.to(prefix.input_ids.device),
                                                                                   prefix.input_ids):
            raise ConfigError("start_after_block: this forward pass is not over the contexts the prefix was made "
                              "from (residual_prefix(lm, input_ids, layer) for these input_ids)")

    patched = list(blocks[: prefix.layer + 1])
    own = [block.__dict__.get("forward") for block in patched]  # an instance-level forward (e.g. accelerate's)
    for i, block in enumerate(patched):
        block.forward = cached if i == prefix.layer else passthrough
    handle = lm.model.register_forward_pre_hook(same_contexts, with_kwargs=True)
    try:
        yield
    finally:
        handle.remove()
        for block, forward in zip(patched, own):
            if forward is None:
                del block.forward
            else:
                block.forward = forward
