{
  # The addon is portable code (-O3, no -march); each SIMD level is a separate
  # static library so that ONLY its kernels are compiled with its target flags.
  # dispatch.cc picks a level at runtime with __builtin_cpu_supports. On non-x86
  # builds the SIMD libraries compile to stubs and the scalar level is used.
  "target_defaults": {
    "defines": ["NAPI_VERSION=8", "NODE_ADDON_API_DISABLE_CPP_EXCEPTIONS"],
    "cflags_cc": ["-O3", "-std=c++17", "-fPIC", "-fno-exceptions"],
    "cflags_cc!": ["-std=gnu++17"]
  },
  "targets": [
    {
      "target_name": "quantize_llm",
      "sources": [
        "src/addon.cc",
        "src/attention.cc",
        "src/awq.cc",
        "src/convert.cc",
        "src/convert_scalar.cc",
        "src/direct_io.cc",
        "src/dispatch.cc",
        "src/elementwise.cc",
        "src/gptq.cc",
        "src/graph.cc",
        "src/gptq_hinv.cc",
        "src/gptq_rows_scalar.cc",
        "src/kernels_scalar.cc",
        "src/llm_int8.cc",
        "src/llm_int8_napi.cc",
        "src/llm_int8_scalar.cc",
        "src/matmul.cc",
        "src/packed_map.cc",
        "src/packed_matmul.cc",
        "src/packed_pack.cc",
        "src/packed_repack.cc",
        "src/packed_probe.cc",
        "src/packed_scalar.cc",
        "src/pool.cc",
        "src/prefetch.cc"
      ],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "dependencies": ["qllm_kernels_avx2", "qllm_kernels_avx512", "qllm_packed_avx512", "qllm_packed_amx", "qllm_llm_int8_vnni"],
      "ldflags": ["-pthread"]
    },
    {
      "target_name": "qllm_kernels_avx2",
      "type": "static_library",
      "sources": ["src/kernels_avx2.cc", "src/convert_avx2.cc", "src/gptq_rows_avx2.cc", "src/packed_avx2.cc", "src/packed_avx2_gemv.cc", "src/packed_avx2_gemm.cc", "src/packed_avx2_rows.cc", "src/llm_int8_avx2.cc"],
      "conditions": [
        ["target_arch=='x64' or target_arch=='ia32'", { "cflags_cc": ["-mavx2", "-mfma", "-mf16c"] }]
      ]
    },
    {
      "target_name": "qllm_kernels_avx512",
      "type": "static_library",
      "sources": ["src/kernels_avx512.cc", "src/gptq_rows_avx512.cc"],
      "conditions": [
        ["target_arch=='x64' or target_arch=='ia32'", { "cflags_cc": ["-mavx2", "-mfma", "-mavx512f"] }]
      ]
    },
    {
      "target_name": "qllm_packed_avx512",
      "type": "static_library",
      "sources": ["src/packed_avx512.cc", "src/packed_avx512_gemv.cc", "src/packed_avx512_gemm.cc"],
      "conditions": [
        ["target_arch=='x64' or target_arch=='ia32'", { "cflags_cc": ["-mavx2", "-mfma", "-mf16c", "-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512vnni"] }]
      ]
    },
    {
      "target_name": "qllm_packed_amx",
      "type": "static_library",
      "sources": ["src/packed_amx.cc"],
      "conditions": [
        ["target_arch=='x64'", { "cflags_cc": ["-mavx2", "-mfma", "-mf16c", "-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512vnni", "-mamx-tile", "-mamx-int8"] }]
      ]
    },
    {
      "target_name": "qllm_llm_int8_vnni",
      "type": "static_library",
      "sources": ["src/llm_int8_vnni.cc"],
      "conditions": [
        ["target_arch=='x64' or target_arch=='ia32'", { "cflags_cc": ["-mavx2", "-mfma", "-mavx512f", "-mavx512bw", "-mavx512vnni"] }]
      ]
    }
  ]
}
