"""A random-weight mixture-of-experts GGUF (llama.cpp's "olmoe" architecture) that both
llama.cpp and Ingot load, for benchmarks that run the two engines on the very same file.

    python3 bench/mkmoe_gguf.py LLAMA_CPP_DIR OUT.gguf [--preset olmoe-1b-7b|cpu-small]
        [--layers N] [--dtype f16|q8_0|q4_0] [--vocab gpt-neox|qwen2|llama-spm]
        [--hf-config DIR] [--shrink]

Shapes (`--preset`): `olmoe-1b-7b` is OLMoE-1B-7B's (bench/models/olmoe-1b-7b/config.json:
hidden 2048, 16 layers, 16 heads of 128, 64 experts of width 1024, top-8, QK-norm over all
heads); `cpu-small` is a scaled-down OLMoE for a 2-core machine (hidden 1024, 8 layers, 16
heads of 64, 32 experts of width 512, top-4: 0.54 B parameters, 0.14 B active per token).
The vocabulary is a real one, llama.cpp's vocab-only file (`models/ggml-vocab-NAME.gguf`;
GPT-NeoX's 50,432 tokens by default, close to OLMoE's 50,304), so both engines tokenize.

Speed of writing: the weights are slices of one pool of random normal values (std 0.02), each
tensor taking its slice at another offset, instead of fresh draws for each of billions of
weights; `--dtype q8_0` / `q4_0` quantize the pool once (gguf-py's quantizer) and slice
whole blocks, so every matrix, expert stacks included, is stored in that block format (norms
and the router `ffn_gate_inp` stay F32, as llama-quantize leaves them). Values do not matter
to speed; the router's rows differ per layer, so tokens spread over the experts.

`--hf-config DIR` also writes DIR/config.json, an OlmoeForCausalLM config of the same shapes
(the vocabulary's size included), for transformers' random-weight side of the benchmark.
`--shrink` divides hidden, heads, experts and expert width by 8 and top-k by 4 (tests of the
scripts).

Needs numpy and gguf-py (LLAMA_CPP_DIR/gguf-py, imported from there). Prints, as one JSON
line, the file's parameter counts and the bytes of weights one token reads at batch 1 (the
active parameters: attention, norms, router, top-k experts, one embedding row, the LM head),
from which the benchmark scripts compute the share of the memory roofline.
"""

import argparse
import json
import sys
import time

import numpy as np

