/**
 * A model with TinyLlama-1.1B's shapes and random weights, for memory, load-time and
 * speed measurements (hidden 2048, 22 layers, 32 heads / 4 KV heads, ffn 5632, vocab
 * 32000; the bundled byte-level BPE tokenizer, ids ≥ 4096 have no token). Written with
 * our own writers only:
 *
 *   <out>/bf16/              plain HF folder, BF16 (streamed, seeded: same bytes every run)
 *   <out>/gptq-w4g128/       `rtn` 4-bit g128 symmetric HF-GPTQ (v1) of those weights
 *   <out>/q4_0.gguf          the same weights as a Q4_0 GGUF (ggml's reference Q4_0
 *                            quantizer; token_embd Q4_0, output Q8_0)
 *
 *   npx tsx eval/gen-tinyllama.ts [--out /tmp/qllm-tinyllama] [--layers 22] [--vocab 32000] [--only bf16]
 *
 * Existing outputs are kept (delete the folder to regenerate).
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

const { values } = parseArgs({ options: { out: { type: "string" }, layers: { type: "string" }, vocab: { type: "string" }, only: { type: "string" } }, strict: true });
const OUT = resolve(values.out ?? "/tmp/qllm-tinyllama");
const LAYERS = Number(values.layers ?? 22), VOCAB = Number(values.vocab ?? 32000);

export const TINYLLAMA_CONFIG = {
  architectures: ["LlamaForCausalLM"], model_type: "llama", hidden_size: 2048, intermediate_size: 5632,
  num_attention_heads: 32, num_key_value_heads: 4, num_hidden_layers: LAYERS, max_position_embeddings: 2048,
  rope_theta: 10000.0, rms_norm_eps: 1e-5, vocab_size: VOCAB, tie_word_embeddings: false, hidden_act: "silu",
  bos_token_id: 0, eos_token_id: 0, torch_dtype: "bfloat16",
};

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
  const tensors: { name: string; dtype: "BF16"; shape: number[]; data: () => Uint8Array }[] = [];
  let seed = 1;
  const add = (name: string, shape: number[], std: number, mean = 0): void => {
    const s = seed++;
    tensors.push({ name, dtype: "BF16", shape, data: () => fromF32("BF16", randomTensor(shape.reduce((p, d) => p * d, 1), std, s, mean)) });
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
const bf16 = join(OUT, "bf16"), gptq = join(OUT, "gptq-w4g128"), gguf = join(OUT, "q4_0.gguf");
if (!existsSync(join(bf16, "config.json"))) await writeBf16(bf16);
stamp("bf16", bf16);
if (values.only === "bf16") process.exit(0); // eval/bench-int8.ts needs only the BF16 folder
if (!existsSync(join(gptq, "config.json"))) {
  await quantizeModel({
    modelDir: bf16, outDir: gptq, backend: selectBackend(), overwrite: true,
    settings: {
      method: "rtn", bits: 4, groupSize: 128, sym: true, actOrder: false, staticGroups: false, damp: 0.01, blockSize: 128,
      trueSequential: true, format: "gptq", calibSamples: 0, calibSeqlen: 64, calibSeed: 0, calibText: BUNDLED_CALIB_TEXT,
    },
  });
}
stamp("gptq", gptq);
if (!existsSync(gguf)) await exportQuantizedGguf(bf16, gguf, { type: "q4_0", embedType: "q4_0", headType: "q8_0" });
stamp("gguf", gguf);
