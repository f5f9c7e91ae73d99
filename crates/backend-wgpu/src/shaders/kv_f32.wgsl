// KV cache storage of f32 elements, one per word (the prefix of kv_write_f32 and
// attention_f32). `KvWord` is the cache's array element; `kv_pack` turns the elements of one
// word (here `x.x`; `x.y` is ignored) into it, `kv_unpack` widens a word back (`.y` unused).

alias KvWord = f32;
const KV_PER_WORD: u32 = 1u;

fn kv_pack(x: vec2<f32>) -> KvWord {
    return x.x;
}

fn kv_unpack(w: KvWord) -> vec2<f32> {
    return vec2<f32>(w, 0.0);
}
