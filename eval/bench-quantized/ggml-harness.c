// llama.cpp's CPU matmul alone, for eval/bench-quantized.ts: the prebuilt ggml that
// node-llama-cpp ships (libggml*.so from @node-llama-cpp/<platform>/bins), loaded the
// way llama.cpp loads it (ggml_backend_load_all_from_path picks the best CPU variant),
// weights in the CPU_REPACK buffer type when ggml has a repack for the type (Q4_0 →
// q4_0_8x8 on AVX2 / AVX-512), a persistent ggml threadpool (llama.cpp's default
// spinning, poll 50), and ggml_backend_graph_compute of one GGML_OP_MUL_MAT.
//
// Between commands the threadpool is paused (ggml_threadpool_pause: the workers wait
// on a condition variable). Without it, after each `run` ggml's idle workers keep
// polling for new work (1024·128·poll = 6.5 M pause loops, tens of ms on one of the
// 2 cores) while the benchmark times OUR kernel in the same round. `run` resumes the
// pool before its untimed warm-up, so llama.cpp's own timed calls keep its default
// spinning between graphs.
//
// Driven over stdin, one command a line, so that the benchmark can interleave it
// with our kernels (the harness idles in a blocking read between commands):
//   load TYPE N K COPIES FILE   TYPE q4_0 | q8_0; FILE = N rows of ggml blocks; COPIES distinct tensors
//                               → "ok BYTES_PER_COPY BUFFER_TYPE"
//   run M REPS                  y = W_c · x for c cycling over the copies → "t US US ..." (µs per call)
//   quit
// argv: BINS_DIR THREADS
#define _GNU_SOURCE  // dladdr
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <dlfcn.h>

#include "ggml-alloc.h"
#include "ggml-backend.h"
#include "ggml.h"

typedef void (*set_n_threads_t)(ggml_backend_t, int);
typedef ggml_backend_buffer_type_t* (*extra_bufts_t)(ggml_backend_dev_t);
typedef struct ggml_threadpool* (*tp_new_t)(struct ggml_threadpool_params*);
typedef void (*set_tp_t)(ggml_backend_t, struct ggml_threadpool*);
typedef void (*tp_pause_t)(struct ggml_threadpool*);

#define MAX_COPIES 256  // 2048x2048 Q4_0 (2.4 MB) needs 109 copies for the 256 MB cold set
static ggml_backend_t be;
static ggml_backend_dev_t dev;
static struct ggml_context* wctx;
static ggml_backend_buffer_t wbuf;
static struct ggml_tensor* W[MAX_COPIES];
static int copies, N, K;
static struct ggml_threadpool* tp;
static tp_pause_t tpPause, tpResume;  // from the CPU backend library (not in its proc-address table)

