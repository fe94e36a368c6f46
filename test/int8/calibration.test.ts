/**
 * LLM.int8() calibration (`quantize-llm int8 --calib-samples N`): the outlier statistics of
 * every linear input, which the pipeline gathers block by block on reused memory (the block's
 * weights, the forward's workspace, the windows advanced in place), must equal the same
 * statistics gathered from the whole model's forward pass (Model.forward with a tap), one
 * calibration window at a time.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, expect, it } from "vitest";
import { linearTensorName, type LinearInput } from "../../src/arch/registry.ts";
import { createNativeBackend } from "../../src/backend/native.ts";
import { loadModel } from "../../src/load/hf-folder.ts";
import { BUNDLED_CALIB_TEXT, BUNDLED_MODEL_DIR } from "../../src/load/paths.ts";
import { OutlierCounter, type OutlierReport } from "../../src/methods/int8-outliers.ts";
import { calibrationWindows } from "../../src/quantize/calibrate.ts";
import { quantizeInt8, type Int8Settings } from "../../src/quantize/int8-pipeline.ts";
import { withoutSwiglu } from "../helpers/without-swiglu.ts";

const work = mkdtempSync(join(tmpdir(), "qllm-int8-calib-"));
afterAll(() => { rmSync(work, { recursive: true, force: true }); });

it("block-by-block outlier statistics equal the whole forward pass's, window by window", async () => {
  const backend = createNativeBackend({ threads: 1 });
  // threshold 0.5 so that every input has outlier features on the bundled model (block 0's attention output peaks at 0.58)
  const settings: Int8Settings = { threshold: 0.5, staticOutliers: false, skipModules: null, calibSamples: 3, calibSeqlen: 24, calibSeed: 4, calibText: BUNDLED_CALIB_TEXT };
  const got = await quantizeInt8({ modelDir: BUNDLED_MODEL_DIR, outDir: join(work, "int8"), settings, backend });

  // The calibration forward uses the exact f64 silu (BlockContext.exactElementwise): so does the reference.
  const { model, tokenizer, cfg } = await loadModel(BUNDLED_MODEL_DIR, withoutSwiglu(backend), { weights: "f32" });
  const windows = calibrationWindows(tokenizer, readFileSync(BUNDLED_CALIB_TEXT, "utf8"), { samples: 3, seqlen: 24, seed: 4 }, BUNDLED_CALIB_TEXT);
  const counters = Array.from({ length: cfg.numLayers }, () => new Map<LinearInput, OutlierCounter>());
  for (const w of windows) {
    model.forward(w, model.newCache(24), {
      logits: "none",
      tap: (ev) => {
        const m = counters[ev.block]!;
        if (!m.has(ev.input)) m.set(ev.input, new OutlierCounter(ev.K, settings.threshold));
        m.get(ev.input)!.add(ev.x, ev.T);
      },
    });
  }
  const a = cfg.arch;
  const want: OutlierReport[] = counters.flatMap((m, b) => [...m].map(([input, c]) =>
    c.summary(b, input, a.linears.filter((l) => l.input === input).map((l) => linearTensorName(a, b, l).replace(/\.weight$/, "")))));
  expect(want.length).toBe(4 * cfg.numLayers);
  expect(want.every((r) => r.outlierFeatures > 0)).toBe(true); // the comparison has something to compare
  expect(got.outliers).toEqual(want);
});
