/**
 * quantize-llm public API: what users import (the package's entry point). The tests and
 * the eval/ programs also import internal modules (kernels, byte layouts, the pipeline's
 * parts) on purpose, because those are what they test and measure; the README's library
 * example imports only this file (test/cli/readme-example.test.ts runs it).
 */
export { parseModelConfig, type ModelConfig, type RopeScaling } from "./arch/config.ts";
export { ARCHS, archFor, LINEAR_NAMES, type Arch, type LinearName, type LinearSpec } from "./arch/registry.ts";
export type { Backend, AttentionShape } from "./backend/backend.ts";
export { refBackend } from "./backend/ref.ts";
export { selectBackend, defaultThreads } from "./backend/select.ts";
export { loadHfModel, readModelConfig, type LoadedModel } from "./load/hf-folder.ts";
export { BUNDLED_MODEL_DIR, BUNDLED_EVAL_TEXT, BUNDLED_CALIB_TEXT } from "./load/paths.ts";
export { Model, KvCache, type ForwardOptions } from "./nn/model.ts";
export type { Tap } from "./nn/block.ts";
export { generate, type GenerateOptions } from "./nn/generate.ts";
export { loadModelWeights, type ModelWeights, type BlockWeights, type Linear, type TensorSource } from "./nn/weights.ts";
export { perplexity, PROTOCOLS, type Protocol, type PerplexityResult } from "./metrics/perplexity.ts";
export { loadTokenizer, TextTokenizer, type ChatMessage } from "./tokenizer/tokenizer.ts";
export { QuantizeLlmError, FormatError, ConfigError, UsageError, DependencyError } from "./util/errors.ts";
export { gptqQuantizeLinear, GROUP_GRIDS, type GptqOptions, type GptqResult, type GroupGrid } from "./methods/gptq.ts";
export { rtnQuantizeLinear, type RtnOptions } from "./methods/rtn.ts";
export { dequantize, type QuantizedLinear } from "./tensor/quantized.ts";
export { quantizeModel, type QuantizeJob, type QuantizeResult, type PipelineEvent } from "./quantize/pipeline.ts";
export type { QuantSettings, Method } from "./quantize/settings.ts";
export { packGptq, unpackGptq } from "./pack/hf-gptq.ts";
export { exportGguf } from "./export/gguf.ts";
export { openGguf, GgufWriter, writeGguf, kv, GGML_TYPES } from "./io/gguf.ts";
export { openCheckpoint, writeShardedSafetensors, Checkpoint } from "./io/checkpoint.ts";
export { openSafetensors, writeSafetensors, SafetensorsWriter } from "./io/safetensors.ts";
