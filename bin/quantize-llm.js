#!/usr/bin/env node
// Entry point of the `quantize-llm` command: runs the TypeScript CLI through tsx's loader.
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { register } from "tsx/esm/api";

// Expose V8's gc() so the quantization pipeline can free each finished layer's arrays
// promptly: peak memory must not depend on how lazily V8 collects large typed arrays.
setFlagsFromString("--expose-gc");
globalThis.gc ??= runInNewContext("gc");

register();
const { main } = await import("../src/cli/main.ts");
process.exitCode = await main(process.argv.slice(2));
