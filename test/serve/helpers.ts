/** Shared by the serve tests: the bundled model served on loopback, and an openai client that also records raw SSE bytes. */
import OpenAI from "openai";
import { selectBackend } from "../../src/backend/select.ts";
import { loadModel, type LoadedModel } from "../../src/load/hf-folder.ts";
import { BUNDLED_MODEL_DIR } from "../../src/load/paths.ts";
import { startServer, type RunningServer, type ServerOptions } from "../../src/serve/server.ts";

export const MODEL_ID = "qllm-tiny";

let loaded: Promise<LoadedModel> | null = null;
export function bundled(): Promise<LoadedModel> {
  loaded ??= loadModel(BUNDLED_MODEL_DIR, selectBackend({ threads: 1 }));
  return loaded;
}

export async function serveBundled(o: Partial<ServerOptions> = {}): Promise<RunningServer> {
  const { model, tokenizer } = await bundled();
  return startServer({ model, tokenizer, modelId: MODEL_ID, port: 0, ...o });
}

/**
 * The official client, without retries (a 429 must reach the test), with a fetch that
 * copies every response body into `raw` (request i's bytes at raw[i]) while the SDK parses it.
 */
export function client(url: string, apiKey = "none"): { openai: OpenAI; raw: string[] } {
  const raw: string[] = [];
  const tap: typeof fetch = async (input, init) => {
    const res = await fetch(input, init);
    if (!res.body) return res;
    const slot = raw.push("") - 1;
    const dec = new TextDecoder();
    const body = res.body.pipeThrough(new TransformStream<Uint8Array, Uint8Array>({
      transform(chunk, ctl) { raw[slot] += dec.decode(chunk, { stream: true }); ctl.enqueue(chunk); },
    }));
    return new Response(body, { status: res.status, statusText: res.statusText, headers: res.headers });
  };
  return { openai: new OpenAI({ baseURL: `${url}/v1`, apiKey, maxRetries: 0, fetch: tap }), raw };
}

/** The data: payloads of an SSE body, in order. */
export function sseData(body: string): string[] {
  return body.split("\n\n").filter((e) => e.startsWith("data: ")).map((e) => e.slice(6));
}
