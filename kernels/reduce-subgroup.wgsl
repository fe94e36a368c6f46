// Workgroup-wide sum / max over WG invocations using subgroup operations: each subgroup
// reduces in registers, its first invocation leaves the result in `red`, invocation 0 adds
// the leaders' entries (all other entries are 0 / -inf, so no assumption is made about how
// invocations map to subgroups). Call from uniform control flow.
var<workgroup> red: array<f32, WG>;

fn wg_sum(v: f32, lid: u32, sgid: u32) -> f32 {
  let s = subgroupAdd(v);
  red[lid] = select(0.0, s, sgid == 0u);
  workgroupBarrier();
  if (lid == 0u) {
    var t = 0.0;
    for (var i = 0u; i < WG; i++) { t += red[i]; }
    red[0] = t;
  }
  workgroupBarrier();
  let r = red[0];
  workgroupBarrier();
  return r;
}

fn wg_max(v: f32, lid: u32, sgid: u32) -> f32 {
  let s = subgroupMax(v);
  red[lid] = select(-3.0e38, s, sgid == 0u);
  workgroupBarrier();
  if (lid == 0u) {
    var t = -3.0e38;
    for (var i = 0u; i < WG; i++) { t = max(t, red[i]); }
    red[0] = t;
  }
  workgroupBarrier();
  let r = red[0];
  workgroupBarrier();
  return r;
}
