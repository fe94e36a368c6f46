// Workgroup-wide sum / max over WG (a power of two) invocations: a tree in workgroup memory.
// The fallback when the adapter has no `subgroups`; `sgid` is unused. Call from uniform
// control flow.
var<workgroup> red: array<f32, WG>;

fn wg_sum(v: f32, lid: u32, sgid: u32) -> f32 {
  red[lid] = v;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (lid < s) { red[lid] += red[lid + s]; }
    workgroupBarrier();
  }
  let r = red[0];
  workgroupBarrier();
  return r;
}

fn wg_max(v: f32, lid: u32, sgid: u32) -> f32 {
  red[lid] = v;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (lid < s) { red[lid] = max(red[lid], red[lid + s]); }
    workgroupBarrier();
  }
  let r = red[0];
  workgroupBarrier();
  return r;
}
