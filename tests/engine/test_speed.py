"""The training speed levers (engine/recipes/speed.py) on a tiny random Llama with PEFT LoRA, in
float32 on the CPU: the fused LoRA forward computes PEFT's loss and gradients, steps aside when it
cannot, and the per-layer compilation traces every layer into shared graphs without graph breaks
or recompiles across bucketed lengths, while evaluation stays eager."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from engine.recipes.speed import bucket_count, compile_layers, decoder_layers, fuse_lora  # noqa: E402

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def tiny_lora_llama(dropout: float = 0.0, layers: int = 2):
    """A random 2-layer Llama (hidden 48, so no sequence length below equals a static dim) with LoRA;
    B is random so the adapter changes the output (PEFT starts it at zero)."""
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(hidden_size=48, intermediate_size=96, num_hidden_layers=layers, num_attention_heads=4,
                         num_key_value_heads=2, vocab_size=300, attn_implementation="sdpa")
    model = get_peft_model(LlamaForCausalLM(config),
                           LoraConfig(r=4, lora_alpha=8, lora_dropout=dropout, target_modules=TARGETS))
    for name, param in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.2)
    return model


def batch(size: int, length: int, seed: int = 0) -> dict:
    """Right-padded like TRL's collator: the last row ends in 5 pads whose labels are -100."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 300, (size, length), generator=generator)
    mask = torch.ones_like(ids)
    mask[-1, -5:] = 0
    labels = ids.masked_fill(mask == 0, -100)
    return {"input_ids": ids, "attention_mask": mask, "labels": labels, "use_cache": False}


def loss_and_grads(model, inputs: dict) -> tuple[float, dict[str, torch.Tensor]]:
    model.zero_grad()
    loss = model(**inputs).loss
    loss.backward()
    return loss.item(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_fused_lora_gives_peft_loss_and_gradients() -> None:
    model = tiny_lora_llama()
    inputs = batch(3, 20)
    loss, grads = loss_and_grads(model, inputs)

    assert fuse_lora(model) == 2 * len(TARGETS)
    fused_loss, fused_grads = loss_and_grads(model, inputs)

    assert fused_loss == pytest.approx(loss, rel=1e-6)
    assert fused_grads.keys() == grads.keys() and any("lora_A" in n for n in grads)
    for name, grad in grads.items():
        torch.testing.assert_close(fused_grads[name], grad, rtol=1e-5, atol=1e-6, msg=name)


def test_fused_lora_leaves_dropout_layers_alone_and_steps_aside_when_disabled() -> None:
    assert fuse_lora(tiny_lora_llama(dropout=0.1)) == 0  # a dropped-out input cannot fold into the GEMM

    model = tiny_lora_llama()
    inputs = batch(2, 12)
    with torch.no_grad(), model.disable_adapter():
        base_logits = model(**inputs).logits
    fuse_lora(model)
    with torch.no_grad():
        with model.disable_adapter():
            torch.testing.assert_close(model(**inputs).logits, base_logits)
        adapted = model(**inputs).logits
    assert (adapted - base_logits).abs().max() > 1e-3  # the adapter is back on


@pytest.mark.slow  # ~1 min on a busy 2-core box: two traces of the layer, forward and backward
def test_compiled_layers_share_graphs_across_buckets_and_evaluation_stays_eager() -> None:
    from torch._dynamo.testing import CompileCounterWithBackend
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    eager = tiny_lora_llama(layers=3)
    compiled = tiny_lora_llama(layers=3)
    fuse_lora(eager)
    fuse_lora(compiled)
    counter = CompileCounterWithBackend("aot_eager")
    assert compile_layers(compiled, counter, buckets=4) == 3
    assert [type(m).__name__ for m in decoder_layers(compiled)] == ["LlamaDecoderLayer"] * 3

    for size, length in ((4, 64), (4, 128), (3, 192), (4, 64)):  # bucketed lengths, a smaller last batch
        inputs = batch(size, length, seed=length + size)
        expected, expected_grads = loss_and_grads(eager, inputs)
        got, grads = loss_and_grads(compiled, inputs)
        assert got == pytest.approx(expected, rel=1e-5)
        torch.testing.assert_close(grads, expected_grads, rtol=1e-4, atol=1e-5)
    # Layer 0's input needs no grad, the others' do: two graphs for three layers and every shape.
    # (Not counter.frame_count: dynamo may restart a trace once, which calls the backend again.)
    assert counters["stats"]["unique_graphs"] == 2
    assert counter.frame_count >= 2  # the layers really ran through the compiled path
    assert not counters["graph_break"], dict(counters["graph_break"])

    compiled.eval()
    with torch.no_grad():
        compiled(**batch(2, 40))
    assert counters["stats"]["unique_graphs"] == 2  # evaluation and generation run the eager forward


def test_bucket_count_covers_the_longest_sample() -> None:
    assert bucket_count(1224, 64) == 20
    assert bucket_count(1024, 64) == 16
    assert bucket_count(7, 1) == 7


def test_under_compile_no_liger_kernel_runs_inside_the_layers(tmp_path) -> None:
    from engine.config import config_from_dict
    from engine.recipes import LIGER_OUTSIDE_LAYERS, training_arguments

    tree = {"model": {"name_or_path": "m", "nickname": "n", "kind": "causal"}, "lora": {"enabled": True, "dropout": 0.0},
            "train": {"use_liger_kernel": True, "fused_lora": True}}
    eager = training_arguments(config_from_dict(tree), tmp_path, "cuda", with_eval=False)
    assert eager["use_liger_kernel"] and eager["liger_kernel_config"] is None  # all of Liger, as shipped
    tree["train"].update(compile=True, pad_to_multiple_of=64)
    compiled = training_arguments(config_from_dict(tree), tmp_path, "cuda", with_eval=False)
    assert compiled["liger_kernel_config"] == LIGER_OUTSIDE_LAYERS
    assert not any(LIGER_OUTSIDE_LAYERS.values())
    # TRL's SFTTrainer fuses the LM head itself and raises if Liger's fused_linear_cross_entropy is named.
    assert "fused_linear_cross_entropy" not in LIGER_OUTSIDE_LAYERS
