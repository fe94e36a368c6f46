/**
 * Chat with a GGUF model through llama.cpp (node-llama-cpp, an optional peer dependency
 * loaded on first use). The model's own chat template (`tokenizer.chat_template`) is used
 * through node-llama-cpp's JinjaTemplateChatWrapper; without one, node-llama-cpp picks a
 * wrapper ("auto"). Tokens stream to `out` as they are generated.
 */
import { openGguf } from "../io/gguf.ts";
import { DependencyError, UsageError } from "../util/errors.ts";

export interface ChatLlamaCppOptions {
  /** A .gguf file. */
  modelPath: string;
  /** One message to answer; omitted → interactive loop on stdin (empty line or EOF ends it). */
  prompt?: string;
  system?: string;
  maxTokens: number;
  /** 0 = greedy. */
  temperature: number;
  seed: number;
  threads: number;
  /** Context size (default: the model's context length, at most 4096). */
  contextSize?: number;
  /** Where tokens stream (default process.stdout). */
  out?: { write(s: string): unknown };
}

export interface ChatLlamaCppResult {
  /** The answers, one per prompt. */
  answers: string[];
  /** "jinja" when the GGUF's chat template was used, else node-llama-cpp's automatic wrapper name. */
  template: string;
}

type NodeLlamaCpp = typeof import("node-llama-cpp");

async function importNodeLlamaCpp(): Promise<NodeLlamaCpp> {
  try {
    return await import("node-llama-cpp");
  } catch (e) {
    throw new DependencyError("node-llama-cpp is not installed", {
      expected: "the optional peer dependency node-llama-cpp ^3.22", found: (e as Error).message,
      hint: "npm install node-llama-cpp   (then run the command again; --engine native needs nothing extra)",
    });
  }
}

function chatTemplateOf(path: string): { template: string | null; contextLength: number | null } {
  const f = openGguf(path);
  try {
    const ct = f.get("tokenizer.chat_template");
    const A = f.architecture;
    const cl = A !== undefined && f.get(`${A}.context_length`) !== undefined ? f.getNumber(`${A}.context_length`) : null;
    return { template: ct?.type === "string" ? ct.value : null, contextLength: cl };
  } finally {
    f.close();
  }
}

export async function chatWithLlamaCpp(o: ChatLlamaCppOptions): Promise<ChatLlamaCppResult> {
  if (!o.modelPath.toLowerCase().endsWith(".gguf")) {
    throw new UsageError("the llama.cpp engine needs a .gguf file", {
      file: o.modelPath, field: "model", expected: "a .gguf file", found: o.modelPath,
      hint: "convert the folder first: quantize-llm export <folder> --format gguf --type q4_0 -o model.gguf",
    });
  }
  const { template, contextLength } = chatTemplateOf(o.modelPath);
  const nlc = await importNodeLlamaCpp();
  const out = o.out ?? process.stdout;
  const llama = await nlc.getLlama({
    gpu: false, build: "never", usePrebuiltBinaries: true, progressLogs: false, logLevel: nlc.LlamaLogLevel.error, maxThreads: o.threads,
  });
  try {
    const model = await llama.loadModel({ modelPath: o.modelPath, gpuLayers: 0 });
    const contextSize = o.contextSize ?? Math.min(contextLength ?? 4096, 4096);
    const context = await model.createContext({ contextSize, threads: o.threads });
    const chatWrapper = template !== null ? new nlc.JinjaTemplateChatWrapper({ template }) : "auto";
    const session = new nlc.LlamaChatSession({
      contextSequence: context.getSequence(), chatWrapper, ...(o.system !== undefined ? { systemPrompt: o.system } : {}),
    });
    const answers: string[] = [];
    const ask = async (text: string): Promise<void> => {
      const a = await session.prompt(text, {
        maxTokens: o.maxTokens, temperature: o.temperature, seed: o.seed, onTextChunk: (chunk) => { out.write(chunk); },
      });
      out.write("\n");
      answers.push(a);
    };
    if (o.prompt !== undefined) await ask(o.prompt);
    else {
      const { createInterface } = await import("node:readline/promises");
      const rl = createInterface({ input: process.stdin, output: process.stderr });
      try {
        for (;;) {
          let line: string;
          try { line = await rl.question("> "); } catch { break; } // stdin closed (EOF)
          if (line.trim() === "") break;
          await ask(line);
        }
      } finally {
        rl.close();
      }
    }
    await context.dispose();
    await model.dispose();
    return { answers, template: template !== null ? "jinja" : session.chatWrapper.wrapperName };
  } finally {
    await llama.dispose();
  }
}
