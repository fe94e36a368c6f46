/**
 * Calibration statistics of LLM.int8()'s outlier features: for each input of a linear
 * layer, how many input features ever reach |x| ≥ threshold, and on what share of tokens.
 * With `--static-outliers` the features that crossed during calibration become the fixed
 * outlier columns of every linear reading that input (no per-batch scan at run time).
 */
import type { OutlierReport } from "../tensor/int8.ts";

export type { OutlierReport };

export class OutlierCounter {
  /** [K] tokens on which feature k had |x| ≥ threshold */
  readonly hits: Float64Array;
  /** [K] max |x| seen per feature */
  readonly absMax: Float32Array;
  tokens = 0;
  /** tokens with at least one outlier feature */
  tokensWithAny = 0;

  constructor(readonly K: number, readonly threshold: number) {
    this.hits = new Float64Array(K);
    this.absMax = new Float32Array(K);
  }

  /** x [T, K] */
  add(x: Float32Array, T: number): void {
    const { K, threshold: t } = this;
    for (let r = 0; r < T; r++) {
      let any = false;
      for (let k = 0; k < K; k++) {
        const a = Math.abs(x[r * K + k]!);
        if (a > this.absMax[k]!) this.absMax[k] = a;
        if (t > 0 && a >= t) { this.hits[k]!++; any = true; }
      }
      if (any) this.tokensWithAny++;
    }
    this.tokens += T;
  }

  /** Features that crossed the threshold at least once, ascending. */
  columns(): Int32Array {
    const out: number[] = [];
    for (let k = 0; k < this.K; k++) if (this.hits[k]! > 0) out.push(k);
    return Int32Array.from(out);
  }

  summary(block: number, input: OutlierReport["input"], layers: readonly string[], top = 8): OutlierReport {
    const cols = this.columns();
    const shares = Array.from(cols, (k) => ({ feature: k, tokenShare: this.hits[k]! / Math.max(1, this.tokens), absMax: this.absMax[k]! }));
    shares.sort((a, b) => b.tokenShare - a.tokenShare || a.feature - b.feature);
    let maxAbs = 0;
    for (let k = 0; k < this.K; k++) maxAbs = Math.max(maxAbs, this.absMax[k]!);
    return {
      block, input, layers: [...layers], inFeatures: this.K, threshold: this.threshold, tokens: this.tokens,
      outlierFeatures: cols.length,
      columns: Array.from(cols),
      featureShare: cols.length / this.K,
      tokenShareAny: this.tokensWithAny / Math.max(1, this.tokens),
      meanTokenShare: shares.length ? shares.reduce((s, f) => s + f.tokenShare, 0) / shares.length : 0,
      maxAbs,
      top: shares.slice(0, top),
    };
  }
}

/** A fixed-width table of the report, for the CLI and eval/reports. */
export function formatOutlierTable(rows: readonly OutlierReport[]): string {
  const head = "| block | input | features ≥ t | share of features | share of tokens (any) | mean token share | max abs | top features (token share) |";
  const sep = "|---|---|---|---|---|---|---|---|";
  const pct = (v: number): string => `${(100 * v).toFixed(2)}%`;
  const lines = rows.map((r) =>
    `| ${r.block} | ${r.input} | ${r.outlierFeatures} / ${r.inFeatures} | ${pct(r.featureShare)} | ${pct(r.tokenShareAny)} | ${pct(r.meanTokenShare)} | ${r.maxAbs.toFixed(2)} | ` +
    `${r.top.slice(0, 4).map((f) => `${f.feature} (${pct(f.tokenShare)})`).join(", ") || "—"} |`);
  return [head, sep, ...lines].join("\n");
}
