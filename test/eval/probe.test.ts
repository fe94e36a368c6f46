/**
 * The bracketing-probe helpers of the benchmarks (eval/bench-quantized/probe.ts) on
 * hand-computed cases: a round's % against the mean of the probes around it, when that
 * figure is not valid (probes more than 15% apart, or more than 100%), and the report's
 * cells and notes.
 */
import { describe, expect, it } from "vitest";
import { bracket, pctCell, pctOf, probeNotes, spread, summarize } from "../../eval/bench-quantized/probe.ts";

describe("bracketing probes", () => {
  it("spread is max / min − 1", () => {
    expect(spread([30, 33, 18])).toBeCloseTo(33 / 18 - 1, 12);  // 0.8333
    expect(spread([5])).toBe(0);
    expect(spread([0, 3])).toBe(Infinity);
    expect(spread([])).toBeNaN();
  });

  it("a round's % is against the mean of its two probes; valid while they agree within 15% and it stays ≤ 100%", () => {
    const b = bracket(24, 30, 32);
    expect(b.probe).toBe(31);
    expect(b.pct).toBeCloseTo(2400 / 31, 10);  // 77.42%
    expect(b.disagree).toBeCloseTo(32 / 30 - 1, 12);  // 6.7%
    expect(b.invalid).toBeNull();
    // Exactly 15% apart is still agreement (23 / 20 = 1.15); 23.1 / 20 is not.
    expect(bracket(20, 20, 23).invalid).toBeNull();
    expect(bracket(20, 20, 23).pct).toBeCloseTo(2000 / 21.5, 10);  // 93.02%
    expect(bracket(20, 20, 23.1).invalid).toMatch(/disagree by 15\.5%/);
    // The order of the two probes does not matter.
    expect(bracket(20, 23.1, 20).disagree).toBeCloseTo(bracket(20, 20, 23.1).disagree, 12);
  });

  it("the run bench-e2e-low-probe.md recorded: 24.4 GB/s against an 18.2 GB/s probe is 134% and not valid", () => {
    const b = bracket(24.4, 18.2, 18.2);
    expect(b.pct).toBeCloseTo(2440 / 18.2, 10);  // 134.07%
    expect(b.invalid).toBe("134% of its probe: it read more than the probe measured");
    // The host moving from 18 to 33 GB/s across a round: 94% of the mean, but not valid.
    const m = bracket(24, 18, 33);
    expect(m.pct).toBeCloseTo(2400 / 25.5, 10);  // 94.12%
    expect(m.invalid).toMatch(/^its probes disagree by 83\.3% \(18\.0 before, 33\.0 after; more than 15%\)$/);
  });

  it("summarize takes the median % over the valid rounds and the range over all", () => {
    const rounds = [bracket(24, 30, 32), bracket(25, 30, 30), bracket(24, 18, 33)];  // 77.42%, 83.33%, 94.12% (not valid)
    const s = summarize(rounds);
    expect(s.valid).toBe(2);
    expect(s.rounds).toBe(3);
    expect(s.pct).toBeCloseTo((2400 / 31 + 2500 / 30) / 2, 10);  // 80.38%
    expect(s.minPct).toBeCloseTo(2400 / 31, 10);
    expect(s.maxPct).toBeCloseTo(2400 / 25.5, 10);
    expect(pctCell(s)).toBe("80% (77–94%; 2 of 3 rounds valid)");
    expect(pctCell(summarize(rounds.slice(0, 2)))).toBe("80% (77–83%)");
    expect(pctCell(summarize([bracket(24, 30, 32)]))).toBe("77%");
    expect(pctCell(summarize([bracket(24, 30, 32), bracket(23.9, 30, 32)]))).toBe("77%");  // 77.42%, 77.10%: both print as 77
    const none = summarize([bracket(24.4, 18.2, 18.2)]);
    expect(none.pct).toBeNaN();
    expect(pctCell(none)).toBe("not valid (134%)");
    expect(pctOf(bracket(24, 30, 32))).toBe("77%");
    expect(pctOf(bracket(24.4, 18.2, 18.2))).toBe("134% (not valid)");
  });

  it("probeNotes states the spread, and says plainly when probes disagree or a round exceeds its probe", () => {
    const ok = bracket(24, 30, 32);
    expect(probeNotes([30, 32, 31], [{ label: "round 1 ours", b: ok }])).toEqual([
      "- read-bandwidth probes in this run: 3, 30.0–32.0 GB/s (spread 6.7%)",
    ]);
    const high = bracket(24.4, 18.2, 18.2), moved = bracket(24, 18.2, 33);
    const notes = probeNotes([18.2, 18.2, 33], [{ label: "round 1 ours", b: high }, { label: "round 2 ours", b: moved }, { label: "round 3 ours", b: ok }]);
    expect(notes[0]).toBe("- read-bandwidth probes in this run: 3, 18.2–33.0 GB/s (spread 81.3%)");
    expect(notes[1]).toMatch(/^- \*\*the probes in this run disagree by 81\.3% \(more than 15%\)/);
    expect(probeNotes([30, 36], [], "around the timed steps")).toEqual([
      "- read-bandwidth probes around the timed steps: 2, 30.0–36.0 GB/s (spread 20.0%)",
      expect.stringMatching(/^- \*\*the probes around the timed steps disagree by 20\.0% \(more than 15%\)/),
    ]);
    expect(notes[2]).toMatch(/^- \*\*a figure above 100% of its probe is not valid/);
    expect(notes.slice(3)).toEqual([
      "- not valid: round 1 ours: 134% of 18.2 GB/s; 134% of its probe: it read more than the probe measured",
      "- not valid: round 2 ours: 94% of 25.6 GB/s; its probes disagree by 81.3% (18.2 before, 33.0 after; more than 15%)",
    ]);
  });
});
