/**
 * Issue 10, what a new user hits: options parse as --help says, and every error names
 * the path, the operation or field, what was found, and a hint. Each case failed before
 * its fix (raw parser text, "see the system error above", "absurd tensor_count", ...).
 */
import { spawnSync } from "node:child_process";
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { exportGguf } from "../../src/export/gguf.ts";
import { BUNDLED_MODEL_DIR, PACKAGE_ROOT } from "../../src/load/paths.ts";
import { fromSystemError, isSystemError } from "../../src/util/fs-errors.ts";
import { firstInvalidUtf8 } from "../../src/util/text-file.ts";
import { joinNegativeValues } from "../../src/cli/args.ts";
import { runMain } from "./run-main.ts";

const BIN = join(PACKAGE_ROOT, "bin", "quantize-llm.js");
const dir = mkdtempSync(join(tmpdir(), "qllm-edges-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Exit 2, the message, and no stack trace. */
async function expectUserError(args: string[], message: RegExp): Promise<string> {
  const r = await runMain(...args);
  expect(r.status, r.stderr + r.stdout).toBe(2);
  expect(r.stderr).toMatch(message);
  expect(r.stderr).not.toMatch(/\n\s+at |see the system error above|argument is ambiguous/);
  expect(r.stderr).toMatch(/hint: /);
  return r.stderr;
}

describe("options parse the way --help says", () => {
  it("a negative number is a value: --group-size -1, --damp -1", async () => {
    // -1 reaches the GGUF grid check (found: --group-size -1) instead of the parser's "ambiguous"
    await expectUserError(["rtn", "--group-size", "-1", "--format", "gguf", "-o", join(dir, "g.gguf")], /no exact GGUF block type[\s\S]*found: +--group-size -1/);
    await expectUserError(["gptq", "--damp", "-1", "-o", join(dir, "d"), "--no-eval"], /damping out of range[\s\S]*found: +"-1"/);
    expect(joinNegativeValues(["-o", "-1", "--damp", "-.5", "--json", "-2", "--", "--damp", "-3"], {
      out: { type: "string", short: "o" }, damp: { type: "string" }, json: { type: "boolean" },
    })).toEqual(["--out=-1", "--damp=-.5", "--json", "-2", "--", "--damp", "-3"]);
  });

  it("--group-size 0 names -1 and the usual sizes; --bits 5 gives a hint", async () => {
    await expectUserError(["gptq", "--group-size", "0"], /invalid value for --group-size[\s\S]*expected: +32, 64, 128, -1 \(-1 = one group per row\)/);
    await expectUserError(["gptq", "--bits", "5"], /unsupported bit width[\s\S]*one of 2, 3, 4, 8[\s\S]*hint: +HF-GPTQ packs/);
  });

  it("--version prints package.json's version (through the bin); top-level help lists export's real types", async () => {
    const r = spawnSync(process.execPath, [BIN, "--version"], { encoding: "utf8" });
    expect(r.status, r.stderr).toBe(0);
    const { version } = JSON.parse(readFileSync(join(PACKAGE_ROOT, "package.json"), "utf8")) as { version: string };
    expect(r.stdout).toMatch(new RegExp(`^quantize-llm ${version.replace(/\./g, "\\.")} `));
    const help = await runMain("--help");
    expect(help.stdout).toMatch(/export +convert .*f32, f16, q8_0, q4_0, q4_1, q4_k_m/);
    expect(help.stdout).not.toMatch(/f32 or f16/);
  });
});

describe("every error explains itself", () => {
  it("--text given a folder, a binary file or non-UTF-8 text is refused before any compute", async () => {
    await expectUserError(["eval", "--text", dir], /--text names a folder[\s\S]*file: +\/.*qllm-edges-/);
    const bin = join(dir, "binary.txt");
    writeFileSync(bin, Buffer.from([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1, 0, 0, 0]));
    await expectUserError(["eval", "--text", bin], /--text is not a text file[\s\S]*NUL byte at offset 7/);
    const latin = join(dir, "latin1.txt");
    writeFileSync(latin, Buffer.from("caf\xe9 au lait\n", "latin1"));
    await expectUserError(["eval", "--text", latin], /not UTF-8 text[\s\S]*byte 0xe9 at offset 3[\s\S]*iconv/);
    await expectUserError(["gptq", "--calib-text", bin, "-o", join(dir, "c")], /--calib-text is not a text file/);
  });

  it("the UTF-8 check agrees with TextDecoder (fatal) on 100,000 random byte strings", () => {
    const dec = new TextDecoder("utf-8", { fatal: true });
    let seed = 7;
    const rnd = (): number => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32;
    let disagree = 0;
    for (let t = 0; t < 100_000; t++) {
      const b = new Uint8Array(1 + Math.floor(rnd() * 6));
      for (let i = 0; i < b.length; i++) b[i] = rnd() < 0.6 ? 0x80 + Math.floor(rnd() * 128) : Math.floor(rnd() * 256);
      let ok = true;
      try { dec.decode(b); } catch { ok = false; }
      if (ok !== (firstInvalidUtf8(b) < 0)) disagree++;
    }
    expect(disagree).toBe(0);
  });

  it("a system error without a path still names the operation, errno and a hint", () => {
    let e: unknown;
    try { readFileSync(dir); } catch (x) { e = x; }
    expect(isSystemError(e)).toBe(true);
    const msg = fromSystemError(e as NodeJS.ErrnoException & { code: string }).message;
    expect(msg).toMatch(/^read failed \(EISDIR\)[\s\S]*file: +\(the system did not say which\)[\s\S]*hint: +this is a folder where a file is expected/);
  });

  it("a GGUF cut at 1000 bytes is reported as truncated", async () => {
    const full = join(dir, "full.gguf"), cut = join(dir, "cut.gguf");
    await exportGguf(BUNDLED_MODEL_DIR, full, { type: "f16" });
    writeFileSync(cut, readFileSync(full).subarray(0, 1000));
    await expectUserError(["eval", cut, "--text", join(BUNDLED_MODEL_DIR, "data", "eval.txt")], /GGUF file is truncated[\s\S]*file size 1000[\s\S]*hint: +the file was cut short/);
    // and a GGUF given to a quantizer says what GGUF input is for
    await expectUserError(["gptq", full], /gptq needs a Hugging Face model folder, not a GGUF file[\s\S]*supported by eval and chat/);
  });

  it("an already-quantized folder is refused before calibration", async () => {
    const q = join(dir, "quantized");
    mkdirSync(q);
    const cfg = JSON.parse(readFileSync(join(BUNDLED_MODEL_DIR, "config.json"), "utf8")) as Record<string, unknown>;
    writeFileSync(join(q, "config.json"), JSON.stringify({ ...cfg, quantization_config: { quant_method: "gptq", bits: 4, group_size: 128 } }));
    const t0 = performance.now();
    await expectUserError(["gptq", q], /already quantized[\s\S]*field: +quantization_config[\s\S]*found: +gptq, 4 bits, group size 128/);
    expect(performance.now() - t0).toBeLessThan(2000);
  });

  it("an empty folder and invalid JSON in config.json come with a hint", async () => {
    const empty = join(dir, "empty");
    mkdirSync(empty);
    await expectUserError(["eval", empty], /model folder is empty[\s\S]*hint: +copy \(or download\)/);
    const bad = join(dir, "badjson");
    mkdirSync(bad);
    copyFileSync(join(BUNDLED_MODEL_DIR, "tokenizer.json"), join(bad, "tokenizer.json"));
    await expectUserError(["eval", bad], /has no config.json[\s\S]*the folder holds tokenizer.json/);
    writeFileSync(join(bad, "config.json"), '{"model_type": "llama",');
    await expectUserError(["gptq", bad], /config.json is not valid JSON[\s\S]*hint: +the file is damaged/);
  });
});

/** `unshare -rm` gives an unprivileged mount namespace where a read-only tmpfs can be mounted. */
const canMountReadOnly = process.platform === "linux"
  && spawnSync("unshare", ["-rm", "sh", "-c", `mkdir -p ${dir}/ro-probe && mount -t tmpfs -o ro tmpfs ${dir}/ro-probe`]).status === 0;

describe.runIf(canMountReadOnly)("a read-only output location", () => {
  it.each([
    ["rtn", "--no-eval", "-o", "RO/out"],
    ["rtn", "--no-eval", "--format", "gguf", "--group-size", "32", "-o", "RO/out.gguf"],
    ["export", "--format", "gguf", "-o", "RO/x.gguf"],
  ])("%s … is reported as EROFS with the folder and a hint, before any compute", (...args) => {
    const ro = join(dir, "ro");
    mkdirSync(ro, { recursive: true });
    const argv = args.map((a) => a.replace("RO", ro)).map((a) => `'${a}'`).join(" ");
    const r = spawnSync("unshare", ["-rm", "sh", "-c", `mount -t tmpfs -o ro tmpfs '${ro}' && exec '${process.execPath}' '${BIN}' ${argv}`], { encoding: "utf8" });
    expect(r.status, r.stderr).toBe(2);
    expect(r.stderr).toMatch(new RegExp(`cannot write the output here: access failed \\(EROFS\\)[\\s\\S]*file: +${ro}\\n[\\s\\S]*hint: +this file system is read-only`));
    expect(r.stderr).not.toMatch(/ENOENT|see the system error above/);
  });
});
