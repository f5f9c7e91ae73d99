#!/usr/bin/env python3
"""Build the tiny random-weight test models in testdata/ and their transformers references.

Two fixtures, each a complete Hugging Face model directory plus GGUF files of the same weights:

  tiny-llama/  LlamaForCausalLM, untied embeddings, llama3 rope scaling, BOS added,
               pre-tokenizer "llama-bpe"; GGUF in F32 and in Q8_0.
  tiny-qwen2/  Qwen2ForCausalLM, tied embeddings, q/k/v biases, no BOS, pre-tokenizer "qwen2";
               GGUF in F32.

The work is split in two stages so that everything except the references can be made (and
re-made bit for bit) on a machine without torch:

  build      tokenizer (trained here with the `tokenizers` library on the corpus below),
             config.json, generation_config.json, model.safetensors (weights drawn with numpy
             from fixed per-tensor seeds), tokenizer files, GGUF files. Needs numpy, tokenizers,
             safetensors and the `gguf` package.
  reference  loads each HF directory with transformers (float32, CPU) and writes
             reference.json + reference_logits.bin. Needs torch and transformers.

`all` (the default) runs both. The GGUF files follow what llama.cpp's convert_hf_to_gguf.py
writes for these architectures: same metadata keys, tensor names, Q/K row permutation for the
llama architecture (HF keeps rotate-half rope, llama.cpp's LLAMA rope is interleaved), and the
llama3 rope scaling stored as a precomputed `rope_freqs.weight` tensor of frequency divisors.

Usage:  python3 tools/make_tiny_models.py [build|reference|all] --out testdata
"""

from __future__ import annotations

import argparse
import json
import math
import zlib
from pathlib import Path

import numpy as np

# --------------------------------------------------------------------------------------------
# Tokenizer corpus. Written for these fixtures: plain prose, numbers, code, punctuation, chat
# snippets and a little non-ASCII text, so that the learned merges cover words, digit groups,
# whitespace runs and multi-byte characters.
# --------------------------------------------------------------------------------------------

CORPUS = """\
The river ran past the old mill and under the stone bridge, where children threw bread to the ducks.
In the morning the baker opened the shop at 6:30 and sold 144 loaves before nine o'clock.
She said, "Don't wait for me; I'll take the later train." He didn't answer, but he waited anyway.
We're going to need three things: a map, a lamp, and a lot of patience.
It's been 12 years since the lighthouse was painted red and white.
They've counted 1,024 stars tonight, or maybe 1,025 -- nobody is quite sure.
A good engine keeps its promises: every token it prints is the token it computed.
Numbers: 0 1 2 3 4 5 6 7 8 9 10 11 12 100 256 512 1024 2048 4096 65536 3.14159 2.71828 -17 +42 1e-5
Dates like 2024-05-17 and times like 23:59:07 appear in logs; prices like $19.99 or EUR 7,50 too.
Phone: +1 (555) 010-0199. Email: someone@example.org. Path: /usr/local/bin/ingot --help
Questions? Answers! Maybe... (parentheses) [brackets] {braces} <angles> 'single' "double" `back`
def add(a, b):
    return a + b

for i in range(10):
    print(i * i, end=", ")

fn main() {
    let xs: Vec<u32> = (1..=5).collect();
    println!("{:?}", xs);
}

if (x >= 0 && y != 3) { z = x / 2; } else { z = -1; }
SELECT name, COUNT(*) FROM users WHERE age > 30 GROUP BY name;
user: What is the capital of France?
assistant: The capital of France is Paris.
user: How many legs does a spider have?
assistant: A spider has eight legs.
user: Write a haiku about rain.
assistant: Soft rain on the roof / the kettle starts to whistle / tea for two tonight
Café au lait, naïve façade, jalapeño, Zürich, São Paulo, Kraków, smörgåsbord.
Ελληνικά γράμματα: α β γ δ ε — λόγος και αριθμός.
Русский текст: привет, как дела? Всё хорошо, спасибо.
日本語の文章と中文的句子。東京は大きい。北京很大。
Emoji: 🙂 🚀 ✨ 👍🏽 and symbols: ± × ÷ ≤ ≥ ≠ ∞ → ← € £ ¥ © ®.
Tabs\tand  double  spaces   and trailing spaces   
Lines

with blank lines between them.
The cat sat on the mat. The dog sat on the log. The frog sat on the bog.
Once upon a time there was a small model with very few weights and a great deal of confidence.
It predicted the next token, then the next, then the next, until the story was finished.
Rain, wind, snow, sun; spring, summer, autumn, winter; north, south, east, west.
Monday Tuesday Wednesday Thursday Friday Saturday Sunday January February March April
the the the and and and of of of to to to in in in is is is that that that it it it
reading writing running thinking building testing computing learning sleeping walking
quickly slowly carefully happily quietly loudly suddenly finally really nearly
unbelievable understanding international information organization configuration
I'm sure you'd agree that we'll finish; they're late but she's here and he'd come.
"""

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

