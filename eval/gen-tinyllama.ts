/**
 * A model with a real model's shapes and random weights, for memory, load-time and speed
 * measurements; the shapes come from a table (SHAPES: TinyLlama-1.1B by default, Llama-2-7B
 * with `--shape llama2-7b`); `--layers` / `--vocab` override the depth and vocabulary. The
 * bundled byte-level BPE tokenizer goes with it (ids ≥ 4096 have no token). Written with
 * our own writers only:
 *
 *   <out>/bf16/ (or f16/)    plain HF folder, BF16 or F16 (streamed, seeded: same bytes every run)
 *   <out>/gptq-w4g128/       `rtn` 4-bit g128 symmetric HF-GPTQ (v1) of those weights
 *   <out>/gptq-w4g128-lm-head/  the same with `--quantize-lm-head` (lm_head RTN 8-bit sym g32, GPTQModel's
 *                            default grid; the block linears are byte-identical to gptq-w4g128/)
 *   <out>/q4_0.gguf          the same weights as a Q4_0 GGUF (ggml's reference Q4_0
 *                            quantizer; token_embd Q4_0, output Q8_0)
 *
 *   npx tsx eval/gen-tinyllama.ts [--shape tinyllama|llama2-7b] [--out /tmp/qllm-tinyllama]
 *                                 [--layers N] [--vocab N] [--dtype bf16|f16] [--only bf16]
 *
 * `--only bf16` writes only the plain folder (in --dtype); `--only lm-head` only adds gptq-w4g128-lm-head/. Existing outputs are kept (delete
 * the folder to regenerate).
 */
import { copyFileSync, existsSync, mkdirSync, statSync, writeFileSync, readdirSync } from "node:fs";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { parseModelConfig } from "../src/arch/config.ts";
import { linearTensorName } from "../src/arch/registry.ts";
import { exportQuantizedGguf } from "../src/export/gguf-quant.ts";
import { BUNDLED_CALIB_TEXT, BUNDLED_MODEL_DIR, quantizeModel, selectBackend, writeShardedSafetensors } from "../src/index.ts";
import { mulberry32 } from "../src/util/random.ts";
import { linearShapes } from "../src/nn/weights.ts";
import { fromF32 } from "../src/tensor/dtype.ts";

/** The shapes of each model we imitate (their config.json values); everything else is common. */
export const SHAPES = {
  tinyllama: { hidden_size: 2048, intermediate_size: 5632, num_attention_heads: 32, num_key_value_heads: 4, num_hidden_layers: 22, vocab_size: 32000, max_position_embeddings: 2048 },
  "llama2-7b": { hidden_size: 4096, intermediate_size: 11008, num_attention_heads: 32, num_key_value_heads: 32, num_hidden_layers: 32, vocab_size: 32000, max_position_embeddings: 4096 },
} as const;
export type ShapeName = keyof typeof SHAPES;

/** config.json of a generated model: `shape` from SHAPES, depth/vocab/dtype overridable. */
export function generatedConfig(shape: ShapeName, o: { layers?: number; vocab?: number; dtype?: "bf16" | "f16" } = {}): Record<string, unknown> {
  const s = SHAPES[shape];
  return {
    architectures: ["LlamaForCausalLM"], model_type: "llama", ...s,
    num_hidden_layers: o.layers ?? s.num_hidden_layers, vocab_size: o.vocab ?? s.vocab_size,
    rope_theta: 10000.0, rms_norm_eps: 1e-5, tie_word_embeddings: false, hidden_act: "silu",
    bos_token_id: 0, eos_token_id: 0, torch_dtype: o.dtype === "f16" ? "float16" : "bfloat16",
  };
}

const isMain = process.argv[1] !== undefined && resolve(process.argv[1]) === resolve(new URL(import.meta.url).pathname);
const { values } = isMain
  ? parseArgs({ options: { shape: { type: "string" }, out: { type: "string" }, layers: { type: "string" }, vocab: { type: "string" }, dtype: { type: "string" }, only: { type: "string" } }, strict: true })
  : { values: {} as Record<string, string | undefined> };
const SHAPE = (values.shape ?? "tinyllama") as ShapeName;
if (!(SHAPE in SHAPES)) throw new Error(`--shape ${SHAPE}: expected one of ${Object.keys(SHAPES).join(", ")}`);
const DTYPE = (values.dtype ?? "bf16") as "bf16" | "f16";
if (DTYPE !== "bf16" && DTYPE !== "f16") throw new Error(`--dtype ${String(DTYPE)}: expected bf16 or f16`);
const OUT = resolve(values.out ?? "/tmp/qllm-tinyllama");
export const TINYLLAMA_CONFIG = generatedConfig(SHAPE, {
  ...(values.layers !== undefined ? { layers: Number(values.layers) } : {}), ...(values.vocab !== undefined ? { vocab: Number(values.vocab) } : {}), dtype: DTYPE,
});
const STORE = DTYPE === "f16" ? "F16" : "BF16";

