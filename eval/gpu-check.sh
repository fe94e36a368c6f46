#!/usr/bin/env bash
# The prepared GPU check (issue 13): on a machine with a real GPU (planned for: an NVIDIA H200
# with its Vulkan driver, 16 cores, no network; it gets this working tree with node_modules and
# native/build), in at most 10 minutes, every step under a hard timeout:
#
#   1. environment: nvidia-smi, the Vulkan loader and ICD files, node
#   2. probe: the WebGPU adapter Dawn picks, software or not, features, subgroup-matrix offered
#   3. the GPU tests (test/webgpu, QLLM_REQUIRE_GPU=1: a missing adapter fails them); with
#      subgroup matrices offered, the M = 17/40 matmul tests run on the subgroup-matrix kernel;
#      attention and the whole model on an f16 KV cache (the default) and an f32 one against the CPU
#   4. eval/bench-webgpu.ts on the bundled model: adapter, int4 GEMV GB/s, f16/int4 GEMM
#      GFLOP/s (tiled and subgroup-matrix), the subgroup-matrix GEMM against the reference, and
#      GPTQ's Hessian Σ xᵀx on the GPU vs the CPU (the figure issue 13 item 4 asks for)
#   4b. eval/bench-gptq-gpu.ts: GPTQ's Hessian and lazy-batch sweep of one 4096×4096 layer on the
#      GPU vs the native CPU path (whether --device auto should ever pick the GPU)
#   5. a Q4_0 GGUF to compare on: TinyLlama-shaped random weights (eval/gen-tinyllama.ts) on a
#      hardware adapter; the bundled model exported to Q4_0 on a software one
#   6. eval/bench-webgpu.ts on that GGUF: tokens/s (prefill, decode) ours on the GPU with an f16
#      and an f32 KV cache (--kv f16,f32, the default), ours on the CPU (f16), and llama.cpp
#      (node-llama-cpp's prebuilt CUDA build, else its Vulkan build)
#
# Writes $OUT/gpu-check.md (the summary), the bench reports and JSON, and logs/ (OUT unset:
# /tmp/qllm-gpu-check). Exit status 0 when every step passed.
#
#   bash eval/gpu-check.sh            # on the GPU machine (device tool: run with timeout_s 600)
#   /work/bin/heavy bash eval/gpu-check.sh   # here, on lavapipe: shows the script runs
set -u
cd "$(dirname "$0")/.."
OUT="${OUT:-/tmp/qllm-gpu-check}"
mkdir -p "$OUT/logs"
WORK="$(mktemp -d /tmp/qllm-gpu-check-work.XXXXXX)"
trap 'rm -rf "$WORK"' EXIT
BUDGET="${QLLM_GPU_CHECK_BUDGET:-570}"   # seconds for all steps (the device run allows 600)
# Per-step limits: probe 30 + tests 140 + bench-bundled 70 + bench-gptq-gpu 90 + gen-tinyllama 110
# (or export-bundled 60) + bench-gguf 120 = 560 s ≤ BUDGET, so no step is squeezed by the ones before.
START=$(date +%s)
SUMMARY="$OUT/gpu-check.md"
STATUS=0
TSX="node --import tsx"

left() { echo $(( BUDGET - ($(date +%s) - START) )); }
# step NAME SECONDS CMD...: run under `timeout` (capped by what is left), log to logs/NAME.log
step() {
  local name=$1 want=$2; shift 2
  local t; t=$(left); [ "$want" -lt "$t" ] && t=$want
  local log="$OUT/logs/$name.log" s0; s0=$(date +%s)
  if [ "$t" -le 5 ]; then echo "| $name | skipped: out of time | 0 s |" >>"$WORK/steps"; STATUS=1; return 1; fi
  timeout -k 10 "$t" "$@" >"$log" 2>&1
  local rc=$? dt=$(( $(date +%s) - s0 ))
  local what="ok"
  if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then what="**timed out after ${t} s**"; STATUS=1
  elif [ $rc -ne 0 ]; then what="**failed (exit $rc)**"; STATUS=1; fi
  echo "| $name | $what | ${dt} s | \`$*\` |" >>"$WORK/steps"
  echo "[gpu-check] $name: $what (${dt} s)" >&2
  return $rc
}

# 1. environment -------------------------------------------------------------------------
{
  echo "date: $(date -u +%FT%TZ)"; echo "host: $(uname -srm), $(nproc) cores"; echo "node: $(node --version)"
  echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo '?') $(git status --porcelain 2>/dev/null | grep -q . && echo '(working tree has changes)')"
  echo "--- nvidia-smi"; timeout 20 nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1 || echo "(no nvidia-smi)"
  echo "--- Vulkan loader"; (ldconfig -p 2>/dev/null | grep -E 'libvulkan\.so' ) || echo "(no libvulkan.so in ldconfig: Dawn cannot open Vulkan)"
  echo "--- Vulkan ICDs"; ls /usr/share/vulkan/icd.d /etc/vulkan/icd.d 2>/dev/null || echo "(no ICD folders)"
  echo "--- VK_ICD_FILENAMES=${VK_ICD_FILENAMES:-} VK_DRIVER_FILES=${VK_DRIVER_FILES:-}"
  command -v vulkaninfo >/dev/null && timeout 20 vulkaninfo --summary 2>&1 | grep -E 'deviceName|driverName|driverInfo|apiVersion' | head -12
  echo "--- node-llama-cpp builds"; ls node_modules/@node-llama-cpp 2>/dev/null
} >"$OUT/logs/env.log" 2>&1

