/**
 * Architecture families as DATA: which tensors form a block, their HF and GGUF
 * names, the GPTQ true-sequential groups and the AWQ scaling groups. Adding a
 * family = adding one entry to ARCHS.
 */

/** The linear layers of a Llama-family decoder block. */
export type LinearName = "q" | "k" | "v" | "o" | "gate" | "up" | "down";
export const LINEAR_NAMES: readonly LinearName[] = ["q", "k", "v", "o", "gate", "up", "down"];

/** What a linear layer reads: the tap point its input comes from. */
export type LinearInput = "attn_norm" | "attn_out" | "mlp_norm" | "mlp_act";

export interface LinearSpec {
  name: LinearName;
  /** HF module path inside a block, e.g. "self_attn.q_proj" (tensor = `${prefix}.${hf}.weight`). */
  hf: string;
  /** GGUF tensor stem inside a block, e.g. "attn_q" (tensor = `blk.N.${gguf}.weight`). */
  gguf: string;
  /** Which activation the layer reads (layers with the same input share a Hessian). */
  input: LinearInput;
}

export interface NormSpec { hf: string; gguf: string }

/**
 * The op an AWQ scale s is folded into (ALGORITHMS.md §3.3): a norm weight (`/= s`)
 * or a linear layer's OUTPUT rows (`/= s`, bias too).
 */
export type AwqPrev = "attnNorm" | "mlpNorm" | LinearName;

/**
 * The module whose output the AWQ scale search compares (ALGORITHMS.md §3.1):
 *   attention: o(attention(rope(q(x)), rope(k(x)), v(x)))  — AutoAWQ `module2inspect=self_attn`
 *   mlp:       down(silu(gate(x)) · up(x))                  — AutoAWQ `module2inspect=mlp`
 *   layer:     the single scaled linear itself
 */
export type AwqInspect = "attention" | "mlp" | "layer";

/** One AWQ scaling group: `layers` read the output of `prev` and share one scale vector. */
export interface AwqScalingGroup {
  prev: AwqPrev;
  /** Scaled together: their input columns are multiplied by s. All read the same input. */
  layers: readonly LinearName[];
  inspect: AwqInspect;
  /**
   * Only when the previous linear's output rows map 1:1 onto the layers' input columns
   * (v_proj → o_proj needs numKvHeads = numHeads; AutoAWQ `llama.py` skips it under GQA).
   */
  onlyIfFoldable?: boolean;
}

export interface Arch {
  /** Family key. */
  family: "llama" | "qwen2";
  /** HF `model_type` values handled by this family. */
  modelTypes: readonly string[];
  /** `general.architecture` in GGUF. */
  ggufArch: "llama" | "qwen2";
  /** llama.cpp's "llama" arch uses interleaved RoPE: HF q/k rows must be permuted on export (FORMATS.md §4). */
  ggufPermuteQK: boolean;
  /** Config key of a sliding window that we ignore with a warning (Mistral, Qwen2). */
  slidingWindowField?: string;
  /** q/k/v always carry biases (Qwen2). */
  qkvBias: boolean;
  /** Default of `tie_word_embeddings` when config.json omits it (transformers' per-class default). */
  tieDefault: boolean;
  /** Prefix of block i's tensors. */
  blockPrefix: (i: number) => string;
  embed: NormSpec;
  finalNorm: NormSpec;
  lmHead: NormSpec;
  attnNorm: NormSpec;
  mlpNorm: NormSpec;
  linears: readonly LinearSpec[];
  /** GPTQ true-sequential order (ALGORITHMS.md §2.9). */
  sequentialGroups: readonly (readonly LinearName[])[];
  /** AWQ scaling groups in block order (AutoAWQ `get_layers_for_scaling`; ALGORITHMS.md §3.1). */
  awqGroups: readonly AwqScalingGroup[];
}

const LLAMA_LINEARS: readonly LinearSpec[] = [
  { name: "q", hf: "self_attn.q_proj", gguf: "attn_q", input: "attn_norm" },
  { name: "k", hf: "self_attn.k_proj", gguf: "attn_k", input: "attn_norm" },
  { name: "v", hf: "self_attn.v_proj", gguf: "attn_v", input: "attn_norm" },
  { name: "o", hf: "self_attn.o_proj", gguf: "attn_output", input: "attn_out" },
  { name: "gate", hf: "mlp.gate_proj", gguf: "ffn_gate", input: "mlp_norm" },
  { name: "up", hf: "mlp.up_proj", gguf: "ffn_up", input: "mlp_norm" },
  { name: "down", hf: "mlp.down_proj", gguf: "ffn_down", input: "mlp_act" },
];

const LLAMA_COMMON = {
  blockPrefix: (i: number) => `model.layers.${i}`,
  embed: { hf: "model.embed_tokens.weight", gguf: "token_embd.weight" },
  finalNorm: { hf: "model.norm.weight", gguf: "output_norm.weight" },
  lmHead: { hf: "lm_head.weight", gguf: "output.weight" },
  attnNorm: { hf: "input_layernorm", gguf: "attn_norm" },
  mlpNorm: { hf: "post_attention_layernorm", gguf: "ffn_norm" },
  linears: LLAMA_LINEARS,
  sequentialGroups: [["k", "v", "q"], ["o"], ["up", "gate"], ["down"]],
  awqGroups: [
    { prev: "attnNorm", layers: ["q", "k", "v"], inspect: "attention" },
    { prev: "v", layers: ["o"], inspect: "layer", onlyIfFoldable: true },
    { prev: "mlpNorm", layers: ["gate", "up"], inspect: "mlp" },
    { prev: "up", layers: ["down"], inspect: "layer" },
  ],
} as const;

export const ARCHS: Readonly<Record<Arch["family"], Arch>> = {
  llama: {
    family: "llama",
    modelTypes: ["llama", "mistral"],
    ggufArch: "llama",
    ggufPermuteQK: true,
    slidingWindowField: "sliding_window",
    qkvBias: false,
    tieDefault: false,
    ...LLAMA_COMMON,
  },
  qwen2: {
    family: "qwen2",
    modelTypes: ["qwen2"],
    ggufArch: "qwen2",
    ggufPermuteQK: false,
    slidingWindowField: "sliding_window",
    qkvBias: true,
    tieDefault: false,
    ...LLAMA_COMMON,
  },
};

export function archFor(modelType: string): Arch | undefined {
  return Object.values(ARCHS).find((a) => a.modelTypes.includes(modelType));
}

/** HF tensor name of a block linear's weight (or bias). */
export function linearTensorName(arch: Arch, block: number, l: LinearSpec, part: "weight" | "bias" = "weight"): string {
  return `${arch.blockPrefix(block)}.${l.hf}.${part}`;
}
