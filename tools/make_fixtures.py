#!/usr/bin/env python3
"""Writes adag's tiny random test checkpoints and their `transformers` reference outputs.

Each fixture under fixtures/models/<name>/ is a real HuggingFace model directory:
  config.json                      written in the layout the Hub's checkpoints use (legacy
                                   `rope_theta` / `rope_scaling` keys, as Llama-3.2 or Qwen2.5 ship)
  model.safetensors | model-0000i-of-0000n.safetensors + model.safetensors.index.json
  tokenizer.json, tokenizer_config.json   a small byte-level BPE with the family's special tokens
                                   and chat template
  reference.safetensors            logits and cached intermediates from `transformers` (f32, eager
                                   attention), keyed `seq{i}.{hook name}` with adag's hook names
  reference.json                   the prompts, their token ids, chat-template renderings, versions

Coverage: llama (GQA, llama3 rope scaling, tied embeddings), qwen2 (q/k/v biases, two shards,
untied), qwen3 (q/k norms, explicit head_dim != d_model/n_heads, bf16 on disk), gemma2 (four norms,
(1+w) RMSNorm, embedding scale, both soft-caps, query_pre_attn_scalar, sliding window on alternate
layers, gelu-tanh, tied), gemma3 (Gemma-2's norms plus per-head (1+w) q/k norms, the 5:1
local/global pattern with a 3-token window, a local rope base distinct from the global one, linear
rope scaling on global layers only, no soft-caps, q·head_dim != d_model, bf16 on disk, tied).
Norm weights are random, so a wrong norm formula cannot hide.

Run from the repo root:  python3 tools/make_fixtures.py [NAME ...]   (default: every fixture;
naming one rewrites only that fixture, leaving the others byte-identical)
Needs: pip install torch transformers safetensors tokenizers   (versions land in reference.json)
"""

import copy
import json
import math
import os
import shutil
import sys
import tempfile
import zlib

import torch
import transformers
import tokenizers
from safetensors.torch import save_file
from tokenizers import Tokenizer, models, pre_tokenizers, decoders, trainers, processors
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "fixtures", "models")

CORPUS = """The capital of the state containing Dallas is Austin. Dallas is in Texas.
The keys to the cabinet are on the table. 36+59=95. 12+30=42.
def attribute(model, prompt):\n\treturn model(prompt)  # trace it
Circuit tracing finds which features drove an output, and through which paths.
Hello, world! How are you today? I'm fine, thanks; it's 3.14 degrees.
Émile a visité Zürich — naïve café. 東京は日本の首都です。 🙂
""" * 4

PROMPTS = [
    "The capital of the state containing Dallas is",
    "36+59=",
    "Hello, world!",
]

LLAMA3_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'"
    "+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}"
    "{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)
QWEN_TEMPLATE = (
    "{%- for message in messages %}\n"
    "    {%- if loop.first and messages[0]['role'] != 'system' %}\n"
    "        {{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}\n"
    "    {%- endif %}\n"
    "    {{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}\n"
    "{%- endfor %}\n"
    "{%- if add_generation_prompt %}\n"
    "    {{- '<|im_start|>assistant\\n' }}\n"
    "{%- endif %}\n"
)
GEMMA_TEMPLATE = (
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}"
    "{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if (message['role'] == 'assistant') %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}{% endif %}"
    "{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{'<start_of_turn>model\n'}}{% endif %}"
)

FAMILIES = {
    "llama": dict(
        specials=["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"],
        bos="<|begin_of_text|>", eos="<|eot_id|>", pad=None, template=LLAMA3_TEMPLATE,
    ),
    "qwen": dict(
        specials=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        bos=None, eos="<|im_end|>", pad="<|endoftext|>", template=QWEN_TEMPLATE,
    ),
    "gemma": dict(
        specials=["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>"],
        bos="<bos>", eos="<end_of_turn>", pad="<pad>", template=GEMMA_TEMPLATE,
    ),
}

VOCAB = 320
D = 64
# Fixtures with Gemma's four norms per block and (1+w) RMSNorm weights.
GEMMAS = ("gemma2", "gemma3")