# ChatML, as Qwen2-Instruct writes it (without the default system prompt).
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

# A fixture's chat format: its three special tokens in the roles (BOS and padding, start of a
# turn, end of a turn = EOS), its chat template, and the rendering of one user turn with the
# generation prompt (written out so the build stage needs no jinja). `template_bos`: the
# template writes the BOS itself, so a rendered chat prompt is encoded without adding one.
CHATML = dict(
    specials=SPECIAL_TOKENS,
    template=CHAT_TEMPLATE,
    user_turn="<|im_start|>user\n{text}<|im_end|>\n<|im_start|>assistant\n",
    template_bos=False,
)


def chat_of(spec: dict) -> dict:
    return spec.get("chat", CHATML)


def roles(spec: dict) -> tuple[str, str, str]:
    """(BOS/pad token, turn-start token, turn-end/EOS token) of a fixture."""
    bos, start, end = chat_of(spec)["specials"]
    return bos, start, end

# The split regexes llama.cpp names "llama-bpe" (Llama 3) and "qwen2"; they differ only in how
# digits group (up to three per piece vs one).
LLAMA_BPE_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

FIXTURES = {
    "tiny-llama": dict(
        arch="llama",
        hf_class="LlamaForCausalLM",
        split=LLAMA_BPE_SPLIT,
        gguf_pre="llama-bpe",
        nfc=False,
        vocab_size=384,
        hidden=64,
        intermediate=128,
        layers=2,
        heads=4,
        kv_heads=2,
        head_dim=16,
        max_pos=512,
        eps=1e-5,
        rope_theta=10000.0,
        rope_scaling={
            "rope_type": "llama3",
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 64,
        },
        tied=False,
        qkv_bias=False,
        add_bos=True,
        seed=1001,
        std_embed=1.0,
        std_linear=0.15,
        q8_0=True,
    ),
    "tiny-qwen2": dict(
        arch="qwen2",
        hf_class="Qwen2ForCausalLM",
        split=QWEN2_SPLIT,
        gguf_pre="qwen2",
        nfc=True,
        vocab_size=448,
        hidden=64,
        intermediate=176,
        layers=2,
        heads=4,
        kv_heads=2,
        head_dim=16,
        max_pos=512,
        eps=1e-6,
        rope_theta=1000000.0,
        rope_scaling=None,
        tied=True,
        qkv_bias=True,
        add_bos=False,
        seed=2002,
        std_embed=1.0,
        std_linear=0.25,
        q8_0=False,
    ),
}

# Standard deviations of the random weights (embedding and linear ones are per fixture, above).
# Picked with a sweep of the numpy forward in check_tiny_gguf.py so that attention is far from
# uniform, greedy output does not repeat one token (a tied head at small init echoes the input
# token), and the top-1 logit margins stay >= 0.02 for robust greedy references.
STD_OUTPUT = 0.25
STD_BIAS = 0.2
STD_NORM = 0.1  # norm weights are 1 + STD_NORM * N(0, 1)

