// Small element-wise kernels, 64 invocations per workgroup over a flat index (2-D grid).
// Entry points: embed (nn/model.ts Model.embed), silu_mul (nn/block.ts MLP), gather_cols
// (act-order: x'[m, k] = x[m, perm[k]], the contract's perm meaning).
struct EwParams { count: u32, width: u32, _a: u32, _b: u32 }

@group(0) @binding(0) var<uniform> p: EwParams;

fn flat(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 { return (wid.x + wid.y * nwg.x) * 64u + lid; }

// x[t, i] = embed[tokens[t], i]; count = T·H, width = H.
@group(0) @binding(1) var<storage, read> tokens: array<u32>;          // [T]
@group(0) @binding(2) var<storage, read> table: array<f16>;           // [V, H]
@group(0) @binding(3) var<storage, read_write> xe: array<f32>;        // [T, H]
@compute @workgroup_size(64)
fn embed(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let idx = flat(wid, nwg, lid);
  if (idx >= p.count) { return; }
  let t = idx / p.width;
  xe[idx] = f32(table[tokens[t] * p.width + idx % p.width]);
}

// g = silu(g) · u; count = T·I.
@group(0) @binding(4) var<storage, read_write> g: array<f32>;         // [T, I]
@group(0) @binding(5) var<storage, read> u: array<f32>;               // [T, I]
@compute @workgroup_size(64)
fn silu_mul(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let idx = flat(wid, nwg, lid);
  if (idx >= p.count) { return; }
  let a = g[idx];
  g[idx] = (a / (1.0 + exp(-a))) * u[idx];
}

// xp[m, k] = xs[m, perm[k]]; count = M·K, width = K.
@group(0) @binding(6) var<storage, read> xs: array<f32>;              // [M, K]
@group(0) @binding(7) var<storage, read> perm: array<u32>;            // [K]
@group(0) @binding(8) var<storage, read_write> xp: array<f32>;        // [M, K]
@compute @workgroup_size(64)
fn gather_cols(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let idx = flat(wid, nwg, lid);
  if (idx >= p.count) { return; }
  let m = idx / p.width;
  xp[idx] = xs[m * p.width + perm[idx % p.width]];
}
