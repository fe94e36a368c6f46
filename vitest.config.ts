import { defineConfig } from "vitest/config";

// Two cores: at most two test files run at once, and each sizes its native pool
// to ONE thread (QLLM_THREADS=1) so the suite never oversubscribes the machine.
export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    pool: "forks",
    maxWorkers: 2,
    testTimeout: 180_000,
    hookTimeout: 180_000,
    env: { QLLM_THREADS: "1" },
  },
});