PROMPTS = [
    ("short", "plain", "Hello, world! 42 apples"),
    ("chat", "chat", "What is 7 + 5?"),
    (
        "long",
        "plain",
        ('Once upon a time, the baker counted 1,024 loaves; she said "Don\'t wait" and walked to Zürich'),
    ),
]
GREEDY_NEW_TOKENS = 16


def render_prompt(kind: str, text: str, spec: dict | None = None) -> str:
    """The prompt string: plain text, or one user turn through the fixture's chat template
    with the generation prompt (ChatML unless the fixture names another)."""
    if kind == "chat":
        return chat_of(spec or {})["user_turn"].format(text=text)
    return text


# --------------------------------------------------------------------------------------------
# build stage
# --------------------------------------------------------------------------------------------


def train_tokenizer(spec: dict):
    """Byte-level BPE with Llama-3 / Qwen2 style pre-tokenization; specials appended last."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers
    from tokenizers import pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE(fuse_unk=False, byte_fallback=False))
    if spec["nfc"]:
        tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(spec["split"]), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    trainer = trainers.BpeTrainer(
        vocab_size=spec["vocab_size"] - len(roles(spec)),
        min_frequency=2,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
    )
    tok.train_from_iterator(CORPUS.splitlines(keepends=True), trainer)
    learned = tok.get_vocab_size()
    assert learned == spec["vocab_size"] - len(roles(spec)), f"corpus too small: learned {learned} tokens"
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in roles(spec)])
    assert tok.get_vocab_size() == spec["vocab_size"]
    bos_text = roles(spec)[0]
    bos = tok.token_to_id(bos_text)
    byte_level = processors.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    if spec["add_bos"]:
        # Llama 3 adds BOS through a TemplateProcessing post-processor.
        tok.post_processor = processors.Sequence(
            [
                byte_level,
                processors.TemplateProcessing(
                    single=f"{bos_text} $A",
                    pair=f"{bos_text} $A {bos_text} $B:1",
                    special_tokens=[(bos_text, bos)],
                ),
            ]
        )
    else:
        tok.post_processor = byte_level
    return tok


def special_ids(tok, spec: dict | None = None) -> dict:
    """Ids of the fixture's special tokens, by token and by role ("bos", "start", "end")."""
    bos, start, end = roles(spec or {})
    ids = {t: tok.token_to_id(t) for t in (bos, start, end)}
    ids.update(bos=ids[bos], start=ids[start], end=ids[end])
    return ids


def write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def hf_config(spec: dict, ids: dict) -> dict:
    cfg = {
        "architectures": [spec["hf_class"]],
        "model_type": spec["arch"],
        "vocab_size": spec["vocab_size"],
        "hidden_size": spec["hidden"],
        "intermediate_size": spec["intermediate"],
        "num_hidden_layers": spec["layers"],
        "num_attention_heads": spec["heads"],
        "num_key_value_heads": spec["kv_heads"],
        "head_dim": spec["head_dim"],
        "hidden_act": "silu",
        "max_position_embeddings": spec["max_pos"],
        "rms_norm_eps": spec["eps"],
        "rope_theta": spec["rope_theta"],
        "rope_scaling": spec["rope_scaling"],
        "tie_word_embeddings": spec["tied"],
        "bos_token_id": ids["bos"],
        "eos_token_id": ids["end"],
        "initializer_range": 0.02,
        "attention_dropout": 0.0,
        "use_cache": True,
        "torch_dtype": "float32",
    }
    if spec["arch"] == "llama":
        cfg.update(attention_bias=False, mlp_bias=False, pretraining_tp=1)
    else:
        cfg.update(use_sliding_window=False, sliding_window=None, max_window_layers=spec["layers"])
    return cfg


