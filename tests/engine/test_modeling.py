"""engine/modeling.py's loaders: on the CPU they load exactly what the order before the GPU
placement loaded (materialise, resize, move; merge on the CPU), checked weight for weight on a tiny
Llama whose tokenizer, like the hub models', fills its embedding and lacks the mask tokens; the
CUDA branch (``device_map`` placement) runs here with the map pointed at the CPU."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine import modeling
from engine.artifacts import EventWriter, final_model_dir
from engine.config import config_from_dict
from engine.data import MASK_TOKENS

VOCAB = 64
SPECIALS = {"pad_token": "<pad>", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}


def test_placement_puts_cuda_weights_on_this_ranks_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    assert modeling.placement("cpu") == {}
    assert modeling.placement("cuda") == {"device_map": {"": 0}}
    monkeypatch.setenv("LOCAL_RANK", "3")  # `accelerate launch` rank 3 loads onto its own GPU
    assert modeling.placement("cuda") == {"device_map": {"": 3}}
    assert modeling.placement("cpu") == {}


@pytest.fixture(scope="module")
def hub_like_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Llama whose word-level tokenizer has exactly as many entries as the embedding has rows."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    out = tmp_path_factory.mktemp("hub-like") / "llama"
    vocab = {tok: i for i, tok in enumerate(SPECIALS.values())}
    vocab.update({f"w{i}": i for i in range(len(vocab), VOCAB)})
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, **SPECIALS)
    config = LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True,
                         pad_token_id=0, bos_token_id=1, eos_token_id=2)
    torch.manual_seed(0)
    LlamaForCausalLM(config).to(torch.bfloat16).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def run_config(model_dir: Path, checkpoints: Path):
    return config_from_dict({
        "model": {"name_or_path": str(model_dir), "nickname": "tiny-load", "kind": "causal", "dtype": "bfloat16"},
        "lora": {"enabled": True, "r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]},
        "train": {"precision": "bf16", "device": "cpu"},
        "paths": {"checkpoints": str(checkpoints)},
    })


def training_model_before(cfg):
    """What load_for_training loaded before the GPU placement: plain calls in the old order."""
    import torch
    from peft import get_peft_model

    tokenizer, added = modeling.load_tokenizer(cfg)
    model = modeling.auto_class("causal").from_pretrained(cfg.model.name_or_path, dtype=torch.bfloat16)
    model.resize_token_embeddings(len(tokenizer))
    model.to("cpu")
    model = get_peft_model(model, modeling.lora_config(cfg, tokenizer.convert_tokens_to_ids(added)))
    modeling.keep_activation_dtype(model)
    return model


def inference_model_before(directory: Path):
    """What load_for_inference loaded before: base, resize, adapter and merge on the CPU, then move."""
    import torch
    from peft import PeftModel
    from transformers import AutoTokenizer

    from engine.artifacts import read_final_model_meta

    meta = read_final_model_meta(directory)
    tokenizer = AutoTokenizer.from_pretrained(directory)
    base = modeling.auto_class("causal").from_pretrained(meta["base_model"], dtype=torch.bfloat16)
    base.resize_token_embeddings(len(tokenizer))
    model = PeftModel.from_pretrained(base, directory, autocast_adapter_dtype=False).merge_and_unload()
    return model.to(device="cpu", dtype=torch.bfloat16).eval()


def assert_same_weights(a, b) -> None:
    import torch

    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    different = [name for name in sa if not torch.equal(sa[name], sb[name])]
    assert not different, different[:5]


def train_loaded(cfg, device: str, seed: int = 0):
    from transformers import set_seed

    set_seed(seed)  # as the train stage does before loading: LoRA's init and the new rows' noise draw from it
    return modeling.load_for_training(cfg, device)


def save_trained_final_model(cfg, loaded) -> Path:
    """The engine's own save path, after giving LoRA's B and the new token rows values (as training would)."""
    import torch

    from engine.train import save_final_model

    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in loaded.model.named_parameters():
            if "lora_B" in name or "trainable_tokens_delta" in name:
                p.copy_(torch.randn(p.shape, generator=gen).to(p.dtype))
    save_final_model(cfg, loaded, loaded.model, {}, EventWriter(None), "tiny-load")
    return final_model_dir(Path(cfg.paths.checkpoints), "tiny-load")


def on_cpu_as_if_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CUDA branch without a GPU: the placement's device map points at the CPU."""
    monkeypatch.setattr(modeling, "placement", lambda device: {"device_map": {"": "cpu"}} if device == "cuda" else {})


def test_training_load_on_cpu_is_unchanged_and_adds_trainable_mask_tokens(hub_like_llama: Path, tmp_path: Path) -> None:
    import torch
    from transformers import set_seed

    cfg = run_config(hub_like_llama, tmp_path / "checkpoints")
    loaded = train_loaded(cfg, "cpu")
    set_seed(0)
    before = training_model_before(cfg)
    assert_same_weights(loaded.model, before)
    assert loaded.added_tokens == list(MASK_TOKENS)
    assert loaded.model.get_input_embeddings().weight.shape[0] == VOCAB + len(MASK_TOKENS)
    # The base in model.dtype; PEFT keeps its own trainable weights (LoRA, new token rows) in float32.
    base = {p.dtype for n, p in loaded.model.named_parameters() if "lora_" not in n and "trainable_tokens" not in n}
    assert base == {torch.bfloat16}
    trainable = [n for n, p in loaded.model.named_parameters() if p.requires_grad]
    assert any("trainable_tokens" in n for n in trainable) and any("lora_A" in n for n in trainable)
    ids = torch.tensor([[1, 5, VOCAB, VOCAB + 3, 7]])  # two of the new mask-token ids among old ones
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.equal(loaded.model(input_ids=ids).logits, before(input_ids=ids).logits)


def test_training_load_through_the_cuda_branch_gives_the_same_model(hub_like_llama: Path, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = run_config(hub_like_llama, tmp_path / "checkpoints")
    on_cpu = train_loaded(cfg, "cpu")
    on_cpu_as_if_cuda(monkeypatch)
    placed = train_loaded(cfg, "cuda")
    assert_same_weights(placed.model, on_cpu.model)
    # A one-device map leaves no hf_device_map: the Trainer and generate() see what a `.to(device)` model gave them.
    assert not hasattr(placed.model.get_base_model(), "hf_device_map")


def test_inference_load_merges_the_adapter_as_before_in_one_dtype(hub_like_llama: Path, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    cfg = run_config(hub_like_llama, tmp_path / "checkpoints")
    final = save_trained_final_model(cfg, train_loaded(cfg, "cpu"))
    loaded = modeling.load_for_inference(final, "cpu")
    before = inference_model_before(final)
    assert_same_weights(loaded.model, before)
    assert {p.dtype for p in loaded.model.parameters()} == {torch.bfloat16}
    assert not loaded.model.training
    base = modeling.auto_class("causal").from_pretrained(hub_like_llama, dtype=torch.bfloat16)
    ids = torch.tensor([[1, 5, 9, 7]])
    with torch.no_grad():
        merged = loaded.model(input_ids=ids).logits
        assert torch.equal(merged, before(input_ids=ids).logits)
        assert not torch.equal(merged, base(input_ids=ids).logits)  # the adapter was applied
    on_cpu_as_if_cuda(monkeypatch)
    placed = modeling.load_for_inference(final, "cuda")
    assert_same_weights(placed.model, loaded.model)
    assert not hasattr(placed.model, "hf_device_map")
