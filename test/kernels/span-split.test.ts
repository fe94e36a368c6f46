/**
 * The decode split (issue 9; native/src/packed.h SpanSplit, packed_matmul.cc spanClaim /
 * spanStepRows): the row groups of a decode matmul in one share per thread, each walked as ns
 * streams (step i = row group i of every lane, the leftovers one at a time after them), claimed
 * one step at a time from the owner's front and, once a role's own share is done, from the back
 * of the share with the most left. Checked against an independent model of that layout, for any
 * interleaving of the roles' claims (random, lopsided, one role doing everything) and with the
 * roles running at once on the pool: every row group is claimed exactly once, by a step of its
 * own share with the layout's row groups; a role claims its own share's front in order and steals
 * only after it; the back of a share is claimed downwards; each row group's output lies in its
 * part (parts of a concatenated weight back to back, pad rows of a part's last row group not
 * written). With the roles' speeds 1 and 0.8 (the claims interleaved by their times) the two
 * finish within one step of each other. The matmuls that run this split are bit-equal to one
 * thread in fused.test.ts and packed.test.ts (2 threads) and below (3 and 5 threads on a fused
 * q|k|v, at every kernel level: shares stolen by several roles, lanes across parts).
 */
import { describe, expect, it } from "vitest";
import type { ManyPart } from "../../src/backend/backend.ts";
import { createNativeBackend, type SpanClaimRow } from "../../src/backend/native.ts";
import { randF32, randScales, rng } from "./packed-ref.ts";

const nb = createNativeBackend({ threads: 2 });
const RG = 16;

interface Shape { name: string; partN: number[] }
const SHAPES: Shape[] = [
  { name: "one part, 129 row groups", partN: [2056] },
  { name: "q|k|v shaped, odd parts", partN: [200, 40, 24] },         // 13 | 3 | 2 row groups, pad rows in each
  { name: "gate|up shaped", partN: [176 * 16, 176 * 16] },
  { name: "fewer row groups than streams per share", partN: [50] },  // 4 row groups
];

/** The row groups of step `step` of a share [rg0, rg0 + nrg) walked by ns streams (the layout, written out). */
function stepRows(rg0: number, nrg: number, ns: number, step: number): number[] {
  const part = Math.floor(nrg / ns);
  if (step < part) return Array.from({ length: ns }, (_, st) => rg0 + st * part + step);
  return [rg0 + ns * part + (step - part)];
}

function check(rows: SpanClaimRow[], partN: number[], shares: number, ns: number): void {
  const rgAt = [0], yAt = [0];
  for (const n of partN) { rgAt.push(rgAt.at(-1)! + Math.ceil(n / RG)); yAt.push(yAt.at(-1)! + n); }
  const total = rgAt.at(-1)!;
  const start = (s: number): number => Math.floor((s * total) / shares);
  // Every row group exactly once.
  expect(rows.map((r) => r.rg).sort((a, b) => a - b)).toEqual(Array.from({ length: total }, (_, i) => i));
  // Each claimed step is a step of its share, all of its row groups, from the front or the back.
  const steps = new Map<string, SpanClaimRow[]>();
  for (const r of rows) {
    const k = `${r.role} ${r.share} ${r.step}`;
    steps.set(k, [...(steps.get(k) ?? []), r]);
  }
  const owner = new Map<string, string>();
  for (const [k, rs] of steps) {
    const { share, step } = rs[0]!;
    const want = stepRows(start(share), start(share + 1) - start(share), ns, step);
    expect(rs.map((r) => r.rg), k).toEqual(want);
    expect(owner.has(`${share} ${step}`), `step ${share} ${step} claimed twice`).toBe(false);
    owner.set(`${share} ${step}`, k);
    expect(rs.every((r) => r.back === rs[0]!.back)).toBe(true);
    if (!rs[0]!.back) expect(rs[0]!.role, "front steps only by the share's owner").toBe(share);
  }
  // Each row group's output: its part, its rows, the part's row stride.
  for (const r of rows) {
    const p = rgAt.findIndex((a, i) => r.rg >= a && r.rg < rgAt[i + 1]!);
    const n0 = (r.rg - rgAt[p]!) * RG;
    expect([r.y, r.valid, r.ldy], `row group ${r.rg}`).toEqual([yAt[p]! + n0, Math.min(RG, partN[p]! - n0), partN[p]!]);
  }
  // Per role (its claims in order): its own front 0, 1, 2 … first, then only back steps, each share's downwards.
  for (let role = 0; role < shares; role++) {
    const mine = [...new Map(rows.filter((r) => r.role === role).map((r) => [`${r.share} ${r.step}`, r])).values()];
    const front = mine.filter((r) => !r.back), firstBack = mine.findIndex((r) => r.back);
    expect(front.map((r) => r.step)).toEqual(front.map((_, i) => i));
    if (firstBack >= 0) expect(mine.slice(firstBack).every((r) => r.back)).toBe(true);
    const back = mine.filter((r) => r.back);
    for (let i = 1; i < back.length; i++) {
      if (back[i]!.share === back[i - 1]!.share) expect(back[i]!.step).toBeLessThan(back[i - 1]!.step);
    }
  }
}