def build_tokenizer(family, out_dir):
    f = FAMILIES[family]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB, special_tokens=f["specials"], show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(CORPUS.splitlines(), trainer=trainer)
    if f["bos"]:
        bos_id = tok.token_to_id(f["bos"])
        tok.post_processor = processors.Sequence([
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(
                single=f"{f['bos']} $A", pair=f"{f['bos']} $A {f['bos']} $B",
                special_tokens=[(f["bos"], bos_id)],
            ),
        ])
    else:
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
    tok.save(os.path.join(out_dir, "tokenizer.json"))
    cfg = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": f["bos"],
        "eos_token": f["eos"],
        "pad_token": f["pad"],
        "chat_template": f["template"],
        "clean_up_tokenization_spaces": False,
        "model_max_length": 4096,
    }
    with open(os.path.join(out_dir, "tokenizer_config.json"), "w") as fh:
        json.dump(cfg, fh, indent=2, ensure_ascii=False)
    return tok.get_vocab_size()


def hub_config(name, vocab):
    """config.json as the Hub's checkpoints of each family write it (legacy rope keys)."""
    common = dict(vocab_size=vocab, hidden_size=D, num_hidden_layers=3, num_attention_heads=4,
                  num_key_value_heads=2, intermediate_size=128, max_position_embeddings=256,
                  initializer_range=0.02, transformers_version="4.45.0")
    if name == "llama":
        return dict(common, architectures=["LlamaForCausalLM"], model_type="llama", hidden_act="silu",
                    rms_norm_eps=1e-5, rope_theta=500000.0, attention_bias=False, mlp_bias=False,
                    tie_word_embeddings=True, bos_token_id=0, eos_token_id=4, head_dim=16,
                    rope_scaling={"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                  "original_max_position_embeddings": 64, "rope_type": "llama3"},
                    torch_dtype="float32")
    if name == "qwen2":
        return dict(common, architectures=["Qwen2ForCausalLM"], model_type="qwen2", hidden_act="silu",
                    rms_norm_eps=1e-6, rope_theta=1000000.0, tie_word_embeddings=False,
                    use_sliding_window=False, sliding_window=32768, max_window_layers=21,
                    bos_token_id=0, eos_token_id=2, torch_dtype="float32")
    if name == "qwen3":
        return dict(common, architectures=["Qwen3ForCausalLM"], model_type="qwen3", hidden_act="silu",
                    head_dim=24, rms_norm_eps=1e-6, rope_theta=1000000.0, attention_bias=False,
                    tie_word_embeddings=False, use_sliding_window=False, sliding_window=None,
                    max_window_layers=28, bos_token_id=0, eos_token_id=2, torch_dtype="bfloat16")
    if name == "gemma2":
        return dict(common, architectures=["Gemma2ForCausalLM"], model_type="gemma2",
                    num_hidden_layers=4, head_dim=16, hidden_act="gelu_pytorch_tanh",
                    hidden_activation="gelu_pytorch_tanh", rms_norm_eps=1e-6, rope_theta=10000.0,
                    attention_bias=False, attn_logit_softcapping=2.0, final_logit_softcapping=3.0,
                    query_pre_attn_scalar=24, sliding_window=4, cache_implementation="hybrid",
                    tie_word_embeddings=True, pad_token_id=0, eos_token_id=1, bos_token_id=2,
                    torch_dtype="float32")
    if name == "gemma3":
        # As google/gemma-3-1b-pt writes it (legacy keys: `sliding_window_pattern`, no
        # `layer_types`), shrunk. 6 layers: 0-4 slide, 5 is global. Window 3 < every prompt's
        # length, so local and global layers see different keys. q has 4x16 = 64 > d_model = 32.
        return dict(common, architectures=["Gemma3ForCausalLM"], model_type="gemma3_text",
                    hidden_size=32, intermediate_size=64, num_hidden_layers=6, head_dim=16,
                    hidden_activation="gelu_pytorch_tanh", rms_norm_eps=1e-6,
                    rope_theta=1000000.0, rope_local_base_freq=10000.0,
                    rope_scaling={"rope_type": "linear", "factor": 8.0},
                    attention_bias=False, attention_dropout=0.0, attn_logit_softcapping=None,
                    final_logit_softcapping=None, query_pre_attn_scalar=24, sliding_window=3,
                    sliding_window_pattern=6, cache_implementation="hybrid",
                    tie_word_embeddings=True, pad_token_id=0, eos_token_id=[1, 5], bos_token_id=2,
                    torch_dtype="bfloat16", use_cache=True)
    raise ValueError(name)


def randomise(model, name):
    """Weights with O(1) activations, so attention patterns and norms are far from trivial."""
    g = torch.Generator().manual_seed(zlib.crc32(name.encode()))
    with torch.no_grad():
        for pname, p in model.named_parameters():
            if "norm" in pname:
                base = 0.0 if name in GEMMAS else 1.0
                p.copy_(base + 0.3 * torch.randn(p.shape, generator=g))
            elif pname.endswith("bias"):
                p.copy_(0.3 * torch.randn(p.shape, generator=g))
            elif "embed_tokens" in pname:
                # Gemma-3 has no final soft-cap: a small tied embedding keeps the next-token
                # distribution flat enough for several attribution targets.
                scale = {"gemma2": 0.3, "gemma3": 0.1}.get(name, 1.0)
                p.copy_(torch.randn(p.shape, generator=g) * scale)
            else:
                fan_in = p.shape[-1]
                p.copy_(torch.randn(p.shape, generator=g) * (1.5 / math.sqrt(fan_in)))


def norm_scale(x, eps):
    return torch.sqrt(x.float().pow(2).mean(-1, keepdim=True) + eps)


def capture(model, name, ids):
    """One unbatched eager forward; returns {hook name: tensor} in adag's hook vocabulary."""
    cfg = model.config
    eps = cfg.rms_norm_eps
    out, handles = {}, []
    layers = model.model.layers
    gemma = name in GEMMAS

    def pre(key):
        def fn(mod, args, kwargs):
            x = args[0] if args else kwargs["hidden_states"]
            out[key] = x[0].detach().clone()
        return fn

    def post(key, index=None):
        def fn(mod, args, output):
            y = output[0] if isinstance(output, tuple) else output
            out[key] = y[0].detach().clone()
        return fn

    def norm_hook(prefix, normalized=True, output_name=None):
        """hook_scale = sqrt(mean(x²)+eps); hook_normalized = x / scale (TransformerLens: before
        the weight); output_name, if given, receives the module's output (after the weight)."""
        def fn(mod, args, output):
            x = args[0][0]
            scale = norm_scale(x, eps)
            out[prefix + ".hook_scale"] = scale.detach().clone()
            if normalized:
                out[prefix + ".hook_normalized"] = (x.float() / scale).detach().clone()
            if output_name:
                out[output_name] = output[0].detach().clone()
        return fn

    for l, layer in enumerate(layers):
        b = f"blocks.{l}"
        handles.append(layer.register_forward_pre_hook(pre(b + ".hook_resid_pre"), with_kwargs=True))
        handles.append(layer.register_forward_hook(post(b + ".hook_resid_post")))
        handles.append(layer.input_layernorm.register_forward_hook(norm_hook(b + ".ln1")))
        if gemma:
            handles.append(layer.post_attention_layernorm.register_forward_hook(norm_hook(b + ".ln1_post", normalized=False)))
            handles.append(layer.pre_feedforward_layernorm.register_forward_hook(norm_hook(b + ".ln2", output_name=b + ".mlp.hook_in")))
            handles.append(layer.post_feedforward_layernorm.register_forward_hook(norm_hook(b + ".ln2_post", normalized=False)))
            handles.append(layer.post_feedforward_layernorm.register_forward_hook(post(b + ".post_ffw")))
        else:
            handles.append(layer.post_attention_layernorm.register_forward_hook(norm_hook(b + ".ln2", output_name=b + ".mlp.hook_in")))
        handles.append(layer.mlp.gate_proj.register_forward_hook(post(b + ".mlp.hook_pre")))
        handles.append(layer.mlp.up_proj.register_forward_hook(post(b + ".mlp.hook_pre_linear")))
        handles.append(layer.mlp.down_proj.register_forward_pre_hook(pre(b + ".mlp.hook_post"), with_kwargs=True))
        handles.append(layer.mlp.register_forward_hook(post(b + ".mlp.hook_out")))
    handles.append(model.model.norm.register_forward_hook(norm_hook("ln_final")))
    try:
        with torch.no_grad():
            res = model(torch.tensor([ids]), output_attentions=True, use_cache=False)
    finally:
        for h in handles:
            h.remove()
    for l in range(len(layers)):
        b = f"blocks.{l}"
        out[b + ".attn.hook_pattern"] = res.attentions[l][0].detach().clone()
        # What the MLP adds to the residual (after Gemma-2's post-feedforward norm).
        mlp_out = out.pop(b + ".post_ffw") if gemma else out[b + ".mlp.hook_out"]
        out[b + ".hook_mlp_out"] = mlp_out.clone()
        out[b + ".hook_resid_mid"] = out[b + ".hook_resid_post"] - mlp_out
        out[b + ".hook_attn_out"] = out[b + ".hook_resid_mid"] - out[b + ".hook_resid_pre"]
    out["logits"] = res.logits[0].detach().clone()
    return out


def make(name, family, shards, disk_dtype):
    d = os.path.join(OUT, name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    vocab = build_tokenizer(family, d)
    cfg = hub_config(name, vocab)
    with open(os.path.join(d, "config.json"), "w") as fh:
        json.dump(cfg, fh, indent=2)
    config = AutoConfig.from_pretrained(d)
    config._attn_implementation = "eager"
    torch.manual_seed(0)
    # Built in f32 whatever config.json's dtype: a bf16 build would round non-persistent buffers
    # (Gemma-3's embedding scale sqrt(d_model)) that the f32 reload below computes exactly.
    model = AutoModelForCausalLM.from_config(
        config, attn_implementation="eager", dtype=torch.float32).float().eval()
    randomise(model, name)
    if disk_dtype == "bfloat16":
        # Round to bf16 so the on-disk weights and the reference model agree exactly.
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(p.to(torch.bfloat16).float())

    with tempfile.TemporaryDirectory() as tmp:
        copy.deepcopy(model).to(getattr(torch, disk_dtype)).save_pretrained(
            tmp, max_shard_size="200KB" if shards > 1 else "100MB", safe_serialization=True)
        weight_files = [f for f in os.listdir(tmp) if f.endswith(".safetensors") or f.endswith(".index.json")]
        n_shards = sum(f.endswith(".safetensors") for f in weight_files)
        if shards > 1:
            assert n_shards > 1, f"{name}: expected a sharded checkpoint, got {weight_files}"
        for f in weight_files:
            shutil.copy(os.path.join(tmp, f), d)

    # The directory as written must load in transformers and give the same logits.
    reloaded = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32, attn_implementation="eager").eval()
    hf_tok = AutoTokenizer.from_pretrained(d)

    ref, meta_prompts = {}, []
    for i, text in enumerate(PROMPTS):
        ids = hf_tok(text)["input_ids"]
        # The reference is what transformers computes from the files on disk.
        caps = capture(reloaded, name, ids)
        with torch.no_grad():
            in_memory = model(torch.tensor([ids]), use_cache=False).logits[0]
        assert torch.allclose(in_memory, caps["logits"], atol=1e-4), f"{name}: reloaded logits differ"
        for k, v in caps.items():
            ref[f"seq{i}.{k}"] = v.float().contiguous()
        meta_prompts.append({"text": text, "ids": ids})

    chat = [{"role": "user", "content": "What is the capital of Texas?"}]
    rendered = hf_tok.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
    chat_ids = hf_tok(rendered, add_special_tokens=False)["input_ids"]
    save_file(ref, os.path.join(d, "reference.safetensors"))
    meta = {
        "model": name,
        "prompts": meta_prompts,
        "chat": {"messages": chat, "add_generation_prompt": True, "rendered": rendered, "ids": chat_ids},
        "hooks": sorted({k.split(".", 1)[1] for k in ref}),
        "generated_by": {"torch": torch.__version__, "transformers": transformers.__version__,
                         "tokenizers": tokenizers.__version__, "python": sys.version.split()[0]},
        "attn_implementation": "eager",
        "dtype": "float32",
    }
    with open(os.path.join(d, "reference.json"), "w") as fh:
        json.dump(meta, fh, indent=2, ensure_ascii=False)
    size = sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))
    print(f"{name}: {n_shards} shard(s), vocab {vocab}, {size / 1024:.0f} KiB")


# name: (tokenizer family, shards, dtype on disk)
FIXTURES = {
    "llama": ("llama", 1, "float32"),
    "qwen2": ("qwen", 2, "float32"),
    "qwen3": ("qwen", 1, "bfloat16"),
    "gemma2": ("gemma", 1, "float32"),
    "gemma3": ("gemma", 1, "bfloat16"),
}


def main():
    torch.use_deterministic_algorithms(True)
    names = sys.argv[1:] or list(FIXTURES)
    unknown = [n for n in names if n not in FIXTURES]
    if unknown:
        sys.exit(f"unknown fixture(s) {unknown}; known: {list(FIXTURES)}")
    for name in names:
        family, shards, disk_dtype = FIXTURES[name]
        make(name, family, shards=shards, disk_dtype=disk_dtype)


if __name__ == "__main__":
    main()