/** Uniform values of standard deviation `std` around `mean` (seeded per tensor). */
function randomTensor(n: number, std: number, seed: number, mean = 0): Float32Array {
  const rand = mulberry32(seed), a = std * Math.sqrt(3);
  const x = new Float32Array(n);
  for (let i = 0; i < n; i++) x[i] = mean + a * (2 * rand() - 1);
  return x;
}

async function writeBf16(dir: string): Promise<void> {
  const cfg = parseModelConfig(TINYLLAMA_CONFIG);
  const H = cfg.hiddenSize, V = cfg.vocabSize, a = cfg.arch;
  const tensors: { name: string; dtype: "BF16" | "F16"; shape: number[]; data: () => Uint8Array }[] = [];
  let seed = 1;
  const add = (name: string, shape: number[], std: number, mean = 0): void => {
    const s = seed++;
    tensors.push({ name, dtype: STORE, shape, data: () => fromF32(STORE, randomTensor(shape.reduce((p, d) => p * d, 1), std, s, mean)) });
  };
  add(a.embed.hf, [V, H], 0.02);
  const shapes = linearShapes(cfg);
  for (let b = 0; b < cfg.numLayers; b++) {
    const p = a.blockPrefix(b);
    add(`${p}.${a.attnNorm.hf}.weight`, [H], 0.05, 1);
    for (const spec of a.linears) { const [N, K] = shapes[spec.name]; add(linearTensorName(a, b, spec), [N, K], 1 / Math.sqrt(K)); }
    add(`${p}.${a.mlpNorm.hf}.weight`, [H], 0.05, 1);
  }
  add(a.finalNorm.hf, [H], 0.05, 1);
  add(a.lmHead.hf, [V, H], 1 / Math.sqrt(H));
  mkdirSync(dir, { recursive: true });
  await writeShardedSafetensors(dir, tensors, { maxShardBytes: 4 * 2 ** 30 });
  writeFileSync(join(dir, "config.json"), JSON.stringify(TINYLLAMA_CONFIG, null, 2));
  for (const f of ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json"]) {
    if (existsSync(join(BUNDLED_MODEL_DIR, f))) copyFileSync(join(BUNDLED_MODEL_DIR, f), join(dir, f));
  }
}

function size(path: string): number {
  const st = statSync(path);
  return st.isDirectory() ? readdirSync(path).reduce((s, f) => s + size(join(path, f)), 0) : st.size;
}

const t0 = performance.now();
const stamp = (what: string, path: string): void => {
  process.stdout.write(`${what}: ${path} (${(size(path) / 2 ** 20).toFixed(1)} MiB) at ${((performance.now() - t0) / 1000).toFixed(1)} s\n`);
};
if (isMain) { // imported: SHAPES / generatedConfig only
  const bf16 = join(OUT, DTYPE), gptq = join(OUT, "gptq-w4g128"), gptqHead = join(OUT, "gptq-w4g128-lm-head"), gguf = join(OUT, "q4_0.gguf");
  if (!existsSync(join(bf16, "config.json"))) await writeBf16(bf16);
  stamp("bf16", bf16);
  if (values.only === "bf16") process.exit(0); // eval/bench-int8.ts needs only the BF16 folder
  const rtn = {
    method: "rtn", bits: 4, groupSize: 128, sym: true, actOrder: false, staticGroups: false, damp: 0.01, blockSize: 128,
    trueSequential: true, format: "gptq", calibSamples: 0, calibSeqlen: 64, calibSeed: 0, calibText: BUNDLED_CALIB_TEXT,
  } as const;
  if (values.only !== "lm-head" && !existsSync(join(gptq, "config.json"))) {
    await quantizeModel({ modelDir: bf16, outDir: gptq, backend: selectBackend(), overwrite: true, settings: rtn });
  }
  if (values.only !== "lm-head") stamp("gptq", gptq);
  if (!existsSync(join(gptqHead, "config.json"))) {
    await quantizeModel({ modelDir: bf16, outDir: gptqHead, backend: selectBackend(), overwrite: true, settings: { ...rtn, lmHead: { bits: 8, groupSize: 32 } } });
  }
  stamp("gptq, 8-bit lm_head", gptqHead);
  if (values.only === "lm-head") process.exit(0);
  if (!existsSync(gguf)) await exportQuantizedGguf(bf16, gguf, { type: "q4_0", embedType: "q4_0", headType: "q8_0" });
  stamp("gguf", gguf);
}