describe.each(SHAPES)("spanSplitClaims $name", ({ partN }) => {
  const cases = [1, 2, 3, 5].flatMap((shares) => [1, 2, 3, 4].map((ns) => ({ shares, ns })));

  it.each(cases)("random interleavings: every row group once, in its share's layout and its part ($shares shares, $ns streams)", ({ shares, ns }) => {
    for (let seed = 1; seed <= 4; seed++) {
      const r = rng(seed * 13 + shares);
      const order = Int32Array.from({ length: 400 }, () => Math.floor(r() * shares));
      check(nb.spanSplitClaims(partN, shares, ns, order), partN, shares, ns);
    }
  });

  it.each(cases)("lopsided interleavings: one role ten times as fast, or alone ($shares shares, $ns streams)", ({ shares, ns }) => {
    const r = rng(shares * 7 + ns);
    const fast = Int32Array.from({ length: 600 }, () => (r() < 10 / (10 + shares - 1) ? shares - 1 : Math.floor(r() * shares)));
    check(nb.spanSplitClaims(partN, shares, ns, fast), partN, shares, ns);
    const alone = new Int32Array(100000); // role 0 claims everything before any other role starts
    const rows = nb.spanSplitClaims(partN, shares, ns, alone);
    check(rows, partN, shares, ns);
    expect(rows.every((x) => x.role === 0)).toBe(true);
  });

  it.each([2, 3, 5])("roles at once on the pool: every row group once (%i shares)", (shares) => {
    for (let rep = 0; rep < 20; rep++) check(nb.spanSplitClaims(partN, shares, 4, null), partN, shares, 4);
  });
});

it("two roles of speeds 1 and 0.8 finish within one step of each other", () => {
  for (const partN of [[2056], [176 * 16, 176 * 16], [2048, 256, 256]]) {
    const ns = 4;
    // Claim k of role r happens at time k / speed[r]: the order of the claims by time.
    const speed = [1, 0.8], times: [number, number][] = [];
    for (let r = 0; r < 2; r++) for (let k = 0; k < 1000; k++) times.push([k / speed[r]!, r]);
    const order = Int32Array.from(times.sort((a, b) => a[0] - b[0] || a[1] - b[1]).map((t) => t[1]));
    const rows = nb.spanSplitClaims(partN, 2, ns, order);
    check(rows, partN, 2, ns);
    const stepsOf = (r: number): number => new Set(rows.filter((x) => x.role === r).map((x) => `${x.share} ${x.step}`)).size;
    const end = [stepsOf(0) / speed[0]!, stepsOf(1) / speed[1]!];
    expect(Math.abs(end[0]! - end[1]!), `finish times ${end}`).toBeLessThanOrEqual(1 / speed[1]!);
    expect(rows.some((x) => x.role === 0 && x.back), "the faster role stole").toBe(true);
  }
});

it.each(nb.kernelLevels())("a fused q|k|v on 3 and 5 threads gives the bits of one thread (%s, M = 1, 2, 4)", (level) => {
  const r = rng(77), K = 2048, Ns = [700, 90, 130]; // 59 row groups; ≥ the driver's serial threshold at M = 1
  const parts = Ns.map((N) => nb.packQ4({ codes: Uint8Array.from({ length: N * K }, () => Math.floor(r() * 16)), scales: randScales(N * K / 32, r, true), mins: null, N, K, groupSize: 32, perm: null }));
  const views = nb.fuse(parts)!;
  nb.setKernelLevel(level);
  try {
    for (const M of [1, 2, 4]) {
      const x = randF32(M * K, r);
      const run = (threads: number): Float32Array[] => {
        nb.setThreads(threads);
        const outs: ManyPart[] = views.map((v) => ({ w: v, N: v.N, out: new Float32Array(M * v.N).fill(NaN) }));
        nb.matmulMany(x, M, K, outs);
        return outs.map((o) => o.out);
      };
      const one = run(1);
      for (const threads of [3, 5]) for (let rep = 0; rep < 5; rep++) expect(run(threads), `M = ${M}, ${threads} threads`).toEqual(one);
    }
  } finally {
    nb.setThreads(2);
    nb.setKernelLevel(nb.kernelLevels()[0]!);
    views.forEach((v) => v.dispose());
  }
});

it("rejects bad arguments with a UsageError naming the field", () => {
  expect(() => nb.spanSplitClaims([], 2, 4, null)).toThrow(/partN/);
  expect(() => nb.spanSplitClaims([16], 0, 4, null)).toThrow(/shares/);
  expect(() => nb.spanSplitClaims([16], 2, 4, Int32Array.of(2))).toThrow(/order/);
});