static double nowUs(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static ggml_backend_buffer_type_t repackBuft(void) {
  ggml_backend_reg_t reg = ggml_backend_dev_backend_reg(dev);
  extra_bufts_t f = (extra_bufts_t)ggml_backend_reg_get_proc_address(reg, "ggml_backend_dev_get_extra_bufts");
  if (f == NULL) return NULL;
  for (ggml_backend_buffer_type_t* b = f(dev); b != NULL && *b != NULL; ++b)
    if (strcmp(ggml_backend_buft_name(*b), "CPU_REPACK") == 0) return *b;
  return NULL;
}

static int load(const char* type, int n, int k, int c, const char* file) {
  enum ggml_type t = strcmp(type, "q4_0") == 0 ? GGML_TYPE_Q4_0 : GGML_TYPE_Q8_0;
  if (c < 1 || c > MAX_COPIES) { printf("error copies %d outside 1..%d\n", c, MAX_COPIES); return 1; }
  N = n; K = k; copies = c;
  const size_t bytes = ggml_row_size(t, K) * (size_t)N;
  unsigned char* data = malloc(bytes);
  FILE* f = fopen(file, "rb");
  if (f == NULL || fread(data, 1, bytes, f) != bytes) { printf("error reading %s\n", file); return 1; }
  fclose(f);
  struct ggml_init_params ip = {ggml_tensor_overhead() * (MAX_COPIES + 1), NULL, true};
  if (wctx != NULL) { ggml_backend_buffer_free(wbuf); ggml_free(wctx); }
  wctx = ggml_init(ip);
  for (int i = 0; i < copies; ++i) W[i] = ggml_new_tensor_2d(wctx, t, K, N);
  // ggml repacks Q4_0 (not Q8_0) on x86; llama.cpp puts a weight in CPU_REPACK only then.
  ggml_backend_buffer_type_t buft = t == GGML_TYPE_Q4_0 ? repackBuft() : NULL;
  if (buft == NULL) buft = ggml_backend_dev_buffer_type(dev);
  wbuf = ggml_backend_alloc_ctx_tensors_from_buft(wctx, buft);
  ggml_backend_buffer_set_usage(wbuf, GGML_BACKEND_BUFFER_USAGE_WEIGHTS);
  for (int i = 0; i < copies; ++i) ggml_backend_tensor_set(W[i], data, 0, bytes);
  free(data);
  printf("ok %zu %s\n", bytes, ggml_backend_buft_name(buft));
  return 0;
}

static void run(int M, int reps) {
  struct ggml_init_params ip = {ggml_tensor_overhead() * (2 * MAX_COPIES + 2) + ggml_graph_overhead() * MAX_COPIES, NULL, true};
  struct ggml_context* ctx = ggml_init(ip);
  struct ggml_tensor* x = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, K, M);
  struct ggml_cgraph* g[MAX_COPIES];
  for (int i = 0; i < copies; ++i) {
    g[i] = ggml_new_graph(ctx);
    ggml_build_forward_expand(g[i], ggml_mul_mat(ctx, W[i], x));
  }
  ggml_backend_buffer_t buf = ggml_backend_alloc_ctx_tensors(ctx, be);
  float* xs = malloc(sizeof(float) * (size_t)K * M);
  for (size_t i = 0; i < (size_t)K * M; ++i) xs[i] = (float)((i * 2654435761u) % 2001) / 1000.0f - 1.0f;
  ggml_backend_tensor_set(x, xs, 0, sizeof(float) * (size_t)K * M);
  free(xs);
  if (tpResume != NULL) tpResume(tp);
  for (int i = 0; i < copies; ++i) ggml_backend_graph_compute(be, g[i]);  // untimed warm-up, every buffer touched
  printf("t");
  for (int r = 0; r < reps; ++r) {
    const double t0 = nowUs();
    ggml_backend_graph_compute(be, g[r % copies]);
    printf(" %.1f", nowUs() - t0);
  }
  printf("\n");
  if (tpPause != NULL) tpPause(tp);  // idle until the next run: no polling while the benchmark times ours
  ggml_backend_buffer_free(buf);
  ggml_free(ctx);
}

int main(int argc, char** argv) {
  if (argc < 3) return 2;
  ggml_backend_load_all_from_path(argv[1]);
  dev = ggml_backend_dev_by_type(GGML_BACKEND_DEVICE_TYPE_CPU);
  be = ggml_backend_dev_init(dev, NULL);
  const int threads = atoi(argv[2]);
  ggml_backend_reg_t reg = ggml_backend_dev_backend_reg(dev);
  ((set_n_threads_t)ggml_backend_reg_get_proc_address(reg, "ggml_backend_set_n_threads"))(be, threads);
  struct ggml_threadpool_params tpp = ggml_threadpool_params_default(threads);
  tp_new_t tpNew = (tp_new_t)ggml_backend_reg_get_proc_address(reg, "ggml_threadpool_new");
  tp = tpNew(&tpp);
  ((set_tp_t)ggml_backend_reg_get_proc_address(reg, "ggml_backend_cpu_set_threadpool"))(be, tp);
  Dl_info info;
  void* lib = dladdr((void*)tpNew, &info) != 0 ? dlopen(info.dli_fname, RTLD_NOW | RTLD_NOLOAD) : NULL;
  if (lib != NULL) {
    tpPause = (tp_pause_t)dlsym(lib, "ggml_threadpool_pause");
    tpResume = (tp_pause_t)dlsym(lib, "ggml_threadpool_resume");
  }
  if (tpPause == NULL || tpResume == NULL) {
    printf("error ggml_threadpool_pause/resume not found in the CPU backend library\n");
    return 1;
  }
  tpPause(tp);
  printf("ready %s\n", ggml_backend_dev_description(dev));
  fflush(stdout);
  char line[4096], type[16], file[3000];
  int a, b, c;
  while (fgets(line, sizeof line, stdin) != NULL) {
    if (sscanf(line, "load %15s %d %d %d %2999s", type, &a, &b, &c, file) == 5) load(type, a, b, c, file);
    else if (sscanf(line, "run %d %d", &a, &b) == 2) run(a, b);
    else if (strncmp(line, "quit", 4) == 0) break;
    else printf("error unknown command\n");
    fflush(stdout);
  }
  return 0;
}
