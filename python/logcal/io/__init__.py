"""Inputs from model APIs: token log-probabilities read into flat arrays.

:func:`read_logprobs` reads OpenAI chat and legacy completions, vLLM (with its
``prompt_logprobs`` and ``return_tokens_as_token_ids``), Gemini ``logprobsResult`` and
Hugging Face ``generate(..., output_logits=True)`` outputs, from JSONL files of any size
(streamed), JSON files, file objects or parsed responses, into a :class:`LogprobBatch`.
:func:`load_demo` and :func:`demo_path` give the real-model demo data shipped with logcal.

>>> import numpy as np, logcal
>>> batch = logcal.io.read_logprobs(logcal.io.demo_path())
>>> confidence = np.exp(batch.top_logprobs[:, 0])  # the model's top choice
>>> correct = batch.tokens == batch.top_tokens[:, 0]  # was the actual next token
>>> print(f"confidence {confidence.mean():.3f}, accuracy {correct.mean():.3f}")
confidence 0.341, accuracy 0.367
"""

from __future__ import annotations

from ._batch import LogprobBatch
from ._demo import DemoData, demo_path, load_demo
from ._formats import FORMATS
from ._read import read_logprobs

__all__ = ["FORMATS", "DemoData", "LogprobBatch", "demo_path", "load_demo", "read_logprobs"]
