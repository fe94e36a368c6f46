// Rotary embedding in place on rows row0.. of a [rows, nHeads·2·half] buffer, positions
// pos0.., "rotate_half" pairs (i, i + half), from the cos/sin tables of RopeTable.
// Reference: RopeTable.apply (src/nn/rope.ts); the tables are RopeTable's own arrays.
struct RopeParams { T: u32, nHeads: u32, half: u32, pos0: u32, row0: u32, _a: u32, _b: u32, _c: u32 }

@group(0) @binding(0) var<uniform> p: RopeParams;
@group(0) @binding(1) var<storage, read_write> v: array<f32>;  // [rows, nHeads·2·half]
@group(0) @binding(2) var<storage, read> cosT: array<f32>;     // [capacity, half]
@group(0) @binding(3) var<storage, read> sinT: array<f32>;     // [capacity, half]

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let idx = (wid.x + wid.y * nwg.x) * 64u + lid;
  if (idx >= p.T * p.nHeads * p.half) { return; }
  let i = idx % p.half;
  let h = (idx / p.half) % p.nHeads;
  let t = idx / (p.half * p.nHeads);
  let c = cosT[(p.pos0 + t) * p.half + i];
  let s = sinT[(p.pos0 + t) * p.half + i];
  let o = ((p.row0 + t) * p.nHeads + h) * 2u * p.half;
  let x1 = v[o + i];
  let x2 = v[o + p.half + i];
  v[o + i] = x1 * c - x2 * s;
  v[o + p.half + i] = x2 * c + x1 * s;
}