PRESETS = {
    "olmoe-1b-7b": dict(hidden=2048, layers=16, heads=16, experts=64, top_k=8, expert_ff=1024),
    "cpu-small": dict(hidden=1024, layers=8, heads=16, experts=32, top_k=4, expert_ff=512),
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("llama_cpp_dir")
    ap.add_argument("out")
    ap.add_argument("--preset", default="olmoe-1b-7b", choices=sorted(PRESETS))
    ap.add_argument("--layers", type=int, help="override the preset's layer count")
    ap.add_argument("--dtype", default="f16", choices=["f16", "q8_0", "q4_0"])
    ap.add_argument("--vocab", default="gpt-neox")
    ap.add_argument("--hf-config", help="also write DIR/config.json for transformers")
    ap.add_argument("--shrink", action="store_true", help="tiny shapes, for tests of the scripts")
    args = ap.parse_args()
    sys.path.insert(0, args.llama_cpp_dir + "/gguf-py")
    import gguf

    t0 = time.time()
    p = dict(PRESETS[args.preset])
    if args.layers:
        p["layers"] = args.layers
    if args.shrink:
        p.update(hidden=p["hidden"] // 8, heads=p["heads"] // 8, experts=p["experts"] // 8,
                 expert_ff=p["expert_ff"] // 8, top_k=max(1, p["top_k"] // 4))
    H, L, NH, E, K, FF = (p[k] for k in ("hidden", "layers", "heads", "experts", "top_k", "expert_ff"))
    vocab = gguf.GGUFReader(f"{args.llama_cpp_dir}/models/ggml-vocab-{args.vocab}.gguf")
    V = len(vocab.fields["tokenizer.ggml.tokens"].data)
    if args.hf_config:
        import os

        # Written first: the benchmark starts transformers while the weights are written.
        os.makedirs(args.hf_config, exist_ok=True)
        with open(os.path.join(args.hf_config, "config.json"), "w") as f:
            json.dump({
                "architectures": ["OlmoeForCausalLM"], "model_type": "olmoe", "vocab_size": V,
                "hidden_size": H, "intermediate_size": FF, "num_hidden_layers": L,
                "num_attention_heads": NH, "num_key_value_heads": NH, "hidden_act": "silu",
                "max_position_embeddings": 4096, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
                "rope_scaling": None, "attention_bias": False, "clip_qkv": None,
                "num_experts": E, "num_experts_per_tok": K, "norm_topk_prob": False,
                "output_router_logits": False, "router_aux_loss_coef": 0.01,
                "tie_word_embeddings": False, "bos_token_id": None, "eos_token_id": 0,
                "pad_token_id": 1, "torch_dtype": "bfloat16",
            }, f, indent=1)


    qtype = {"f16": None, "q8_0": gguf.GGMLQuantizationType.Q8_0, "q4_0": gguf.GGMLQuantizationType.Q4_0}[args.dtype]
    ftype = {"f16": gguf.LlamaFileType.MOSTLY_F16, "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0,
             "q4_0": gguf.LlamaFileType.MOSTLY_Q4_0}[args.dtype]
    w = gguf.GGUFWriter(args.out, "olmoe")
    w.add_name(f"olmoe-{args.preset}-random")
    w.add_block_count(L)
    w.add_context_length(4096)
    w.add_embedding_length(H)
    w.add_feed_forward_length(FF)
    w.add_head_count(NH)
    w.add_head_count_kv(NH)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_expert_count(E)
    w.add_expert_used_count(K)
    w.add_file_type(ftype)
    for k, f in vocab.fields.items():
        if not k.startswith("tokenizer."):
            continue
        v, t = f.contents(), f.types
        if t[0] == gguf.GGUFValueType.ARRAY:
            w.add_array(k, v)
        elif t[0] == gguf.GGUFValueType.STRING:
            w.add_string(k, v)
        elif t[0] == gguf.GGUFValueType.BOOL:
            w.add_bool(k, bool(v))
        else:
            w.add_uint32(k, int(v))

    matrices = [("token_embd.weight", (V, H)), ("output.weight", (V, H))]
    for i in range(L):
        b = f"blk.{i}."
        matrices += [(b + n, (H, H)) for n in ("attn_q.weight", "attn_k.weight", "attn_v.weight", "attn_output.weight")]
        matrices += [(b + "ffn_gate_exps.weight", (E, FF, H)), (b + "ffn_up_exps.weight", (E, FF, H)),
                     (b + "ffn_down_exps.weight", (E, H, FF))]
    largest = max(int(np.prod(s)) for _, s in matrices)
    # The pool: the largest matrix plus room for distinct offsets, whole 32-element blocks.
    pool_n = (largest + (1 << 20)) // 32 * 32
    rng = np.random.default_rng(0)
    pool = (rng.standard_normal(pool_n, dtype=np.float32) * 0.02).astype(np.float16)
    qpool = None
    if qtype is not None:
        qpool = gguf.quants.quantize(pool.astype(np.float32).reshape(-1, 32), qtype)  # [blocks, bytes]
    step = 0

    def matrix(name, shape):
        nonlocal step
        n = int(np.prod(shape))
        nblocks = n // 32
        off = (step * 7919 * 32) % (pool_n - n + 32) // 32  # in blocks
        step += 1
        if qpool is None:
            w.add_tensor(name, pool[off * 32: off * 32 + n].reshape(shape))
        else:
            raw = qpool[off: off + nblocks].reshape(*shape[:-1], shape[-1] // 32 * qpool.shape[1])
            w.add_tensor(name, raw, raw_dtype=qtype)

    def vector(name, n, value):
        w.add_tensor(name, np.full(n, value, dtype=np.float32))

    for name, shape in matrices[:2]:
        matrix(name, shape)
    vector("output_norm.weight", H, 1.0)
    for i in range(L):
        b = f"blk.{i}."
        vector(b + "attn_norm.weight", H, 1.0)
        vector(b + "ffn_norm.weight", H, 1.0)
        vector(b + "attn_q_norm.weight", H, 1.0)
        vector(b + "attn_k_norm.weight", H, 1.0)
        for name, shape in matrices[2 + 7 * i: 2 + 7 * (i + 1)]:
            matrix(name, shape)
        # The router in F32 (as llama-quantize keeps it), drawn fresh per layer, wider (std 1)
        # so that tokens spread over the experts.
        w.add_tensor(b + "ffn_gate_inp.weight", rng.standard_normal((E, H), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()

    bytes_per = {"f16": 2.0, "q8_0": 34 / 32, "q4_0": 18 / 32}[args.dtype]
    attn = L * 4 * H * H
    experts = L * E * 3 * FF * H
    active_experts = L * K * 3 * FF * H
    small = L * (E * H + 4 * H) * 4 + H * 4  # F32 router and norms, bytes
    active_bytes = (attn + active_experts + V * H + H) * bytes_per + small
    print(json.dumps({
        "file": args.out, "preset": args.preset, "layers": L, "dtype": args.dtype, "vocab": args.vocab,
        "vocab_size": V, "params": attn + experts + 2 * V * H + L * E * H,
        "active_params": attn + active_experts + V * H + L * E * H,
        "active_bytes_per_token": int(active_bytes), "seconds": round(time.time() - t0, 1),
    }), flush=True)


if __name__ == "__main__":
    main()
