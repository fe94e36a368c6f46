/**
 * One native call per decode step (issue 9): NativeBackend.recordStep runs ONE forward at T = 1
 * (nn/model.ts) with every backend call captured as an op descriptor instead of executed, and
 * returns a plan whose run(pos) executes the whole step in one addon call (native/src/graph.h).
 * nn/ keeps its single forward pass; the plan is a recording of it, not a second one.
 *
 * An op's addresses point into the JS buffers the forward used (the workspace, the KV cache rows,
 * the plan's residual and logits buffers): the plan keeps a reference to every array and weight
 * it captured, so none is collected while it lives. The position-dependent parts are parameters:
 * arrays in a KV cache buffer (the rows a step writes, RoPE'd in place) move by one row per
 * position, and RoPE's and attention's positions are stored relative to the recording's.
 * Every argument was validated when recorded (the eager wrappers' checks); run(pos) only checks
 * that the weights are still alive, and walks them only after a weight was disposed somewhere
 * (noteWeightDisposed): a walk of the ~155 weight objects, cold after the step's weight stream,
 * took ~38 µs per step (eval/reports/step-gap.md).
 */
import { UsageError } from "../util/errors.ts";
import type { KvRows, StepPlan } from "./backend.ts";

/** The addon's plan exports (native/src/addon.cc). */
export interface GraphAddon {
  graphBuild(record: Float64Array, arrays: ArrayBufferView[], handles: unknown[], pos: number): unknown;
  graphRun(graph: unknown, pos: number): void;
}

/** graph.h GraphOpKind. */
export const OpKind = { matmulPacked: 0, matmulParts: 1, attention: 2, attentionF16: 3, swiglu: 4, rmsNorm: 5, rope: 6, add: 7, toF16: 8, toF16Keys: 9, attentionF16Blocks: 10, argmax: 11 } as const;
/** graph.h kMaxParts, kGraphInts, kGraphPtrs, kGraphRecord. */
const MAX_PARTS = 4, INTS = 5, PTRS = 1 + 2 * MAX_PARTS, OP_FIELDS = 4 + INTS + 2 * PTRS;

/** A weight the recorder captured: its native handle, and `disposed` so that a plan can refuse a freed one. */
export interface CapturedWeight { readonly disposed: boolean }

/** Weights disposed so far in this process (a captured weight's dispose() counts itself here). */
let disposals = 0;
export function noteWeightDisposed(): void { disposals++; }

export interface OpArgs {
  /** the weight and its native handle (packed matmuls) */
  w?: { weight: CapturedWeight; handle: unknown };
  f32Acts?: boolean;
  eps?: number;
  ints?: readonly number[];
  /** the arrays at graph.h's pointer slots, null for none (a null bias) */
  ptrs: readonly (ArrayBufferView | null)[];
  /** slots that stay put even in a KV cache buffer (attention reads the whole cache) */
  fixed?: readonly number[];
}

/** Collects the op descriptors of one recorded forward (NativeBackend.recordStep). */
export class StepRecorder {
  readonly #record: number[] = [];
  readonly #arrayIndex = new Map<ArrayBufferView, number>();
  readonly arrays: ArrayBufferView[] = [];
  readonly #weightIndex = new Map<unknown, number>();
  readonly weights: CapturedWeight[] = [];
  readonly handles: unknown[] = [];
  /** why the forward cannot be replayed (an op without a descriptor ran eagerly), or null */
  failed: string | null = null;
  readonly #rowBytes: Map<ArrayBufferLike, number>;

  /** kvRows: every layer's k and v cache arrays; pos: the position the recorded forward runs at. */
  constructor(kvRows: readonly KvRows[], readonly pos: number, rowElements: number) {
    this.#rowBytes = new Map(kvRows.map((a) => [a.buffer, rowElements * a.BYTES_PER_ELEMENT]));
  }

  /** Marks the recording as not replayable (the op runs eagerly; the caller then runs the step eagerly too). */
  fail(reason: string): void { this.failed ??= reason; }

  op(kind: number, a: OpArgs): void {
    const r = new Array<number>(OP_FIELDS).fill(0);
    r[0] = kind;
    r[1] = -1;
    if (a.w !== undefined) {
      let wi = this.#weightIndex.get(a.w.handle);
      if (wi === undefined) {
        wi = this.handles.length;
        this.#weightIndex.set(a.w.handle, wi);
        this.handles.push(a.w.handle);
        this.weights.push(a.w.weight);
      }
      r[1] = wi;
    }
    r[2] = a.f32Acts === true ? 1 : 0;
    r[3] = a.eps ?? 0;
    (a.ints ?? []).forEach((v, i) => { r[4 + i] = v; });
    for (let s = 0; s < PTRS; s++) {
      const arr = a.ptrs[s] ?? null;
      r[4 + INTS + s] = -1;
      if (arr === null) continue;
      let ai = this.#arrayIndex.get(arr);
      if (ai === undefined) {
        ai = this.arrays.length;
        this.#arrayIndex.set(arr, ai);
        this.arrays.push(arr);
      }
      r[4 + INTS + s] = ai;
      r[4 + INTS + PTRS + s] = a.fixed?.includes(s) === true ? 0 : (this.#rowBytes.get(arr.buffer) ?? 0);
    }
    this.#record.push(...r);
  }

  get ops(): number { return this.#record.length / OP_FIELDS; }

  build(addon: GraphAddon): NativeStepPlan {
    return new NativeStepPlan(addon, addon.graphBuild(Float64Array.from(this.#record), this.arrays, this.handles, this.pos), this);
  }
}

/** A recorded decode step: run(pos) executes it at position pos in one addon call. */
export class NativeStepPlan implements StepPlan {
  readonly ops: number;
  /** the captured arrays and weights, referenced so that none is collected while the plan lives */
  readonly #keep: { arrays: ArrayBufferView[]; weights: CapturedWeight[] };
  /** `disposals` when the weights were last found alive (−1: never looked) */
  #aliveAt = -1;

  constructor(private readonly addon: GraphAddon, private readonly graph: unknown, rec: StepRecorder) {
    this.ops = rec.ops;
    this.#keep = { arrays: rec.arrays, weights: rec.weights };
  }

  run(pos: number): void {
    if (!Number.isSafeInteger(pos) || pos < 0) throw new UsageError("StepPlan.run: pos must be an integer ≥ 0", { field: "pos", expected: "integer ≥ 0", found: String(pos) });
    if (this.#aliveAt !== disposals) {
      if (this.#keep.weights.some((w) => w.disposed)) {
        throw new UsageError("StepPlan.run: a weight the plan captured was disposed", { hint: "record a new plan after reloading the model" });
      }
      this.#aliveAt = disposals;
    }
    this.addon.graphRun(this.graph, pos);
  }
}
