// The KV cache read by attention.wgsl as f16 rows [capacity, nKv·d], two elements per u32
// (element 2w in the low half, as a little-endian Uint16Array), widened to f32 as read
// (exact), so the only rounding is the cache's own (kv-store.wgsl, f32ToF16 on the CPU).
@group(0) @binding(2) var<storage, read> kc: array<u32>;         // [capacity, nKv·d / 2] f16 pairs
@group(0) @binding(3) var<storage, read> vc: array<u32>;         // [capacity, nKv·d / 2] f16 pairs
fn k_pair(w: u32) -> vec2<f32> { return unpack2x16float(kc[w]); }
fn v_pair(w: u32) -> vec2<f32> { return unpack2x16float(vc[w]); }
