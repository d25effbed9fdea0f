"""Score a Hugging Face ``transformers`` causal language model without its ``[batch, length, V]``
logits: the model's final hidden states and output embedding go to
:func:`logcal.token_stats_from_hidden`. Needs ``torch`` and ``transformers``
(``pip install logcal[hf]``)."""

from __future__ import annotations

from typing import Any, ClassVar

try:
    import torch
    import transformers  # noqa: F401 - what the models come from: the hf extra
except ImportError as exc:
    raise ImportError("logcal.hf needs torch and transformers: pip install 'logcal[hf]'") from exc

from ._hidden import token_stats_from_hidden
from ._record import Record
from ._sequence import sequence_stats
from ._token import TokenStats

__all__ = ["Score", "score"]

# Config entries of models whose logits are not ``hidden @ lm_head.weight.T (+ bias)``.
_LOGIT_TRANSFORMS = ("final_logit_softcapping", "logit_scale", "output_multiplier_scale")


class Score(Record):
    """What :func:`score` returns: an immutable record.

    Fields: ``tokens`` (:class:`logcal.TokenStats` of shape ``[N, L - 1]``: position ``j``
    predicts token ``j + 1``), ``sequences`` (:class:`logcal.SequenceStats` ``[N]`` of the
    counted targets' log-probabilities) and ``mask`` (bool ``[N, L - 1]``: the counted targets).
    """

    __slots__ = ()
    tokens: Any
    sequences: Any
    mask: Any
    _FIELDS = ("tokens", "sequences", "mask")
    _OPTIONAL: ClassVar[dict] = {}


def _refuse_logit_transforms(model: Any) -> None:
    config = getattr(model, "config", None)
    for name in _LOGIT_TRANSFORMS:
        value = getattr(config, name, None)
        if value not in (None, 1, 1.0):
            raise ValueError(
                f"model: its config sets {name} = {value!r}, so its logits are not "
                f"hidden @ lm_head.weight.T; score computes only that"
            )


def score(
    model: Any,
    input_ids: Any,
    attention_mask: Any = None,
    *,
    batch_size: int = 8,
    top_k: int = 0,
    candidate_ids: Any = None,
    progress: bool = False,
) -> Score:
    """Per-token statistics of a causal LM on its own inputs, and per-sequence log-likelihoods.

    The model's base (``model.base_model``) runs on ``batch_size`` sequences at a time, under
    ``torch.no_grad()``; its final hidden states and ``model.get_output_embeddings()`` go to
    :func:`logcal.token_stats_from_hidden` with the next tokens as targets. The logits
    ``[batch, length, V]`` are never held.

    Parameters
    ----------
    model : transformers causal LM
        E.g. ``AutoModelForCausalLM.from_pretrained(...)``, in eval mode. Models whose logits
        are transformed after the output embedding (soft-capping, a logit scale) are refused.
    input_ids : integer tensor ``[N, L]``
        Token ids, ``L >= 2``; moved to the model's device batch by batch.
    attention_mask : tensor ``[N, L]``, optional
        1 for a real token, 0 for padding. A target counts when it and the position that
        predicts it are both real. Default: every token is real.
    batch_size : int
        Sequences per forward pass.
    top_k, candidate_ids
        As for :func:`logcal.token_stats`, at every position.
    progress : bool
        Show a progress bar (tqdm) over the batches.

    Returns
    -------
    Score
        ``tokens`` (TokenStats ``[N, L - 1]``; ``target_logprob`` NaN and ``target_rank`` -1
        where not counted), ``sequences`` (SequenceStats ``[N]``) and ``mask``. torch tensors
        on the model's device.

    Examples
    --------
    >>> import torch, transformers, logcal.hf
    >>> config = transformers.GPT2Config(
    ...     vocab_size=64, n_embd=16, n_layer=1, n_head=2, bos_token_id=0, eos_token_id=0
    ... )
    >>> model = transformers.GPT2LMHeadModel(config).eval()
    >>> result = logcal.hf.score(model, torch.tensor([[1, 2, 3, 4]]))
    >>> result.tokens.target_logprob.shape, int(result.sequences.count[0])
    (torch.Size([1, 3]), 3)
    """
    _refuse_logit_transforms(model)
    head = model.get_output_embeddings()
    if head is None or getattr(head, "weight", None) is None:
        raise ValueError("model has no output embedding (get_output_embeddings() is None)")
    weight, bias = head.weight.detach(), getattr(head, "bias", None)
    bias = None if bias is None else bias.detach()
    device = weight.device
    ids = torch.as_tensor(input_ids)
    if ids.ndim != 2 or ids.shape[1] < 2:
        raise ValueError(f"input_ids must have shape [N, L] with L >= 2, got {tuple(ids.shape)}")
    if ids.dtype.is_floating_point or ids.dtype == torch.bool:
        raise TypeError(f"input_ids must be an integer tensor, got {ids.dtype}")
    mask = torch.ones_like(ids) if attention_mask is None else torch.as_tensor(attention_mask)
    if tuple(mask.shape) != tuple(ids.shape):
        raise ValueError(
            f"attention_mask must have the shape of input_ids {tuple(ids.shape)}, "
            f"got {tuple(mask.shape)}"
        )
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")

    starts = range(0, ids.shape[0], batch_size)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc="logcal.hf.score", unit="batch")
    parts, counted = [], []
    for start in starts:
        batch = ids[start : start + batch_size].to(device)
        real = mask[start : start + batch_size].to(device).bool()
        with torch.no_grad():
            hidden = model.base_model(input_ids=batch, attention_mask=real.long())[0]
        both_real = real[:, :-1] & real[:, 1:]
        targets = torch.where(both_real, batch[:, 1:], -100)
        parts.append(
            token_stats_from_hidden(
                hidden[:, :-1],
                weight,
                targets,
                bias=bias,
                top_k=top_k,
                candidate_ids=candidate_ids,
            )
        )
        counted.append(both_real)
    tokens = TokenStats(**{k: torch.cat([p[k] for p in parts]) for k in parts[0]})
    counted = torch.cat(counted)
    sequences = sequence_stats(tokens.target_logprob, mask=counted)
    return Score(tokens=tokens, sequences=sequences, mask=counted)
