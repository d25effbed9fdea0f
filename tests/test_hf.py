"""logcal.hf.score on tiny randomly initialised models, against the models' own logits."""

from __future__ import annotations

import numpy as np
import pytest

import logcal
from _helpers import assert_close, assert_equal

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
import logcal.hf  # noqa: E402

VOCAB = 300


def tiny(kind):
    torch.manual_seed(0)
    if kind == "llama":
        config = transformers.LlamaConfig(
            vocab_size=VOCAB,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
        )
        return transformers.LlamaForCausalLM(config).eval()
    config = transformers.GPT2Config(
        vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=4, bos_token_id=0, eos_token_id=0
    )
    return transformers.GPT2LMHeadModel(config).eval()


@pytest.mark.parametrize("kind", ["llama", "gpt2"])
def test_score_equals_the_models_logits_path(kind):
    model = tiny(kind)
    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(0, VOCAB, (5, 12), generator=gen)
    mask = torch.ones_like(ids)
    mask[1, 9:] = 0  # right padding
    mask[3, 10:] = 0
    got = logcal.hf.score(model, ids, mask, batch_size=2, top_k=4, candidate_ids=[7, 8, 9])
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1]
    counted = mask[:, :-1].bool() & mask[:, 1:].bool()
    targets = torch.where(counted, ids[:, 1:], -100)
    want = logcal.token_stats(logits, targets, top_k=4, candidate_ids=[7, 8, 9])
    assert_equal(got.mask, counted.numpy())
    for name in want:
        if name in ("argmax", "target_rank", "topk_ids"):
            assert_equal(got.tokens[name], want[name], name)
        else:
            assert_close(got.tokens[name], want[name], what=name, rtol=1e-5, atol=1e-5)
    lp = want.target_logprob.double().numpy()
    sums = np.where(counted.numpy(), lp, 0.0).sum(axis=1)
    assert_close(got.sequences.sum, sums, rtol=1e-5, atol=1e-5)
    assert_equal(got.sequences.count, counted.sum(1).numpy())


def test_score_refuses_bad_inputs_and_transformed_logits():
    model = tiny("gpt2")
    with pytest.raises(ValueError, match=r"^input_ids must have shape \[N, L\] with L >= 2"):
        logcal.hf.score(model, torch.tensor([[1]]))
    with pytest.raises(ValueError, match=r"^attention_mask must have the shape of input_ids"):
        logcal.hf.score(model, torch.tensor([[1, 2]]), torch.ones(1, 3))
    with pytest.raises(ValueError, match=r"^batch_size must be an int >= 1, got 0$"):
        logcal.hf.score(model, torch.tensor([[1, 2]]), batch_size=0)
    model.config.final_logit_softcapping = 30.0
    with pytest.raises(ValueError, match=r"^model: its config sets final_logit_softcapping"):
        logcal.hf.score(model, torch.tensor([[1, 2]]))
