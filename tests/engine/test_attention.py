"""Tests for engine.attention: the GQA decode attention gives transformers' SDPA results (random
tensors with a padding mask; a tiny GQA Llama's greedy and beam-4 summaries in float32 on the CPU),
the compiled decode step traces it without graph breaks, and the ``infer`` switch and its config key."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import transformers.integrations.sdpa_attention as stock

from engine.attention import GQA_ATTENTION, gqa_decode_attention, register_gqa_attention, use_attention
from engine.config import ConfigError, GenerationConfig, load_config

from support import write_run_config

SOURCES = ["#Person1#: 네.", "#Person1#: 안녕하세요, 예약하려고 전화했어요.\n#Person2#: 네, 가능합니다. 몇 분이세요?",
           "#Person1#: 좋아요.", "#Person1#: 내일 봐요.\n#Person2#: 네.", "#Person1#: 회의는 세 시에 시작합니다."]


def grouped(batch: int = 5, heads: int = 6, kv_heads: int = 2, q_len: int = 1, kv_len: int = 37, dim: int = 16):
    """Random q/k/v of a GQA layer and a left-padding mask (two rows padded), as transformers passes them."""
    gen = torch.Generator().manual_seed(0)
    q = torch.randn(batch, heads, q_len, dim, generator=gen)
    k, v = (torch.randn(batch, kv_heads, kv_len, dim, generator=gen) for _ in range(2))
    keep = torch.ones(batch, kv_len, dtype=torch.bool)
    keep[1, :10] = False
    keep[3, :30] = False
    mask = keep[:, None, None, :].expand(batch, 1, q_len, kv_len)
    module = SimpleNamespace(num_key_value_groups=heads // kv_heads, is_causal=True)
    return module, q, k, v, mask


def test_decode_attention_matches_stock_sdpa_with_a_padding_mask(monkeypatch) -> None:
    module, q, k, v, mask = grouped()
    ours, _ = gqa_decode_attention(module, q, k, v, mask, scaling=0.25)
    eager, _ = stock.sdpa_attention_forward(module, q, k, v, mask, scaling=0.25)
    assert ours.shape == (5, 1, 6, 16)
    # Uncompiled, transformers folds the heads of one query token too: the very same kernel call.
    assert torch.equal(ours, eager)
    # Compiled, it repeats the KV heads (repeat_kv); the CPU kernel then blocks the work
    # differently, so the sums agree to float32 rounding, not bit for bit.
    monkeypatch.setattr(stock, "is_torchdynamo_compiling", lambda: True)
    repeated, _ = stock.sdpa_attention_forward(module, q, k, v, mask, scaling=0.25)
    torch.testing.assert_close(ours, repeated, rtol=0, atol=1e-6)
    # An additive float mask and a per-head mask fold the same way.
    additive = torch.zeros(mask.shape).masked_fill(~mask, torch.finfo(torch.float32).min)
    assert torch.equal(gqa_decode_attention(module, q, k, v, additive, scaling=0.25)[0], ours)
    per_head = mask.expand(5, 6, 1, 37)
    assert torch.equal(gqa_decode_attention(module, q, k, v, per_head, scaling=0.25)[0], ours)


def test_prompts_and_ungrouped_layers_take_the_stock_path() -> None:
    module, q, k, v, mask = grouped(q_len=4, kv_len=4)
    causal = mask & torch.ones(4, 4, dtype=torch.bool).tril()
    assert torch.equal(gqa_decode_attention(module, q, k, v, causal)[0], stock.sdpa_attention_forward(module, q, k, v, causal)[0])
    module, q, k, v, mask = grouped(heads=2)
    assert torch.equal(gqa_decode_attention(module, q, k, v, mask)[0], stock.sdpa_attention_forward(module, q, k, v, mask)[0])


def tiny_gqa_llama(tiny_llama_dir: Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32, attn_implementation="sdpa").eval()
    assert model.config.num_key_value_heads < model.config.num_attention_heads  # grouped heads, or nothing is tested
    return model, AutoTokenizer.from_pretrained(tiny_llama_dir)


@pytest.mark.parametrize("beams", [1, 4])
def test_summaries_are_identical_to_stock_sdpa_in_float32(tiny_llama_dir: Path, monkeypatch, beams: int) -> None:
    """Greedy and beam 4 (beam search reorders the cache between steps), dynamic and static cache
    (the CUDA path: the mask covers the whole pre-allocated length), against stock SDPA both as it
    runs uncompiled and as it runs compiled (KV heads repeated)."""
    import engine.inference as inference

    model, tokenizer = tiny_gqa_llama(tiny_llama_dir)
    monkeypatch.setattr(inference, "cache_for", lambda g, device_type: g.cache_implementation)
    for cache in (None, "static"):
        gen = GenerationConfig(num_beams=beams, max_new_tokens=8, cache_implementation=cache)
        assert use_attention(model, "sdpa") == "sdpa"
        plain = inference.generate_summaries(model, tokenizer, SOURCES, "causal", gen, 64, 3)
        with monkeypatch.context() as patched:
            patched.setattr(stock, "is_torchdynamo_compiling", lambda: True)
            repeated = inference.generate_summaries(model, tokenizer, SOURCES, "causal", gen, 64, 3)
        assert use_attention(model, "gqa") == GQA_ATTENTION
        ours = inference.generate_summaries(model, tokenizer, SOURCES, "causal", gen, 64, 3)
        assert ours == plain == repeated, cache
        assert any(ours)


def explain_decode_step(tiny_llama_dir: Path, choice: str):
    """``torch._dynamo.explain`` of the one-token forward that ``generate`` compiles with a static cache."""
    from transformers import StaticCache

    model, _ = tiny_gqa_llama(tiny_llama_dir)
    use_attention(model, choice)
    cache = StaticCache(config=model.config, max_cache_len=16)
    ids = torch.tensor([[5, 6, 7, 8], [0, 0, 9, 10]])
    attention = torch.tensor([[1, 1, 1, 1], [0, 0, 1, 1]])
    with torch.inference_mode():
        model(input_ids=ids, attention_mask=attention, past_key_values=cache, use_cache=True)
        step = {"input_ids": ids[:, -1:], "attention_mask": torch.cat([attention, torch.ones(2, 1, dtype=torch.long)], 1),
                "position_ids": torch.tensor([[4], [2]]), "cache_position": torch.tensor([4]), "past_key_values": cache,
                "use_cache": True}
        torch._dynamo.reset()
        return torch._dynamo.explain(model.forward)(**step), model.config.num_hidden_layers


def test_the_compiled_decode_step_is_one_graph_without_repeated_kv_heads(tiny_llama_dir: Path) -> None:
    """CUDA graphs (mode reduce-overhead) need the decode step traced whole; and traced, the stock
    path repeats each layer's keys and values (an ``expand`` each), this one does not."""
    ours, layers = explain_decode_step(tiny_llama_dir, "gqa")
    assert ours.graph_break_count == 0, ours.break_reasons
    assert ours.graph_count == 1
    stock_step, _ = explain_decode_step(tiny_llama_dir, "sdpa")
    assert stock_step.graphs[0].code.count(".expand(") - ours.graphs[0].code.count(".expand(") == 2 * layers


