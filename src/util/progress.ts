/**
 * Progress reporting: a redrawn bar with ETA on a TTY, plain lines (at most one
 * per ~2 s and at the end) otherwise, so logs stay readable.
 */
export class Progress {
  private readonly start = performance.now();
  private lastPlain = 0;
  private readonly stream: NodeJS.WriteStream;
  private readonly tty: boolean;
  private drawn = false;

  constructor(private readonly label: string, opts: { stream?: NodeJS.WriteStream } = {}) {
    this.stream = opts.stream ?? process.stderr;
    this.tty = this.stream.isTTY === true;
  }

  update(done: number, total: number, note = ""): void {
    const elapsed = (performance.now() - this.start) / 1000;
    const eta = done > 0 ? (elapsed / done) * (total - done) : NaN;
    const pct = total > 0 ? done / total : 1;
    const text = `${this.label} ${done}/${total} ${note} elapsed ${fmt(elapsed)} eta ${Number.isFinite(eta) ? fmt(eta) : "?"}`;
    if (this.tty) {
      const width = 24;
      const fill = Math.round(pct * width);
      this.stream.write(`\r[${"#".repeat(fill)}${".".repeat(width - fill)}] ${text}\x1b[K`);
      this.drawn = true;
    } else if (done === total || performance.now() - this.lastPlain > 2000) {
      this.stream.write(text + "\n");
      this.lastPlain = performance.now();
    }
  }

  done(): void {
    if (this.tty && this.drawn) this.stream.write("\n");
  }
}

function fmt(s: number): string {
  if (s < 60) return `${s.toFixed(1)}s`;
  const m = Math.floor(s / 60);
  return `${m}m${Math.round(s - 60 * m).toString().padStart(2, "0")}s`;
}
