/**
 * The generation core on the bundled model: greedy output equals the plain reference
 * loop (src/nn/generate.ts); the KV cache is reused across calls and turns (the second
 * turn prefills only its new tokens, computed here independently from the template);
 * seeds, stop strings, end-of-turn ids, --ignore-eos, max tokens, cancellation and the
 * context-overflow policy.
 */
import { beforeAll, describe, expect, test } from "vitest";
import { selectBackend } from "../../src/backend/select.ts";
import { Conversation, endOfTurnIds } from "../../src/generate/conversation.ts";
import { DEFAULT_KV, generate, Session, type GenerateRequest } from "../../src/generate/engine.ts";
import { samplerOptions } from "../../src/generate/sampler.ts";
import { loadModel, type LoadedModel } from "../../src/load/hf-folder.ts";
import { BUNDLED_MODEL_DIR } from "../../src/load/paths.ts";
import { generate as referenceGenerate } from "../../src/nn/generate.ts";
import { UsageError } from "../../src/util/errors.ts";

let m: LoadedModel;
beforeAll(async () => { m = await loadModel(BUNDLED_MODEL_DIR, selectBackend({ threads: 1 })); });

const greedy = samplerOptions({});
const req = (prompt: number[], o: Partial<GenerateRequest> = {}): GenerateRequest => ({ prompt, maxTokens: 24, sampler: greedy, stopIds: [], ...o });

