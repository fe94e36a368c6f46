/**
 * Read-bandwidth probes that bracket the timed rounds of a benchmark. The host's read
 * bandwidth moves (~33 to ~18 GB/s within minutes on the Xeon host, other tenants), so one
 * probe per run cannot stand for every round: a round's "% of probe" is taken against short
 * probes right before and right after it, and the figure is not valid when those two
 * disagree by more than PROBE_AGREE or the round read more than the probe (> 100%: the
 * probe caught a slow moment). The pure helpers here turn probes and rounds into those
 * figures and the report's notes; the one impure one runs a short probe.
 */
import type { NativeBackend } from "../../src/backend/native.ts";
import { median } from "./context.ts";

/** Bytes one probe pass streams (allocated like packed weights: native/src/packed_probe.cc). */
export const PROBE_BYTES = 512 << 20;
/** Passes of one short bracketing probe. */
export const BRACKET_PASSES = 3;
/** Two probes disagree when the larger is more than this fraction above the smaller. */
export const PROBE_AGREE = 0.15;

/** GB/s of one short probe: the median of `passes` passes over PROBE_BYTES on `threads` threads. */
export function shortProbe(nb: NativeBackend, threads: number, passes = BRACKET_PASSES): number {
  return median(Array.from(nb.readBandwidth(PROBE_BYTES, threads, passes)));
}

/** How far apart GB/s figures are: max / min − 1 (0 for one figure; Infinity if one is 0). */
export function spread(gbs: readonly number[]): number {
  if (gbs.length === 0) return NaN;
  const lo = Math.min(...gbs), hi = Math.max(...gbs);
  return lo > 0 ? hi / lo - 1 : Infinity;
}

/** One timed round against the probes right before and right after it. */
export interface Bracketed {
  /** GB/s the round read */
  gbs: number;
  before: number;
  after: number;
  /** The round's probe: the mean of before and after */
  probe: number;
  /** 100 · gbs / probe */
  pct: number;
  /** spread([before, after]) */
  disagree: number;
  /** Why the % is not valid, or null when it is */
  invalid: string | null;
}

export function bracket(gbs: number, before: number, after: number, agree = PROBE_AGREE): Bracketed {
  const probe = (before + after) / 2, pct = (100 * gbs) / probe, disagree = spread([before, after]);
  const invalid = !(disagree <= agree)
    ? `its probes disagree by ${(100 * disagree).toFixed(1)}% (${before.toFixed(1)} before, ${after.toFixed(1)} after; more than ${(100 * agree).toFixed(0)}%)`
    : pct > 100 ? `${pct.toFixed(0)}% of its probe: it read more than the probe measured` : null;
  return { gbs, before, after, probe, pct, disagree, invalid };
}

/** Several rounds of one case: the median % over the valid ones (NaN when none is) and the range over all. */
export interface RoundsSummary { pct: number; valid: number; rounds: number; minPct: number; maxPct: number }

export function summarize(rounds: readonly Bracketed[]): RoundsSummary {
  const all = rounds.map((r) => r.pct);
  return {
    pct: median(rounds.filter((r) => r.invalid === null).map((r) => r.pct)), valid: rounds.filter((r) => r.invalid === null).length,
    rounds: rounds.length, minPct: Math.min(...all), maxPct: Math.max(...all),
  };
}

/** The report's cell: "73%" (one round, or all round to it), "73% (71–76%)", "73% (71–104%; 2 of 3 rounds valid)", or "not valid (134%)". */
export function pctCell(s: RoundsSummary): string {
  const lo = s.minPct.toFixed(0), hi = s.maxPct.toFixed(0), range = lo === hi ? `${lo}%` : `${lo}–${hi}%`;
  if (s.valid === 0) return `not valid (${range})`;
  if (lo === hi && s.valid === s.rounds) return `${s.pct.toFixed(0)}%`;
  return `${s.pct.toFixed(0)}% (${range}${s.valid < s.rounds ? `; ${s.valid} of ${s.rounds} rounds valid` : ""})`;
}

/** One round's cell: "93%", or "104% (not valid)". */
export function pctOf(b: Bracketed): string {
  return `${b.pct.toFixed(0)}%${b.invalid === null ? "" : " (not valid)"}`;
}

/**
 * The report's lines on the probes: their range and spread, a plain warning when they
 * disagree by more than `agree`, and one line per round that is not valid (`label` names it).
 * `scope` says which probes these are ("in this run").
 */
export function probeNotes(probes: readonly number[], rounds: readonly { label: string; b: Bracketed }[], scope = "in this run", agree = PROBE_AGREE): string[] {
  const s = spread(probes);
  const out = [`- read-bandwidth probes ${scope}: ${probes.length}, ${Math.min(...probes).toFixed(1)}–${Math.max(...probes).toFixed(1)} GB/s (spread ${(100 * s).toFixed(1)}%)`];
  if (!(s <= agree)) {
    out.push(`- **the probes ${scope} disagree by ${(100 * s).toFixed(1)}% (more than ${(100 * agree).toFixed(0)}%): the host's bandwidth moved, so a % is only as good as the two probes around it: one whose two probes disagree by more than ${(100 * agree).toFixed(0)}% is not valid (listed below)**`);
  }
  const bad = rounds.filter((r) => r.b.invalid !== null);
  if (bad.some((r) => r.b.pct > 100)) out.push("- **a figure above 100% of its probe is not valid: the probe caught the host at a slower moment than the timed calls**");
  for (const r of bad) out.push(`- not valid: ${r.label}: ${r.b.pct.toFixed(0)}% of ${r.b.probe.toFixed(1)} GB/s; ${r.b.invalid}`);
  return out;
}
