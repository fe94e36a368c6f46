// Causal grouped-query attention over the KV cache, one workgroup per (head, query), keys in
// blocks of WG with an online softmax (running max m, running sum l), so any context length
// fits in fixed workgroup memory. headDim ≤ 4·WG, even. The cache bindings and reads fill the
// KV slot (kv-f32.wgsl or kv-f16.wgsl: k_pair / v_pair widen two elements to f32); scores, softmax
// and P·V accumulate in f32 either way.
// Reference: refAttention (src/backend/ref.ts) — there scores and sums are f64.
const WG: u32 = 64u;

struct AttnParams { T: u32, pos0: u32, nHead: u32, nKv: u32, d: u32, scale: f32, _a: u32, _b: u32 }

@group(0) @binding(0) var<uniform> p: AttnParams;
@group(0) @binding(1) var<storage, read> q: array<f32>;          // [T, nHead·d]
{{KV}}
@group(0) @binding(4) var<storage, read_write> o: array<f32>;    // [T, nHead·d]
{{REDUCE}}

var<workgroup> qs: array<f32, 256>;
var<workgroup> ps: array<f32, WG>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32 {{SGID_PARAM}}) {
  let h = wid.x;
  let t = wid.y;
  let d = p.d;
  let kvh = h / (p.nHead / p.nKv);
  let ldq = p.nHead * d;
  let ldkv = p.nKv * d;
  let nKeys = p.pos0 + t + 1u;
  for (var i = lid; i < d; i += WG) { qs[i] = q[t * ldq + h * d + i]; }
  workgroupBarrier();
  var m = -3.0e38;
  var l = 0.0;
  var acc = vec4<f32>(0.0);
  for (var j0 = 0u; j0 < nKeys; j0 += WG) {
    let j = j0 + lid;
    var s = -3.0e38;
    if (j < nKeys) {
      let ko = j * ldkv + kvh * d;
      var dotv = 0.0;
      for (var w = 0u; w < d / 2u; w++) {
        let kk = k_pair(ko / 2u + w);
        dotv += qs[2u * w] * kk.x;
        dotv += qs[2u * w + 1u] * kk.y;
      }
      s = dotv * p.scale;
    }
    let mNew = max(m, wg_max(s, lid, {{SGID}}));
    let pj = select(0.0, exp(s - mNew), j < nKeys);
    ps[lid] = pj;
    let corr = exp(m - mNew);
    l = l * corr + wg_sum(pj, lid, {{SGID}}); // its barriers also publish ps
    let nb = min(WG, nKeys - j0);
    // this invocation's elements: pairs lid and lid + WG of the head (acc.xy, acc.zw)
    for (var r = 0u; r < 2u; r++) {
      let w = lid + r * WG;
      if (2u * w < d) {
        var a = vec2<f32>(acc[2u * r], acc[2u * r + 1u]) * corr;
        for (var jj = 0u; jj < nb; jj++) { a += ps[jj] * v_pair(((j0 + jj) * ldkv + kvh * d) / 2u + w); }
        acc[2u * r] = a.x;
        acc[2u * r + 1u] = a.y;
      }
    }
    m = mNew;
    workgroupBarrier();
  }
  for (var r = 0u; r < 2u; r++) {
    let w = lid + r * WG;
    if (2u * w < d) {
      o[t * ldq + h * d + 2u * w] = acc[2u * r] / l;
      o[t * ldq + h * d + 2u * w + 1u] = acc[2u * r + 1u] / l;
    }
  }
}