# 2. probe -------------------------------------------------------------------------------
cat >"$WORK/probe.mts" <<EOF
import { openGpu } from "$PWD/src/backend/webgpu-device.ts";
const ctx = await openGpu({ choice: "gpu" });
const { features, ...rest } = ctx.info;
console.log(JSON.stringify({ ...rest, featureCount: features.length, features }));
ctx.device.destroy();
EOF
step probe 30 $TSX "$WORK/probe.mts"
PROBE=$(grep '^{' "$OUT/logs/probe.log" | tail -1)
SOFTWARE=unknown
if [ -n "$PROBE" ]; then
  echo "$PROBE" >"$OUT/adapter.json"
  SOFTWARE=$(node -e 'const p=JSON.parse(process.argv[1]);console.log(p.software?"yes":"no")' "$PROBE")
fi

# 3. GPU tests ---------------------------------------------------------------------------
step tests 140 env QLLM_REQUIRE_GPU=1 npx vitest run test/webgpu

# 4. kernels + bundled model -------------------------------------------------------------
step bench-bundled 70 $TSX eval/bench-webgpu.ts --kv f16,f32 --out "$OUT/bench-webgpu-bundled.md" --json "$OUT/bench-webgpu-bundled.json"

# 4b. GPTQ on the GPU vs the CPU, one 4096×4096 layer (issue 13 item 4: the decision) -----
step bench-gptq-gpu 90 $TSX eval/bench-gptq-gpu.ts --out "$OUT/bench-gptq-gpu.md"

# 5. a Q4_0 GGUF -------------------------------------------------------------------------
GGUF=""
if [ "$SOFTWARE" = "no" ]; then
  step gen-tinyllama 110 $TSX eval/gen-tinyllama.ts --out "$WORK/tinyllama" && GGUF="$WORK/tinyllama/q4_0.gguf"
  MODEL_NOTE="TinyLlama-shaped (1.1B, random weights) Q4_0 GGUF from eval/gen-tinyllama.ts"
else
  step export-bundled 60 node bin/quantize-llm.js export --format gguf --type q4_0 -o "$WORK/qllm-tiny-q4_0.gguf" && GGUF="$WORK/qllm-tiny-q4_0.gguf"
  MODEL_NOTE="the bundled model exported to Q4_0 (a software adapter cannot hold a 1.1B model's f16 embedding in one 128 MiB binding, and would take far too long)"
fi

# 6. tokens/s vs llama.cpp ---------------------------------------------------------------
if [ -n "$GGUF" ]; then
  step bench-gguf 120 $TSX eval/bench-webgpu.ts --model "$GGUF" --reps 2 --kv f16,f32 --llamacpp auto --out "$OUT/bench-webgpu-gguf.md" --json "$OUT/bench-webgpu-gguf.json"
fi

# summary --------------------------------------------------------------------------------
{
  echo "# GPU check (eval/gpu-check.sh)"
  echo
  case "$SOFTWARE" in
    yes) echo "**SOFTWARE ADAPTER: Dawn found only a software Vulkan driver (lavapipe/llvmpipe or similar). Nothing below was measured on a GPU; it shows only that the check runs end to end. The Tensor Core (subgroup-matrix) path did not run.**";;
    no)  echo "Hardware adapter: the figures below are GPU figures.";;
    *)   echo "**NO WEBGPU ADAPTER: the probe failed (see logs/probe.log and the environment below); no GPU step ran meaningfully.**";;
  esac
  echo
  echo "Total $(( $(date +%s) - START )) s of a ${BUDGET} s budget; exit status $STATUS."
  echo
  echo "| step | result | time | command |"
  echo "|---|---|---:|---|"
  cat "$WORK/steps"
  echo
  echo "## Environment"; echo; echo '```'; cat "$OUT/logs/env.log"; echo '```'; echo
  echo "## Adapter probe"; echo
  if [ -n "$PROBE" ]; then
    node -e 'const p=JSON.parse(process.argv[1]);
      console.log(`- ${p.description||p.device} (${p.vendor}/${p.architecture}), software: ${p.software}`);
      console.log(`- subgroups: ${p.subgroups} (size ${p.subgroupMinSize}-${p.subgroupMaxSize}); shader-f16: ${p.features.includes("shader-f16")}`);
      console.log(`- subgroup matrix: ${p.subgroupMatrixFeature ? p.subgroupMatrixFeature + " offered, f16->f32 shapes " + p.subgroupMatrixConfigs.map(c=>c.M+"x"+c.N+"x"+c.K).join(", ") : "not offered"}`);
      console.log(`- limits: maxBufferSize ${p.maxBufferSize}, maxStorageBufferBindingSize ${p.maxStorageBufferBindingSize}`);
      console.log(`- features: ${p.features.join(", ")}`);' "$PROBE"
  else
    echo '```'; tail -20 "$OUT/logs/probe.log"; echo '```'
  fi
  echo
  echo "## GPU tests (test/webgpu)"; echo; echo '```'
  sed 's/\x1b\[[0-9;]*m//g' "$OUT/logs/tests.log" | grep -vE '^Warning: maxDynamic' | grep -E '✓|✗|×|FAIL|Test Files|Tests |skipped|Error' | head -80
  echo '```'; echo
  for f in bench-webgpu-bundled bench-gptq-gpu bench-webgpu-gguf; do
    if [ -f "$OUT/$f.md" ]; then
      echo "## $f"; echo
      [ "$f" = bench-webgpu-gguf ] && echo "Model: ${MODEL_NOTE:-?}." && echo
      sed 's/^#/##/' "$OUT/$f.md"; echo
    fi
  done
} >"$SUMMARY.tmp" && mv "$SUMMARY.tmp" "$SUMMARY"
echo "[gpu-check] report: $SUMMARY (exit $STATUS)" >&2
exit $STATUS
