/**
 * Memory: quantize a generated model with ≥ 24 blocks and > 2 GB of weights and
 * check that peak RSS stays below 2 blocks + calibration activations + 256 MB,
 * i.e. that it does not grow with the number of layers.
 *
 *   npx tsx eval/memory-gptq.ts [--blocks 28] [--threads 2] [--write]
 *
 * The model (random f32 weights, Llama shapes: hidden 1280, ffn 3456, 10 heads,
 * 5 KV heads) is streamed to disk one tensor at a time, then `quantize-llm gptq`
 * runs in a child process whose peak RSS (getrusage maxrss) it prints.
 */
import { execSync, spawnSync } from "node:child_process";
import { copyFileSync, mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { BUNDLED_CALIB_TEXT, BUNDLED_MODEL_DIR, PACKAGE_ROOT } from "../src/load/paths.ts";
import { SafetensorsWriter } from "../src/io/safetensors.ts";
import { mulberry32 } from "../src/util/random.ts";

const { values } = parseArgs({ options: { blocks: { type: "string" }, threads: { type: "string" }, write: { type: "boolean" }, keep: { type: "boolean" } } });
const L = Number(values.blocks ?? 28);
const threads = values.threads ?? "2";
const H = 1280, I = 3456, heads = 10, kv = 5, hd = H / heads, V = 4096;
const samples = 16, seqlen = 256;

const dir = mkdtempSync(join(tmpdir(), "qllm-mem-"));
const model = join(dir, "model");
execSync(`mkdir -p ${model}`);
writeFileSync(join(model, "config.json"), JSON.stringify({
  model_type: "llama", architectures: ["LlamaForCausalLM"], hidden_size: H, intermediate_size: I, num_hidden_layers: L,
  num_attention_heads: heads, num_key_value_heads: kv, head_dim: hd, vocab_size: V, max_position_embeddings: 512,
  rope_theta: 10000, rms_norm_eps: 1e-5, tie_word_embeddings: false, torch_dtype: "float32", bos_token_id: 0, eos_token_id: 0,
}, null, 1));
for (const f of ["tokenizer.json", "tokenizer_config.json"]) copyFileSync(join(BUNDLED_MODEL_DIR, f), join(model, f));

const shapes: Array<[string, number[], number]> = [["model.embed_tokens.weight", [V, H], 1]];
for (let b = 0; b < L; b++) {
  const p = `model.layers.${b}`;
  shapes.push([`${p}.input_layernorm.weight`, [H], 0], [`${p}.post_attention_layernorm.weight`, [H], 0]);
  for (const [n, N, K] of [["self_attn.q_proj", heads * hd, H], ["self_attn.k_proj", kv * hd, H], ["self_attn.v_proj", kv * hd, H],
    ["self_attn.o_proj", H, heads * hd], ["mlp.gate_proj", I, H], ["mlp.up_proj", I, H], ["mlp.down_proj", H, I]] as const) {
    shapes.push([`${p}.${n}.weight`, [N, K], 1 / Math.sqrt(K)]);
  }
}
shapes.push(["model.norm.weight", [H], 0], ["lm_head.weight", [V, H], 1 / Math.sqrt(H)]);

const t0 = performance.now();
const w = await SafetensorsWriter.create(join(model, "model.safetensors"), shapes.map(([name, shape]) => ({ name, dtype: "F32" as const, shape })));
const rand = mulberry32(1);
for (const [name, shape, std] of shapes) {
  const n = shape.reduce((a, b) => a * b, 1);
  const x = new Float32Array(n);
  // uniform with the given std (norm weights: 1); the distribution does not matter for memory
  for (let i = 0; i < n; i++) x[i] = std === 0 ? 1 : (rand() - 0.5) * std * 3.4641;
  await w.write(name, new Uint8Array(x.buffer));
}
await w.finish();
const bytes = statSync(join(model, "model.safetensors")).size;
const blockBytes = (heads * hd * H * 2 + kv * hd * H * 2 + 3 * H * I + 2 * H) * 4; // q, o + k, v + gate, up, down + norms
const actBytes = samples * seqlen * H * 4;
const budget = 2 * blockBytes + actBytes + 256 * 2 ** 20;
console.log(`model: ${L} blocks, ${(bytes / 2 ** 30).toFixed(2)} GiB of f32 weights, one block ${(blockBytes / 2 ** 20).toFixed(0)} MiB (written in ${((performance.now() - t0) / 1000).toFixed(0)} s)`);

const out = join(dir, "out");
const t1 = performance.now();
const r = spawnSync(process.execPath, [join(PACKAGE_ROOT, "bin", "quantize-llm.js"), "gptq", model, "-o", out, "--bits", "4", "--group-size", "128",
  "--calib-text", BUNDLED_CALIB_TEXT, "--calib-samples", String(samples), "--calib-seqlen", String(seqlen), "--no-eval", "--threads", threads, "--json"],
  { encoding: "utf8", maxBuffer: 64 * 2 ** 20 });
if (r.status !== 0) { console.error(r.stderr); process.exit(1); }
const summary = JSON.parse(r.stdout.trim().split("\n").at(-1)!) as { peakRssMB: number; seconds: number };
const peak = summary.peakRssMB * 2 ** 20;
let commit = "unknown";
try { commit = execSync("git rev-parse --short HEAD", { stdio: ["ignore", "pipe", "ignore"] }).toString().trim(); } catch { /* not a checkout */ }
const md = [
  "# Peak memory of `quantize-llm gptq` on a large generated model",
  "",
  `Produced by \`npx tsx eval/memory-gptq.ts --blocks ${L} --threads ${threads}${values.write ? " --write" : ""}\` on ${new Date().toISOString().slice(0, 10)}, commit ${commit}.`,
  "",
  "| quantity | value |",
  "|---|---:|",
  `| blocks | ${L} |`,
  `| weights on disk (f32) | ${(bytes / 2 ** 30).toFixed(2)} GiB |`,
  `| one block in f32 | ${(blockBytes / 2 ** 20).toFixed(0)} MiB |`,
  `| calibration activations (${samples} × ${seqlen} × ${H} f32) | ${(actBytes / 2 ** 20).toFixed(0)} MiB |`,
  `| budget: 2 blocks + activations + 256 MiB | ${(budget / 2 ** 20).toFixed(0)} MiB |`,
  `| **peak RSS of the quantization process** | **${summary.peakRssMB} MiB** |`,
  `| wall time | ${((performance.now() - t1) / 1000).toFixed(0)} s |`,
  "",
  peak < budget ? "Peak RSS is within the budget." : "PEAK RSS EXCEEDS THE BUDGET.",
  "",
].join("\n");
console.log(md);
if (values.write) writeFileSync(join("eval", "reports", "memory-gptq.md"), md);
if (!values.keep) rmSync(dir, { recursive: true, force: true });
process.exitCode = peak < budget ? 0 : 1;
