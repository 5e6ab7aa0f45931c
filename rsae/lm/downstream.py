r"""Downstream evaluation of an SAE inside a language model: CE splicing and sparse probing.

**Splicing.** With h the residual stream after block L (:mod:`rsae.lm.hooks` convention, ``hidden_states[L + 1]``),
the LM is run three times on held-out contexts: clean; with h replaced by the SAE reconstruction
ĥ = decode(encode(h)); and with h replaced by 0 (zero ablation). With CE the mean next-token cross entropy
(nats) over the counted predictions,

.. math::
    \Delta\mathrm{CE} = \mathrm{CE}_\text{spliced} - \mathrm{CE}_\text{clean},\qquad
    \text{loss recovered} = \frac{\mathrm{CE}_\text{zero} - \mathrm{CE}_\text{spliced}}
                                 {\mathrm{CE}_\text{zero} - \mathrm{CE}_\text{clean}}

(SAELens / Gao et al. 2024 definitions; loss recovered is 1 for a perfect reconstruction and 0 for one no
better than ablating the layer). The first ``drop_first`` positions of each context (attention sinks, never
harvested, so never seen by the SAE) are left un-spliced and un-ablated, and only predictions made *from*
positions ≥ ``drop_first`` are counted (the token at position p + 1 predicted from position p, for
``drop_first`` ≤ p ≤ C − 2). Positions before ``drop_first`` are identical in the three runs (causal
attention), so excluding them changes nothing but the average.

**Sparse probing** (Gurnee et al. 2023; Kantamneni et al. 2025 for the SAE variant). A binary label per token,
computed from the text itself (:data:`PROBE_TASKS`); features are selected on the training split by the
absolute difference of class means, |E[f | y = 1] − E[f | y = 0]|, and an L2-regularised logistic regression
(scikit-learn ``LogisticRegression``, C = 1, on standardised features) is fitted on the top-k SAE latents, on
the top-k raw residual dimensions (same selection rule), and on all raw dimensions. Both splits are
class-balanced by random subsampling of the majority class, so chance accuracy is 0.5. Accuracy is measured on
held-out documents (:func:`rsae.lm.corpus.split_of`).

Example
-------
>>> from rsae.lm.downstream import splice_metrics
>>> res = splice_metrics(lm, sae, heldout_contexts, layer=15)       # doctest: +SKIP
>>> res.delta_ce, res.loss_recovered                                 # doctest: +SKIP
"""

from __future__ import annotations

import importlib.util
import keyword
import sys
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from typing import Any, NamedTuple, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm.auto import tqdm

from rsae.errors import ConfigError, DataError, ModelLoadError
from rsae.lm.corpus import DEFAULT_DROP_FIRST, ContextSet
from rsae.lm.hooks import ResidualPrefix, edit_residual, residual_prefix, residual_stream, start_after_block
from rsae.lm.loading import LanguageModel

__all__ = [
    "SAELike",
    "SpliceResult",
    "ProbeData",
    "ProbeResult",
    "PROBE_TASKS",
    "reconstruct",
    "next_token_losses",
    "splice_metrics",
    "token_labels",
    "probe_dataset",
    "sparse_probe",
]


class SAELike(Protocol):
    """Anything with ``encode(x [n, d]) -> z [n, d_sae]`` and ``decode(z) -> x̂ [n, d]``."""

    def encode(self, x: Tensor) -> Tensor: ...

    def decode(self, z: Tensor) -> Tensor: ...


class SpliceResult(NamedTuple):
    """CE (nats per predicted token) with the clean, SAE-spliced and zero-ablated residual stream."""

    ce_clean: float
    """Mean next-token CE of the unmodified model."""
    ce_spliced: float
    """Mean CE with the residual stream after the block replaced by the SAE reconstruction."""
    ce_zero: float
    """Mean CE with the residual stream after the block set to zero."""
    delta_ce: float
    """CE_spliced − CE_clean."""
    loss_recovered: float
    """(CE_zero − CE_spliced) / (CE_zero − CE_clean); NaN if CE_zero = CE_clean."""
    n_predictions: int
    """Number of next-token predictions averaged over."""


def _sae_device_dtype(sae: Any) -> tuple[torch.device | None, torch.dtype | None]:
    params = getattr(sae, "parameters", None)
    if params is None:
        return None, None
    first = next(iter(params()), None)
    return (first.device, first.dtype) if first is not None else (None, None)


def _encode(sae: SAELike, x: Tensor) -> Tensor:
    device, dtype = _sae_device_dtype(sae)
    with torch.inference_mode():
        return sae.encode(x.to(device=device or x.device, dtype=dtype or x.dtype))