def test_infer_switches_only_causal_models_on_cuda() -> None:
    from engine.inference import attention_for

    gen = GenerationConfig()
    assert gen.attention == "gqa"
    assert attention_for(gen, "causal", "cuda") == "gqa"
    assert attention_for(GenerationConfig(attention="sdpa"), "causal", "cuda") == "sdpa"
    assert attention_for(gen, "causal", "cpu") is None
    assert attention_for(gen, "seq2seq", "cuda") is None


def test_use_attention_leaves_a_chosen_kernel_alone() -> None:
    register_gqa_attention()
    model = SimpleNamespace(config=SimpleNamespace(_attn_implementation="eager"),
                            set_attn_implementation=lambda name: pytest.fail("eager was chosen on purpose"))
    assert use_attention(model, "gqa") == "eager"


def test_an_unknown_attention_names_the_key(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("model: {name_or_path: x, nickname: x, kind: causal}\ngeneration: {attention: flash}\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert "generation.attention" in str(err.value) and str(path) in str(err.value)


def test_infer_reports_the_attention_it_put_the_model_on(tmp_path: Path, synth_data_dir: Path, tiny_llama_dir: Path,
                                                          monkeypatch) -> None:
    """The ``infer`` command body on a causal final_model, with the choice a CUDA machine makes."""
    import argparse
    import shutil

    import engine.inference as inference
    from engine.artifacts import EventWriter, write_final_model_meta

    final = tmp_path / "final_model"
    shutil.copytree(tiny_llama_dir, final)
    write_final_model_meta(final, {"kind": "causal", "dtype": "float32"})
    ws = tmp_path / "ws"
    config = write_run_config(ws, {
        "model": {"name_or_path": str(tiny_llama_dir), "nickname": "gqa", "kind": "causal"},
        "data": {"dir": str(synth_data_dir)},
        "generation": {"num_beams": 1, "max_new_tokens": 4, "batch_size": 8},
    })
    monkeypatch.chdir(ws)
    monkeypatch.setattr(inference, "attention_for", lambda gen, kind, device_type: gen.attention)
    args = argparse.Namespace(config=config, set=[], checkpoint=str(final), split="test", artifact_key=None, model_key=None)
    metrics = inference.infer(args, EventWriter(None))
    assert metrics["attention"] == GQA_ATTENTION
    assert metrics["test_rows"] == 24 and Path(metrics["test_path"]).is_file()
