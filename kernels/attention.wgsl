// Causal grouped-query attention over the KV cache, one workgroup per (head, query), keys in
// blocks of WG with an online softmax (running max m, running sum l), so any context length
// fits in fixed workgroup memory. headDim ≤ 4·WG.
// Reference: refAttention (src/backend/ref.ts) — there scores and sums are f64.
const WG: u32 = 64u;

struct AttnParams { T: u32, pos0: u32, nHead: u32, nKv: u32, d: u32, scale: f32, _a: u32, _b: u32 }

@group(0) @binding(0) var<uniform> p: AttnParams;
@group(0) @binding(1) var<storage, read> q: array<f32>;          // [T, nHead·d]
@group(0) @binding(2) var<storage, read> kc: array<f32>;         // [capacity, nKv·d]
@group(0) @binding(3) var<storage, read> vc: array<f32>;         // [capacity, nKv·d]
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
      for (var i = 0u; i < d; i++) { dotv += qs[i] * kc[ko + i]; }
      s = dotv * p.scale;
    }
    let mNew = max(m, wg_max(s, lid, {{SGID}}));
    let pj = select(0.0, exp(s - mNew), j < nKeys);
    ps[lid] = pj;
    let corr = exp(m - mNew);
    l = l * corr + wg_sum(pj, lid, {{SGID}}); // its barriers also publish ps
    let nb = min(WG, nKeys - j0);
    for (var r = 0u; r < 4u; r++) {
      let i = lid + r * WG;
      if (i < d) {
        var a = acc[r] * corr;
        for (var jj = 0u; jj < nb; jj++) { a += ps[jj] * vc[(j0 + jj) * ldkv + kvh * d + i]; }
        acc[r] = a;
      }
    }
    m = mNew;
    workgroupBarrier();
  }
  for (var r = 0u; r < 4u; r++) {
    let i = lid + r * WG;
    if (i < d) { o[t * ldq + h * d + i] = acc[r] / l; }
  }
}