describe("generation core", () => {
  test("greedy tokens equal the plain reference loop (f32 cache on both)", async () => {
    const prompt = m.tokenizer.encode("The jury said", { addSpecial: true });
    const r = await generate(new Session(m.model, undefined, "f32"), m.tokenizer, req(prompt, { maxTokens: 32 }));
    const ref = referenceGenerate(m.model, prompt, { maxTokens: 32, temperature: 0 });
    expect(r.ids).toEqual(ref);
    expect(r.text).toBe(m.tokenizer.decode(ref, { skipSpecial: true }));
    expect(r.finishReason).toBe("length");
    expect(r.stats).toMatchObject({ promptTokens: prompt.length, reusedTokens: 0, prefillTokens: prompt.length, generatedTokens: 32, decodeSteps: 31 });
  });

  test("a Session's default KV cache on the CPU is f16 (DEFAULT_KV) and generates what the plain loop does on an f16 cache", async () => {
    expect(DEFAULT_KV).toBe("f16");
    const prompt = m.tokenizer.encode("The jury said", { addSpecial: true });
    const s = new Session(m.model, 64);
    expect(s.kv).toBe("f16");
    expect((s.cache as { layers: { k: unknown }[] }).layers[0]!.k).toBeInstanceOf(Uint16Array);
    expect((new Session(m.model, 64, "f32").cache as { layers: { k: unknown }[] }).layers[0]!.k).toBeInstanceOf(Float32Array);
    const r = await generate(s, m.tokenizer, req(prompt, { maxTokens: 24 }));
    const ref = referenceGenerate(m.model, prompt, { maxTokens: 24, temperature: 0, cache: m.model.newCache(64, "f16") });
    expect(r.ids).toEqual(ref);
  });

  test("a second call reuses the cached prefix and prefills only the rest, with the same answer as a fresh cache", async () => {
    const s = new Session(m.model);
    const p1 = m.tokenizer.encode("Once upon a time", { addSpecial: true });
    const r1 = await generate(s, m.tokenizer, req(p1, { maxTokens: 10 }));
    const extra = m.tokenizer.encode(" and then", { addSpecial: false });
    const p2 = [...p1, ...r1.ids, ...extra];
    const r2 = await generate(s, m.tokenizer, req(p2));
    // The last sampled token of call 1 was never run; it is prefilled with the new ones.
    expect(r2.stats.reusedTokens).toBe(p1.length + r1.ids.length - 1);
    expect(r2.stats.prefillTokens).toBe(extra.length + 1);
    const fresh = await generate(new Session(m.model), m.tokenizer, req(p2));
    expect(r2.ids).toEqual(fresh.ids);
    expect(fresh.stats.prefillTokens).toBe(p2.length);
  });

  test("multi-turn: the second turn prefills only the tokens the template adds for it", async () => {
    const tok = m.tokenizer;
    const conv = new Conversation(new Session(m.model), tok, "You are a storyteller.");
    const r1 = await conv.ask("Who was there?", { maxTokens: 16, sampler: greedy });
    const history = conv.messages.slice(); // system, user, assistant
    const r2 = await conv.ask("And then?", { maxTokens: 16, sampler: greedy });
    // Independently: the text the first turn's tokens stand for, and what turn 2 adds to it.
    const produced = r1.endId !== null ? [...r1.ids, r1.endId] : r1.ids;
    const turn1 = tok.applyChatTemplate(history.slice(0, 2), true) + tok.decode(produced, { skipSpecial: false });
    const full2 = tok.applyChatTemplate([...history, { role: "user", content: "And then?" }], true);
    expect(full2.startsWith(turn1)).toBe(true);
    const newTokens = tok.encode(full2.slice(turn1.length), { addSpecial: false }).length;
    const unrun = 1; // the last token turn 1 sampled (its end-of-turn id, or its last word) was never run
    expect(r2.stats.prefillTokens).toBe(newTokens + unrun);
    expect(r2.stats.reusedTokens).toBe(r1.stats.promptTokens + r1.ids.length + (r1.endId !== null ? 1 : 0) - unrun);
    expect(r2.stats.prefillTokens).toBeLessThan(r2.stats.promptTokens / 2);
    conv.reset();
    expect(conv.messages).toEqual([{ role: "system", content: "You are a storyteller." }]);
    const again = await conv.ask("Who was there?", { maxTokens: 16, sampler: greedy });
    expect(again.text).toBe(r1.text);
    expect(again.stats.reusedTokens).toBe(0);
  });

  test("same seed → same text; another seed → another text", async () => {
    const prompt = m.tokenizer.encode("It was", { addSpecial: true });
    const run = async (seed: number): Promise<string> =>
      (await generate(new Session(m.model), m.tokenizer, req(prompt, { maxTokens: 32, sampler: samplerOptions({ temperature: 0.9, topK: 40, topP: 0.95, seed }) }))).text;
    const a = await run(11);
    expect(await run(11)).toBe(a);
    expect(await run(12)).not.toBe(a);
  });

  test("stop strings cut the answer before the first occurrence; end-of-turn ids stop unless ignored", async () => {
    const prompt = m.tokenizer.encode("The jury said", { addSpecial: true });
    const full = await generate(new Session(m.model), m.tokenizer, req(prompt, { maxTokens: 32 }));
    const stop = full.text.slice(12, 16);
    const cut = await generate(new Session(m.model), m.tokenizer, req(prompt, { maxTokens: 32, stopStrings: [stop] }));
    expect(cut.text).toBe(full.text.slice(0, full.text.indexOf(stop)));
    expect(cut.finishReason).toBe("stop");
    // Treat the 4th greedy token as an end-of-turn id: generation ends there, the id not included.
    const eot = full.ids[3]!;
    const first = full.ids.indexOf(eot);
    const ended = await generate(new Session(m.model), m.tokenizer, req(prompt, { maxTokens: 32, stopIds: [eot] }));
    expect(ended).toMatchObject({ ids: full.ids.slice(0, first), endId: eot, finishReason: "stop" });
    const ignored = await generate(new Session(m.model), m.tokenizer, req(prompt, { maxTokens: 32, stopIds: [eot], ignoreEos: true }));
    expect(ignored.ids).toEqual(full.ids);
    expect(ignored.finishReason).toBe("length");
    expect(endOfTurnIds(m.tokenizer)).toEqual(expect.arrayContaining([0, 2])); // <|endoftext|>, <|im_end|>
  });

  test("an abort stops generation at the next token", async () => {
    const prompt = m.tokenizer.encode("The jury said", { addSpecial: true });
    const ac = new AbortController();
    let deltas = 0;
    const r = await generate(new Session(m.model), m.tokenizer, req(prompt, {
      maxTokens: 200, signal: ac.signal, onText: () => { if (++deltas === 3) ac.abort(); },
    }));
    expect(r.finishReason).toBe("cancelled");
    expect(r.ids.length).toBeLessThan(8);
  });

  test("context overflow: the oldest turns are dropped before answering, the system prompt is kept, the caller is told", async () => {
    const tok = m.tokenizer;
    const conv = new Conversation(new Session(m.model, 160), tok, "You are a storyteller.");
    const told: number[] = [];
    let textBeforeNotice = false;
    let sawText = false;
    const turns: number[] = [];
    for (let i = 0; i < 6; i++) {
      const r = await conv.ask(`Tell me about the ${i}th day of the trial.`, {
        maxTokens: 40, sampler: greedy, ignoreEos: true,
        onText: () => { sawText = true; },
        onDropped: (n) => { told.push(n); if (sawText) textBeforeNotice = true; },
      });
      sawText = false;
      turns.push(r.droppedTurns);
      expect(r.stats.promptTokens + 40).toBeLessThanOrEqual(160);
      expect(r.ids.length).toBe(40);
    }
    expect(told.length).toBeGreaterThan(0);
    expect(told).toEqual(turns.filter((n) => n > 0));
    expect(textBeforeNotice).toBe(false);
    expect(conv.messages[0]).toEqual({ role: "system", content: "You are a storyteller." });
    expect(conv.messages.at(-2)).toEqual({ role: "user", content: "Tell me about the 5th day of the trial." });
    await expect(conv.ask("word ".repeat(400), { maxTokens: 8, sampler: greedy })).rejects.toThrow(UsageError);
  });

  test("a prompt that does not fit is refused before generating", async () => {
    const s = new Session(m.model, 32);
    await expect(generate(s, m.tokenizer, req(new Array(32).fill(5)))).rejects.toThrow(/does not fit/);
    await expect(generate(s, m.tokenizer, req([]))).rejects.toThrow(UsageError);
  });
});