def reconstruct(sae: SAELike, h: Tensor) -> Tensor:
    """``decode(encode(h))`` over the last dimension of ``h`` [..., d], on the SAE's device and dtype.

    Returns float32 on ``h``'s device and with ``h``'s shape.
    """
    flat = h.reshape(-1, h.shape[-1])
    with torch.inference_mode():
        x_hat = sae.decode(_encode(sae, flat))
    if x_hat.shape != flat.shape:
        raise ConfigError(
            f"the SAE maps [n, {flat.shape[-1]}] to {tuple(x_hat.shape)}; its d_in must equal the LM width "
            f"{flat.shape[-1]} (use an SAE trained at this model's residual stream)"
        )
    return x_hat.to(device=h.device, dtype=torch.float32).reshape(h.shape)


def next_token_losses(
    lm: LanguageModel,
    input_ids: Tensor,
    *,
    drop_first: int = DEFAULT_DROP_FIRST,
    layer: int | None = None,
    edit: Callable[[Tensor], Tensor] | None = None,
    prefix: ResidualPrefix | None = None,
) -> Tensor:
    """Per-prediction CE (nats) [batch, C − 1 − drop_first] of predictions made from positions ≥ drop_first.

    With ``layer`` and ``edit``, the residual stream after block ``layer`` at positions ≥ ``drop_first`` is
    replaced by ``edit`` of it (the leading positions are left untouched). With ``prefix``
    (:func:`rsae.lm.hooks.residual_prefix` of these ``input_ids``) the pass starts after block ``prefix.layer``
    from the kept stream, with the same result bit for bit; an ``edit`` must then be at that block.
    """
    input_ids = input_ids.to(lm.device)
    context_length = input_ids.shape[1]
    if not 0 <= drop_first <= context_length - 2:
        raise ConfigError(f"drop_first must lie in [0, {context_length - 2}] for {context_length}-token contexts")
    if edit is not None and layer is None:
        raise ConfigError("an edit needs the layer whose output it replaces")
    if prefix is not None and edit is not None and prefix.layer != layer:
        raise ConfigError(f"the prefix ends at block {prefix.layer} but the edit is at block {layer}")

    def run() -> Tensor:
        with torch.inference_mode(), start_after_block(lm, prefix) if prefix is not None else nullcontext():
            logits = lm.model(input_ids=input_ids, use_cache=False).logits[:, drop_first:-1].float()
        targets = input_ids[:, drop_first + 1 :]
        return F.cross_entropy(logits.transpose(1, 2), targets, reduction="none")

    if edit is None:
        return run()

    def edit_tail(h: Tensor) -> Tensor:
        out = h.clone()
        out[:, drop_first:] = edit(h[:, drop_first:])
        return out

    with edit_residual(lm, layer, edit_tail):
        return run()


def splice_metrics(
    lm: LanguageModel,
    sae: SAELike,
    contexts: ContextSet | Tensor,
    layer: int,
    *,
    drop_first: int = DEFAULT_DROP_FIRST,
    batch_size: int = 8,
    max_contexts: int | None = None,
    progress: bool = False,
) -> SpliceResult:
    """CE with the clean, SAE-spliced and zero-ablated residual stream after block ``layer`` (see module doc).

    Parameters
    ----------
    lm : LanguageModel
        The model the SAE was trained on.
    sae : SAELike
        Any object with ``encode`` / ``decode`` (:class:`rsae.core.sae.SAE`, a SAELens SAE, ...), d_in = d_model.
    contexts : ContextSet or int64 Tensor [n, C]
        Held-out contexts (``build_contexts(..., split="heldout")``).
    layer : int
        Block whose output is replaced (the layer the SAE was trained on).
    drop_first : int
        Leading positions per context left untouched and not counted.
    batch_size : int
        Contexts per forward pass (bounds memory: logits are batch × C × vocab float32).
    max_contexts : int, optional
        Use only the first ``max_contexts`` contexts.
    progress : bool
        Show a tqdm bar on stderr.
    """
    ids = contexts.input_ids if isinstance(contexts, ContextSet) else contexts
    if max_contexts is not None:
        ids = ids[:max_contexts]
    if ids.ndim != 2 or len(ids) == 0:
        raise DataError(f"need a non-empty int64 [n_contexts, context_length] tensor, got shape {tuple(ids.shape)}")
    if batch_size < 1:
        raise ConfigError(f"batch_size must be positive, got {batch_size}")
    sums = np.zeros(3)
    count = 0
    for start in tqdm(range(0, len(ids), batch_size), desc="splice CE", disable=not progress, file=sys.stderr):
        batch = ids[start : start + batch_size]
        prefix = residual_prefix(lm, batch, layer)  # blocks 0..layer once; the three passes run only the rest
        losses = [
            next_token_losses(lm, batch, drop_first=drop_first, prefix=prefix),
            next_token_losses(lm, batch, drop_first=drop_first, layer=layer, edit=lambda h: reconstruct(sae, h),
                              prefix=prefix),
            next_token_losses(lm, batch, drop_first=drop_first, layer=layer, edit=torch.zeros_like, prefix=prefix),
        ]
        sums += [float(loss.double().sum()) for loss in losses]
        count += losses[0].numel()
    ce_clean, ce_spliced, ce_zero = (sums / count).tolist()
    denominator = ce_zero - ce_clean
    recovered = (ce_zero - ce_spliced) / denominator if denominator != 0 else float("nan")
    return SpliceResult(ce_clean, ce_spliced, ce_zero, ce_spliced - ce_clean, recovered, count)


