/** `quantize-llm serve [model]`: an OpenAI-compatible HTTP server on our engine (src/serve/). */
import { basename } from "node:path";
import { selectBackend } from "../backend/select.ts";
import { resolveModelArg } from "../load/paths.ts";
import { DEFAULT_KV } from "../generate/engine.ts";
import { startServer } from "../serve/server.ts";
import { UsageError } from "../util/errors.ts";
import { choiceFlag, intFlag, onePositional, parseFlags } from "./args.ts";
import type { Command } from "./command.ts";
import { DEVICE_USAGE, deviceFlag, KV_USAGE, kvFlag, loadOnDevice, WEIGHTS16_USAGE, weights16Flag } from "./device.ts";

const usage = `usage: quantize-llm serve [model] [options]

Serve a model (HF, HF-GPTQ or AWQ folder, or .gguf) over an OpenAI-compatible HTTP API:
POST /v1/chat/completions, POST /v1/completions, GET /v1/models, GET /health.
With no model, serves the bundled model.

  --host H              address to listen on (default 127.0.0.1: this machine only)
  --port N              (default 8080; 0 = any free port)
  --api-key KEY         require "Authorization: Bearer KEY" (default: the QLLM_API_KEY
                        environment variable, else no key)
  --parallel N          requests generated at once, each with its own KV cache (default 1)
  --queue N             requests that may wait for a slot; one more gets 429 (default 16)
  --timeout S           per-request limit in seconds, queueing included (default 600)
  --max-body BYTES      largest request body (default 1048576); larger gets 413
  --model-id ID         the id clients pass as "model" (default: the model folder's name)
${DEVICE_USAGE}${WEIGHTS16_USAGE}${KV_USAGE}  --threads N, --backend auto|native|ref
`;

export const serveCommand: Command = {
  name: "serve",
  summary: "OpenAI-compatible HTTP server (/v1/chat/completions, /v1/completions, /v1/models)",
  usage,
  async run(argv) {
    const { values, positionals } = parseFlags("serve", argv, {
      host: { type: "string" }, port: { type: "string" }, "api-key": { type: "string" }, parallel: { type: "string" },
      queue: { type: "string" }, timeout: { type: "string" }, "max-body": { type: "string" }, "model-id": { type: "string" },
      threads: { type: "string" }, backend: { type: "string" }, device: { type: "string" }, weights16: { type: "string" }, kv: { type: "string" }, help: { type: "boolean", short: "h" },
    });
    if (values.help) { process.stdout.write(usage); return 0; }
    const path = resolveModelArg(onePositional("serve", positionals));
    const port = intFlag("port", values.port, 8080, 0);
    if (port > 65535) throw new UsageError("invalid value for --port", { field: "--port", expected: "an integer in [0, 65535]", found: String(port) });
    const backend = selectBackend({
      backend: choiceFlag("backend", values.backend, ["auto", "native", "ref"] as const, "auto"),
      ...(values.threads !== undefined ? { threads: intFlag("threads", values.threads, 1) } : {}),
    });
    const apiKey = values["api-key"] ?? (process.env["QLLM_API_KEY"] || undefined);
    const device = deviceFlag(values.device);
    const loaded = await loadOnDevice(path, device, backend, { weights16: weights16Flag(values.weights16) });
    const { tokenizer } = loaded;
    const kv = kvFlag(values.kv) ?? DEFAULT_KV;
    const kernels = `${loaded.kernels}; KV cache ${kv}`;
    const model = loaded.device === "gpu" ? loaded.gpu : loaded.model;
    const modelId = values["model-id"] ?? basename(path).replace(/\.gguf$/i, "");
    const parallel = intFlag("parallel", values.parallel, 1);
    const maxQueue = intFlag("queue", values.queue, 16, 0);
    let server;
    try {
      server = await startServer({
        model, tokenizer, modelId, kv, host: values.host ?? "127.0.0.1", port, parallel, maxQueue,
        timeoutMs: intFlag("timeout", values.timeout, 600) * 1000, bodyLimit: intFlag("max-body", values["max-body"], 1 << 20),
        ...(apiKey !== undefined ? { apiKey } : {}), log: (l) => process.stderr.write(`${new Date().toISOString()} ${l}\n`),
      });
    } catch (e) {
      if (loaded.device === "gpu") loaded.gpu.destroy();
      const se = e as NodeJS.ErrnoException;
      if (se.code === "EADDRINUSE" || se.code === "EACCES" || se.code === "EADDRNOTAVAIL") {
        throw new UsageError(`cannot listen on ${values.host ?? "127.0.0.1"}:${port}`, {
          field: "--host/--port", found: `${se.code}: ${se.message}`, hint: "pick another --port (0 = any free one) or check --host",
        });
      }
      throw e;
    }
    process.stderr.write(`serving ${modelId} (${path}) on ${server.url} — kernel path: ${kernels}; ` +
      `${parallel} slot${parallel === 1 ? "" : "s"}, queue ${maxQueue}${apiKey !== undefined ? ", API key required" : ""}\n` +
      `  try: curl ${server.url}/v1/chat/completions -H 'content-type: application/json' -d '{"model":"${modelId}","messages":[{"role":"user","content":"Hello"}]}'\n`);
    const srv = server;
    await new Promise<void>((resolve) => {
      const stop = (): void => {
        process.stderr.write("shutting down\n");
        void srv.close().then(() => { if (loaded.device === "gpu") loaded.gpu.destroy(); resolve(); });
      };
      process.once("SIGINT", stop);
      process.once("SIGTERM", stop);
    });
    return 0;
  },
};