def tokenizer_config(spec: dict, ids: dict) -> dict:
    added = {
        str(i): {
            "content": t,
            "lstrip": False,
            "normalized": False,
            "rstrip": False,
            "single_word": False,
            "special": True,
        }
        for t, i in ids.items()
        if t not in ("bos", "start", "end")
    }
    bos, start, end = roles(spec)
    return {
        "added_tokens_decoder": added,
        "additional_special_tokens": [start, end],
        "add_bos_token": spec["add_bos"],
        "add_eos_token": False,
        "bos_token": bos if spec["add_bos"] or chat_of(spec)["template_bos"] else None,
        "eos_token": end,
        "pad_token": bos,
        "unk_token": None,
        "chat_template": chat_of(spec)["template"],
        "clean_up_tokenization_spaces": False,
        "model_max_length": spec["max_pos"],
        "tokenizer_class": "PreTrainedTokenizerFast",
    }


def tensor_seed(fixture_seed: int, name: str) -> int:
    """A stable per-tensor seed, so one tensor's values never depend on the others."""
    return fixture_seed * 1_000_003 + zlib.crc32(name.encode())


def make_weights(spec: dict) -> dict[str, np.ndarray]:
    """HF-named float32 weights drawn from fixed seeds (HF layout: Linear weight is [out, in])."""
    H, I, D = spec["hidden"], spec["intermediate"], spec["head_dim"]
    Hq, Hk, V = spec["heads"], spec["kv_heads"], spec["vocab_size"]

    def normal(name, shape, std, mean=0.0):
        rng = np.random.default_rng(tensor_seed(spec["seed"], name))
        return (mean + std * rng.standard_normal(shape)).astype(np.float32)

    w: dict[str, np.ndarray] = {}
    std = spec["std_linear"]
    w["model.embed_tokens.weight"] = normal("model.embed_tokens.weight", (V, H), spec["std_embed"])
    for n in range(spec["layers"]):
        p = f"model.layers.{n}."
        w[p + "input_layernorm.weight"] = normal(p + "input_layernorm.weight", (H,), STD_NORM, 1.0)
        for proj, rows in (("q", Hq * D), ("k", Hk * D), ("v", Hk * D)):
            name = f"{p}self_attn.{proj}_proj"
            w[name + ".weight"] = normal(name + ".weight", (rows, H), std)
            if spec["qkv_bias"]:
                w[name + ".bias"] = normal(name + ".bias", (rows,), STD_BIAS)
        w[p + "self_attn.o_proj.weight"] = normal(p + "self_attn.o_proj.weight", (H, Hq * D), std)
        w[p + "post_attention_layernorm.weight"] = normal(
            p + "post_attention_layernorm.weight", (H,), STD_NORM, 1.0
        )
        w[p + "mlp.gate_proj.weight"] = normal(p + "mlp.gate_proj.weight", (I, H), std)
        w[p + "mlp.up_proj.weight"] = normal(p + "mlp.up_proj.weight", (I, H), std)
        w[p + "mlp.down_proj.weight"] = normal(p + "mlp.down_proj.weight", (H, I), std)
    w["model.norm.weight"] = normal("model.norm.weight", (H,), STD_NORM, 1.0)
    if not spec["tied"]:
        w["lm_head.weight"] = normal("lm_head.weight", (V, H), STD_OUTPUT)
    return w


def llama3_rope_factors(spec: dict) -> np.ndarray:
    """Per-frequency divisors for llama3 rope scaling, as convert_hf_to_gguf.py computes them.

    llama.cpp divides each rotation frequency by its factor; HF multiplies inv_freq by the
    reciprocal. Band edges: wavelength < orig/high_freq_factor keeps factor 1, wavelength >
    orig/low_freq_factor gets `factor`, in between a smooth blend.
    """
    rs = spec["rope_scaling"]
    D = spec["head_dim"]
    inv_freq = 1.0 / (spec["rope_theta"] ** (np.arange(0, D, 2, dtype=np.float32) / D))
    factor, lo, hi = rs["factor"], rs["low_freq_factor"], rs["high_freq_factor"]
    old = rs["original_max_position_embeddings"]
    lo_wavelen, hi_wavelen = old / lo, old / hi
    out = []
    for f in inv_freq:
        wavelen = 2 * math.pi / float(f)
        if wavelen < hi_wavelen:
            out.append(1.0)
        elif wavelen > lo_wavelen:
            out.append(factor)
        else:
            smooth = (old / wavelen - lo) / (hi - lo)
            out.append(1.0 / ((1 - smooth) / factor + smooth))
    return np.array(out, dtype=np.float32)