def _inside_parentheses(texts: Sequence[str]) -> list[bool]:
    depth, inside = 0, []
    for text in texts:
        inside.append(depth > 0)
        for char in text:
            if char == "(":
                depth += 1
            elif char == ")":
                depth = max(depth - 1, 0)
    return inside


PROBE_TASKS: dict[str, str] = {
    "digit": "the token's text contains a decimal digit 0-9",
    "uppercase": "the token's text, leading whitespace removed, starts with an uppercase letter",
    "keyword": "the token's text, whitespace removed, is a Python keyword (keyword.kwlist)",
    "in_parentheses": "more '(' than ')' precede the token within its context (context, not token identity)",
}
"""Binary token-level probing tasks, labels computed from the text itself."""

_KEYWORDS = frozenset(keyword.kwlist)
_TOKEN_RULES: dict[str, Callable[[str], bool]] = {
    "digit": lambda t: any("0" <= c <= "9" for c in t),
    "uppercase": lambda t: t.lstrip()[:1].isupper(),
    "keyword": lambda t: t.strip() in _KEYWORDS,
}


def token_labels(tokenizer: Any, input_ids: Tensor, task: str) -> np.ndarray:
    """Boolean labels [n, C] of ``task`` (:data:`PROBE_TASKS`) for every token of the contexts ``input_ids``.

    Token text is ``tokenizer.decode([id])`` (a lone piece of a multi-byte character decodes to U+FFFD).
    """
    if task not in PROBE_TASKS:
        raise ConfigError(f"unknown probing task {task!r}; choose one of {sorted(PROBE_TASKS)}")
    ids = input_ids.cpu().numpy()
    unique = np.unique(ids)
    text_of = dict(zip(unique.tolist(), tokenizer.batch_decode([[int(i)] for i in unique]), strict=True))
    if task == "in_parentheses":
        return np.array([_inside_parentheses([text_of[i] for i in row]) for row in ids.tolist()], dtype=bool)
    rule = _TOKEN_RULES[task]
    lookup = {i: rule(text) for i, text in text_of.items()}
    return np.vectorize(lookup.__getitem__, otypes=[bool])(ids)


class ProbeData(NamedTuple):
    """Residual-stream activations of tokens and their binary labels."""

    acts: Tensor
    """float32 [n_tokens, d_model] (CPU)."""
    labels: np.ndarray
    """bool [n_tokens]."""


def probe_dataset(
    lm: LanguageModel,
    contexts: ContextSet,
    layer: int,
    task: str,
    *,
    drop_first: int = DEFAULT_DROP_FIRST,
    batch_size: int = 8,
    max_contexts: int | None = None,
) -> ProbeData:
    """Activations after block ``layer`` and ``task`` labels at all positions ≥ ``drop_first`` of contexts."""
    ids = contexts.input_ids if max_contexts is None else contexts.input_ids[:max_contexts]
    if not 0 <= drop_first < ids.shape[1]:
        raise ConfigError(f"drop_first must lie in [0, {ids.shape[1] - 1}], got {drop_first}")
    labels = token_labels(lm.tokenizer, ids, task)[:, drop_first:].reshape(-1)
    acts = [
        residual_stream(lm, ids[s : s + batch_size], layer)[:, drop_first:].reshape(-1, lm.d_model).float().cpu()
        for s in range(0, len(ids), batch_size)
    ]
    return ProbeData(torch.cat(acts), labels)


class ProbeResult(NamedTuple):
    """Held-out accuracy of logistic-regression probes (class-balanced: chance = 0.5)."""

    sae_accuracy: dict[int, float]
    """k → accuracy on the top-k SAE latents (by class-mean difference)."""
    raw_accuracy: dict[int, float]
    """k → accuracy on the top-k raw residual dimensions (same selection rule)."""
    raw_all_accuracy: float
    """Accuracy on all raw residual dimensions."""
    sae_latents: dict[int, list[int]]
    """k → the selected SAE latent indices."""
    raw_dims: dict[int, list[int]]
    """k → the selected raw dimensions."""
    n_train: int
    """Training tokens after balancing."""
    n_test: int
    """Held-out tokens after balancing."""


def _balance(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    pos, neg = np.flatnonzero(labels), np.flatnonzero(~labels)
    n = min(len(pos), len(neg))
    if n < 2:
        raise DataError(
            f"probing needs at least 2 tokens of each class, got {len(pos)} positive, {len(neg)} negative: "
            "use more contexts or another task"
        )
    return np.sort(np.concatenate([rng.choice(pos, n, replace=False), rng.choice(neg, n, replace=False)]))


def _batched_codes(sae: SAELike, acts: Tensor, batch: int = 4096) -> Callable[[], Any]:
    def batches() -> Any:
        for s in range(0, len(acts), batch):
            yield _encode(sae, acts[s : s + batch]).float().cpu()

    return batches


def _mean_difference(batches: Callable[[], Any], labels: np.ndarray) -> Tensor:
    y = torch.from_numpy(labels)
    sums: list[Tensor] = []
    offset = 0
    for z in batches():
        part = y[offset : offset + len(z)]
        sums.append(torch.stack([z[part].sum(0), z[~part].sum(0)]))
        offset += len(z)
    total = torch.stack(sums).sum(0).double()
    n_pos = float(labels.sum())
    return (total[0] / n_pos - total[1] / (len(labels) - n_pos)).abs()


def _columns(batches: Callable[[], Any], columns: Tensor) -> np.ndarray:
    return torch.cat([z[:, columns] for z in batches()]).numpy()


def _fit_accuracy(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    probe = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))
    probe.fit(x_train, y_train)
    return float(probe.score(x_test, y_test))


def sparse_probe(
    sae: SAELike,
    train: ProbeData,
    test: ProbeData,
    *,
    ks: Sequence[int] = (1, 2, 5),
    seed: int = 0,
) -> ProbeResult:
    """k-sparse logistic-regression probes on SAE latents versus raw activations (see module doc).

    Parameters
    ----------
    sae : SAELike
        Encodes the activations (``encode`` only is used).
    train, test : ProbeData
        Activations and labels of training and held-out documents (:func:`probe_dataset`).
    ks : sequence of int
        Numbers of selected features.
    seed : int
        Seed of the class-balancing subsample.

    Raises
    ------
    ModelLoadError
        scikit-learn is missing.
    DataError
        A split has fewer than 2 tokens of a class.
    """
    if importlib.util.find_spec("sklearn") is None:
        raise ModelLoadError("sparse probing needs scikit-learn; install it with: pip install 'scikit-learn>=1.4'")
    if not ks or min(ks) < 1:
        raise ConfigError(f"ks must be positive integers, got {list(ks)}")
    rng = np.random.default_rng(seed)
    i_train, i_test = _balance(train.labels, rng), _balance(test.labels, rng)
    x_train, y_train = train.acts[i_train], train.labels[i_train]
    x_test, y_test = test.acts[i_test], test.labels[i_test]

    codes_train, codes_test = _batched_codes(sae, x_train), _batched_codes(sae, x_test)
    sae_score = _mean_difference(codes_train, y_train)
    raw_score = _mean_difference(lambda: iter([x_train]), y_train)
    sae_acc, raw_acc, sae_latents, raw_dims = {}, {}, {}, {}
    for k in ks:
        if k > min(len(sae_score), len(raw_score)):
            raise ConfigError(
                f"k = {k} exceeds the number of features ({len(sae_score)} latents, {len(raw_score)} dims)"
            )
        top_sae = torch.topk(sae_score, k).indices
        top_raw = torch.topk(raw_score, k).indices
        sae_latents[k], raw_dims[k] = top_sae.tolist(), top_raw.tolist()
        sae_acc[k] = _fit_accuracy(_columns(codes_train, top_sae), y_train, _columns(codes_test, top_sae), y_test)
        raw_acc[k] = _fit_accuracy(x_train[:, top_raw].numpy(), y_train, x_test[:, top_raw].numpy(), y_test)
    raw_all = _fit_accuracy(x_train.numpy(), y_train, x_test.numpy(), y_test)
    return ProbeResult(sae_acc, raw_acc, raw_all, sae_latents, raw_dims, len(i_train), len(i_test))