def permute_qk(w: np.ndarray, n_head: int) -> np.ndarray:
    """HF rotate-half row order -> llama.cpp interleaved row order, per head.

    Within a head HF stores the first halves of all rotation pairs, then the second halves;
    llama.cpp wants each pair adjacent. Same mapping as LlamaModel.permute in convert_hf_to_gguf.py.
    Works for weights [rows, in] and biases [rows].
    """
    rows = w.shape[0]
    return w.reshape(n_head, 2, rows // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def unpermute_qk(w: np.ndarray, n_head: int) -> np.ndarray:
    """Inverse of permute_qk."""
    rows = w.shape[0]
    return w.reshape(n_head, rows // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def gguf_tensors(spec: dict, w: dict[str, np.ndarray]) -> list[tuple[str, np.ndarray]]:
    """(GGUF name, array in HF [out, in] layout) in the order convert_hf_to_gguf.py writes them."""
    out: list[tuple[str, np.ndarray]] = []
    if spec["rope_scaling"] is not None:
        out.append(("rope_freqs.weight", llama3_rope_factors(spec)))
    out.append(("token_embd.weight", w["model.embed_tokens.weight"]))
    permute = spec["arch"] == "llama"
    for n in range(spec["layers"]):
        p, b = f"model.layers.{n}.", f"blk.{n}."
        out.append((b + "attn_norm.weight", w[p + "input_layernorm.weight"]))
        for proj, heads in (("q", spec["heads"]), ("k", spec["kv_heads"]), ("v", None)):
            for kind in ("weight", "bias"):
                key = f"{p}self_attn.{proj}_proj.{kind}"
                if key not in w:
                    continue
                t = w[key]
                if permute and heads is not None:
                    t = permute_qk(t, heads)
                out.append((f"{b}attn_{proj}.{kind}", t))
        for norm in ("q_norm", "k_norm"):  # Qwen3's QK-norm
            if f"{p}self_attn.{norm}.weight" in w:
                out.append((f"{b}attn_{norm}.weight", w[f"{p}self_attn.{norm}.weight"]))
        out.append((b + "attn_output.weight", w[p + "self_attn.o_proj.weight"]))
        out.append((b + "ffn_norm.weight", w[p + "post_attention_layernorm.weight"]))
        out.append((b + "ffn_gate.weight", w[p + "mlp.gate_proj.weight"]))
        out.append((b + "ffn_up.weight", w[p + "mlp.up_proj.weight"]))
        out.append((b + "ffn_down.weight", w[p + "mlp.down_proj.weight"]))
    out.append(("output_norm.weight", w["model.norm.weight"]))
    if not spec["tied"]:
        out.append(("output.weight", w["lm_head.weight"]))
    return out


def write_gguf(path: Path, name: str, spec: dict, tok, w: dict[str, np.ndarray], q8_0: bool) -> None:
    import gguf

    arch = spec["arch"]
    ids = special_ids(tok, spec)
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_type("model")
    writer.add_name(name)
    writer.add_block_count(spec["layers"])
    writer.add_context_length(spec["max_pos"])
    writer.add_embedding_length(spec["hidden"])
    writer.add_feed_forward_length(spec["intermediate"])
    writer.add_head_count(spec["heads"])
    writer.add_head_count_kv(spec["kv_heads"])
    writer.add_rope_freq_base(spec["rope_theta"])
    writer.add_layer_norm_rms_eps(spec["eps"])
    writer.add_key_length(spec["head_dim"])
    writer.add_value_length(spec["head_dim"])
    ftype = gguf.LlamaFileType.MOSTLY_Q8_0 if q8_0 else gguf.LlamaFileType.ALL_F32
    writer.add_file_type(ftype)
    writer.add_vocab_size(spec["vocab_size"])
    writer.add_rope_dimension_count(spec.get("rotary_dim", spec["head_dim"]))
    if "gguf_meta" in spec:
        spec["gguf_meta"](writer, spec)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)

    # Tokenizer, as convert_hf_to_gguf.py's _set_vocab_gpt2 + SpecialVocab write it.
    tj = json.loads(tok.to_str())
    vocab = tok.get_vocab(with_added_tokens=True)
    by_id = sorted(vocab.items(), key=lambda kv: kv[1])
    assert [i for _, i in by_id] == list(range(len(by_id)))
    tokens = [t for t, _ in by_id]
    control = {ids["bos"], ids["start"], ids["end"]}
    toktypes = [gguf.TokenType.CONTROL if i in control else gguf.TokenType.NORMAL for i in range(len(tokens))]
    merges = [m if isinstance(m, str) else " ".join(m) for m in tj["model"]["merges"]]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(spec["gguf_pre"])
    writer.add_token_list(tokens)
    writer.add_token_types(toktypes)
    writer.add_token_merges(merges)
    writer.add_bos_token_id(ids["bos"])
    writer.add_eos_token_id(ids["end"])
    writer.add_pad_token_id(ids["bos"])
    writer.add_add_bos_token(spec["add_bos"])
    writer.add_chat_template(chat_of(spec)["template"])

    for tname, arr in spec.get("gguf_tensors", gguf_tensors)(spec, w):
        arr = np.ascontiguousarray(arr, dtype=np.float32)
        keep_f32 = any(part in tname for part in spec.get("q8_0_keep_f32", ()))
        if q8_0 and arr.ndim in (2, 3) and arr.shape[-1] % 32 == 0 and not keep_f32:
            qt = gguf.GGMLQuantizationType.Q8_0
            writer.add_tensor(tname, gguf.quants.quantize(arr, qt), raw_dtype=qt)
        else:
            writer.add_tensor(tname, arr)

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def build(out: Path, fixtures: dict | None = None) -> None:
    """Writes each fixture's directory. A fixture may bring its own `weights(spec)`,
    `config(spec, ids)` and `gguf(path, name, spec, tok, w, q8_0)` (tools/make_tiny_families.py);
    the defaults are this file's Llama/Qwen2 ones."""
    from safetensors.numpy import save_file

    for name, spec in (fixtures or FIXTURES).items():
        d = out / name
        d.mkdir(parents=True, exist_ok=True)
        tok = train_tokenizer(spec)
        ids = special_ids(tok, spec)
        bos, start, end = roles(spec)
        tok.save(str(d / "tokenizer.json"), pretty=True)
        write_json(d / "tokenizer_config.json", tokenizer_config(spec, ids))
        write_json(
            d / "special_tokens_map.json",
            {
                "additional_special_tokens": [start, end],
                "bos_token": bos if spec["add_bos"] or chat_of(spec)["template_bos"] else None,
                "eos_token": end,
                "pad_token": bos,
            },
        )
        write_json(d / "config.json", spec.get("config", hf_config)(spec, ids))
        gen = {
            "bos_token_id": ids["bos"],
            "eos_token_id": ids["end"],
            "pad_token_id": ids["bos"],
            "do_sample": False,
        }
        write_json(d / "generation_config.json", gen)
        w = spec.get("weights", make_weights)(spec)
        save_file(w, str(d / "model.safetensors"), metadata={"format": "pt"})
        gguf_writer = spec.get("gguf", write_gguf)
        gguf_writer(d / f"{name}-f32.gguf", name, spec, tok, w, q8_0=False)
        if spec["q8_0"]:
            gguf_writer(d / f"{name}-q8_0.gguf", name, spec, tok, w, q8_0=True)
        print(
            f"built {d}: vocab {tok.get_vocab_size()}, merges "
            f"{len(json.loads(tok.to_str())['model']['merges'])}"
        )


# --------------------------------------------------------------------------------------------
# reference stage (torch)
# --------------------------------------------------------------------------------------------


def greedy_by_hand(model, ids: list[int], n: int) -> tuple[list[int], list[float]]:
    """n argmax steps, each a full forward without a KV cache; also the top-1 margins."""
    import torch

    seq, margins = list(ids), []
    for _ in range(n):
        with torch.no_grad():
            row = model(input_ids=torch.tensor([seq])).logits[0, -1].float().numpy()
        top2 = np.sort(row)[-2:]
        margins.append(float(top2[1] - top2[0]))
        seq.append(int(np.argmax(row)))
    return seq[len(ids) :], margins


def gguf_model_check(d: Path, gguf_name: str, prompts: list[list[int]], blobs: list[np.ndarray]):
    """Load a GGUF through transformers' own GGUF loader and compare its logits with ours.

    A third-party reading of the file, recorded for information only: transformers maps the
    GGUF back to an HF config and may not rebuild everything (e.g. llama3 rope scaling is only
    in rope_freqs.weight), so a difference here is reported, not fatal.
    """
    import torch
    from transformers import AutoModelForCausalLM

    try:
        m = AutoModelForCausalLM.from_pretrained(str(d), gguf_file=gguf_name, dtype=torch.float32)
        m.eval()
        errs = []
        for ids, ref in zip(prompts, blobs):
            with torch.no_grad():
                got = m(input_ids=torch.tensor([ids])).logits[0].float().numpy()
            errs.append(float(np.abs(got - ref).max() / np.abs(ref).max()))
        return {"file": gguf_name, "max_rel_err_per_prompt": errs}
    except Exception as e:
        return {"file": gguf_name, "error": f"{type(e).__name__}: {e}"[:500]}


def reference(out: Path, fixtures: dict | None = None) -> None:
    import torch
    import transformers
    from tokenizers import Tokenizer
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    torch.manual_seed(0)
    torch.use_deterministic_algorithms(True)
    problems: list[str] = []
    for name, spec in (fixtures or FIXTURES).items():
        d = out / name
        tok = AutoTokenizer.from_pretrained(str(d))
        raw = Tokenizer.from_file(str(d / "tokenizer.json"))
        gguf_tok, gguf_tok_error = None, None
        try:
            gguf_tok = AutoTokenizer.from_pretrained(str(d), gguf_file=f"{name}-f32.gguf")
        except Exception as e:  # recorded, not fatal: the GGUF tokenizer check is a bonus
            gguf_tok_error = f"{type(e).__name__}: {e}"[:500]
        if "load_model" in spec:  # a fixture that builds its model itself (make_tiny_moe.py)
            model = spec["load_model"](d, spec)
        else:
            model = AutoModelForCausalLM.from_pretrained(str(d), dtype=torch.float32)
        model.eval()
        ids = special_ids(raw, spec)
        # Set on the model so generate() cannot merge the EOS of generation_config.json back in:
        # no EOS at all means exactly GREEDY_NEW_TOKENS pure-argmax tokens.
        model.generation_config = GenerationConfig(
            do_sample=False,
            max_new_tokens=GREEDY_NEW_TOKENS,
            eos_token_id=None,
            pad_token_id=ids["bos"],
            bos_token_id=None,
        )

        records, blobs, encs, offset = [], [], [], 0
        for pname, kind, text in PROMPTS:
            rendered = render_prompt(kind, text, spec)
            # A template that writes the BOS itself is encoded without adding another.
            add_special = not (kind == "chat" and chat_of(spec)["template_bos"])
            if kind == "chat":
                text = tok.apply_chat_template(
                    [{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True
                )
                if text != rendered:
                    problems.append(f"{name}/{pname}: chat template gave {text!r}, want {rendered!r}")
            enc = tok(text, add_special_tokens=add_special)["input_ids"]
            raw_ids = raw.encode(text, add_special_tokens=add_special).ids
            if enc != raw_ids:
                problems.append(f"{name}/{pname}: AutoTokenizer {enc} != tokenizers {raw_ids}")
            bos = ids["bos"]
            wants_bos = spec["add_bos"] or not add_special
            if wants_bos != (enc[0] == bos) or enc[1:2] == [bos]:
                problems.append(f"{name}/{pname}: BOS handling wrong: {enc[:3]}")
            gguf_ids = gguf_tok(text, add_special_tokens=add_special)["input_ids"] if gguf_tok else None

            x = torch.tensor([enc], dtype=torch.long)
            with torch.no_grad():
                logits = model(input_ids=x).logits[0].float().numpy()  # [T, V]
                gen = model.generate(input_ids=x, attention_mask=torch.ones_like(x))
                gen = gen[0, len(enc) :].tolist()
            by_hand, margins = greedy_by_hand(model, enc, GREEDY_NEW_TOKENS)
            if gen != by_hand:
                problems.append(f"{name}/{pname}: generate {gen} != argmax loop {by_hand}")
            logits = np.ascontiguousarray(logits, dtype="<f4")
            blobs.append(logits)
            encs.append(enc)
            prompt_top2 = np.sort(logits, axis=1)[:, -2:]
            records.append(
                {
                    "name": pname,
                    "text": text,
                    "add_special_tokens": add_special,
                    "token_ids": enc,
                    "gguf_token_ids": gguf_ids,
                    "logits_offset": offset,
                    "logits_shape": list(logits.shape),
                    "prompt_argmax": [int(i) for i in logits.argmax(axis=1)],
                    "prompt_min_top1_margin": float((prompt_top2[:, 1] - prompt_top2[:, 0]).min()),
                    "greedy_tokens": gen,
                    "greedy_text": tok.decode(gen),
                    "greedy_min_top1_margin": min(margins),
                }
            )
            offset += logits.size
            print(
                f"{name}/{pname}: T={len(enc)} greedy={gen} distinct={len(set(gen))} "
                f"min margin={min(margins):.3f} logit std={logits.std():.3f} "
                f"gguf tokenizer {'n/a' if gguf_ids is None else gguf_ids == enc}"
            )

        (d / "reference_logits.bin").write_bytes(b"".join(b.tobytes() for b in blobs))
        extra = spec["reference_extra"](model, spec, encs) if "reference_extra" in spec else None
        gguf_checks = [gguf_model_check(d, p.name, encs, blobs) for p in sorted(d.glob("*.gguf"))]
        for c in gguf_checks:
            print(f"{name}: transformers GGUF load {c}")
        write_json(
            d / "reference.json",
            {
                "model": name,
                "architecture": spec["hf_class"],
                "dtype": "float32",
                "logits_file": "reference_logits.bin",
                "logits_layout": "little-endian f32, row-major [T, V] per prompt, prompts concatenated; "
                "logits_offset counts f32 elements",
                "vocab_size": spec["vocab_size"],
                "greedy_new_tokens": GREEDY_NEW_TOKENS,
                "greedy_note": "do_sample=False, no EOS stop, pure argmax (checked against a "
                "full-forward argmax loop without KV cache)",
                "gguf_tokenizer_error": gguf_tok_error,
                "transformers_gguf_model": gguf_checks,
                "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
                "prompts": records,
                **({"extra": extra} if extra is not None else {}),
            },
        )
    if problems:
        raise SystemExit("reference problems:\n" + "\n".join(problems))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("stage", nargs="?", default="all", choices=["build", "reference", "all"])
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "testdata")
    args = ap.parse_args()
    if args.stage in ("build", "all"):
        build(args.out)
    if args.stage in ("reference", "all"):
        reference(args.out)


if __name__ == "__main__":
    main()
