// Packed weights: the runtime layouts of int4, int8 and 16-bit weights, the
// packers that build them from canonical inputs, and the matmul driver over them.
// Byte-by-byte description of every layout: native/LAYOUTS.md.
//
//   packed_pack.cc        canonical inputs → layout, in a 2 MiB-aligned huge-page arena
//   packed_matmul.cc      the driver: activation quantization, threads, tiles, bias
//   packed_scalar.cc      the scalar reference tiles (the specification of each layout)
//   packed_avx2.h         AVX2 (vpmaddubsw), selected at run time: what its files share
//   packed_avx2_gemv.cc     M = 1 spans (decode, DRAM-bandwidth shaped)
//   packed_avx2_gemm.cc     int8-activation tiles (prefill, M = 2…8)
//   packed_avx2.cc          f32-activation and 16-bit tiles, quantizer, the table
//   packed_avx512.h       AVX-512 VNNI (vpdpbusd), selected at run time: what its files share
//   packed_avx512_gemv.cc   M = 1…8 spans (decode, batched decode: W streamed once)
//   packed_avx512_gemm.cc   int8-activation tiles (prefill, M > 8)
//   packed_avx512.cc        16-bit tile, quantizer, the table (borrows AVX2's other tiles)
//   packed_amx.cc         AMX-INT8 tiles (prefill, M ≥ 16): the "amx" level = avx512's table + this GEMM
//   packed_walk.h         ISA-neutral block walk and span plumbing, one copy per level
//
// Every layout interleaves 16 rows ("a row group"): the 16 outputs of a row group
// are one zmm of int32 or two ymm, and the row group is the unit of the static N
// split between threads.
#pragma once
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace qllm {

struct Runtime;

enum class PackedKind : int32_t { Q4 = 0, Q8 = 1, H16 = 2 };
enum class H16Type : int32_t { F16 = 0, BF16 = 1 };

constexpr int64_t kRowGroup = 16;   // rows interleaved in every layout
constexpr int64_t kSubBlock = 32;   // k per code sub-block (Q4: 256 B, Q8: 512 B per row group)

/** Everything the kernels need to walk one packed matrix. */
struct PackedLayout {
  PackedKind kind;
  int64_t N, K;        // logical shape: y[M, N] = x[M, K] · Wᵀ
  int64_t Np;          // N rounded up to kRowGroup (pad rows have zero scales)
  int64_t Kp;          // K rounded up to Ba (Q4, Q8) or K (H16); pad columns are code 8 / 0
  int64_t g;           // group size in k of the canonical input, ≤ Kp (Q4, Q8)
  int64_t G;           // groups per row in the layout: ceil(K / g)
  int64_t Ba;          // activation block (k): int8 activations get one f32 scale per Ba; Ba | g or G == 1
  int32_t scaleBytes;  // 2 = f16 scales (and mins), 4 = f32 (when some value is not exactly an f16)
  bool mins;           // Q4 only: w = s·q + m (else w = s·(q − 8))
  H16Type h16;         // H16 only
  bool rowMajor;       // H16 only: a row-major view [N, K] of stored bytes (LAYOUTS.md "Row-major views"):
                       // row n at byte n·codeBytes of its part, codeBytes = 2K, rgStride = 16·2K, no padding
  int64_t codeBytes;   // per row group: Kp/32 sub-blocks × 256 (Q4) / 512 (Q8), or Kp·32 (H16)
  int64_t rgStride;    // bytes per row group: codes, then scales [G][16], then mins [G][16], padded to 64
  const int32_t* perm; // [K] or null: x'[k] = x[perm[k]] (act-order), owned by the PackedWeight
};

constexpr int kMaxParts = 4;  // matrices one concatenated weight holds (q, k, v; gate, up)

/** A packed matrix in native memory (see packed_pack.cc for the arena). */
struct PackedWeight {
  PackedLayout L;
  uint8_t* data = nullptr;  // Np/16 row groups of L.rgStride bytes, 64-byte aligned
  size_t bytes = 0;         // L.Np / 16 · L.rgStride
  size_t mapBytes = 0;      // the mapping's length (0: data came from aligned_alloc)
  int32_t* perm = nullptr;  // [K] copy of the permutation, or null
  /**
   * Concatenated weights (packedConcat): part p is row groups partRg[p]..partRg[p+1]−1,
   * with partN[p] real rows (its own pad rows included), so matmulPackedParts writes
   * each part's outputs to its own array. 0 parts: a plain matrix.
   */
  int nParts = 0;
  int64_t partRg[kMaxParts + 1] = {};
  int64_t partN[kMaxParts] = {};
  /** A view of one part of a concatenated weight: data and perm belong to that weight. */
  bool view = false;
  /**
   * Row-major views (L.rowMajor): part p's row 0 (partData[0] = data for a plain view; the
   * parts of a concatenation stay where the file has them, nothing is copied) and the
   * mapped file each part lies in (one reference each, released by freePacked).
   */
  uint8_t* partData[kMaxParts] = {};  // read-only memory (PROT_READ) for views of a file
  struct MappedFile* files[kMaxParts] = {};
};

// ---------------------------------------------------------------- mapped files (packed_map.cc)

/** A read-only shared mapping of a whole file, reference counted (the views of it hold references). */
struct MappedFile;
enum class MapStatus : int32_t { Ok = 0, OpenFailed = 1, MapFailed = 2, Unsupported = 3 };
/** Maps `path` read-only (MAP_SHARED); null with *status on failure (errno in *err). */
MappedFile* mapFile(const char* path, bool populate, MapStatus* status, int* err);
size_t mappedBytes(const MappedFile* f);
void retainFile(MappedFile* f);
void releaseFile(MappedFile* f);
/**
 * A row-major 16-bit view W [N, K] at byte `offset` of f (any alignment; the kernels load
 * unaligned); holds a reference to f. Null when offset + 2·N·K passes the end of the file.
 */
PackedWeight* view16(MappedFile* f, size_t offset, H16Type type, int64_t N, int64_t K);

// ---------------------------------------------------------------- packers (packed_pack.cc)
// Inputs are trusted (validated in src/backend/native.ts). Each returns a new
// PackedWeight (free with freePacked) or null when memory is exhausted.

/** codes [N, K] in 0..15, scales [N, G], mins [N, G] or null, perm [K] or null. */
PackedWeight* packQ4(const uint8_t* codes, const float* scales, const float* mins, int64_t N, int64_t K, int64_t g,
                     const int32_t* perm);
/** codes [N, K] in −128..127, scales [N, G]: w = s·q. */
PackedWeight* packQ8(const int8_t* codes, const float* scales, int64_t N, int64_t K, int64_t g, const int32_t* perm);
/** data [N, K] of f16 or bf16 bit patterns. */
/** The layout fields of a 16-bit matrix: interleaved f16x16/bf16x16 (pack16) or a row-major view (view16). */
PackedLayout h16Layout(H16Type type, int64_t N, int64_t K, bool rowMajor);
PackedWeight* pack16(const uint16_t* data, H16Type type, int64_t N, int64_t K);
void freePacked(PackedWeight* w);

enum class ConcatStatus : int32_t { Ok = 0, OutOfMemory = 1, Incompatible = 2 };
/**
 * One weight whose row groups are those of parts[0], then parts[1], … (each part's
 * pad rows kept, so part p starts at a row group; LAYOUTS.md "Concatenated weights").
 * The parts must share kind, K, the group plan, scale bytes, mins and perm (they then
 * share one activation quantization); n ≤ kMaxParts. The parts are not freed.
 */
PackedWeight* packedConcat(const PackedWeight* const* parts, int n, ConcatStatus* status);
/** Part p of a concatenated weight as a matrix of its own, sharing the memory (free it with freePacked first). */
PackedWeight* packedView(const PackedWeight& w, int p);
/** Just the memory of a packed weight (zeroed, aligned, huge-page advised): the bandwidth probe's buffer. */
PackedWeight* allocRaw(size_t bytes);

/** The activation block chosen for a group size (see packed_pack.cc). */
int64_t activationBlock(int64_t K, int64_t g);

// ---------------------------------------------------------------- kernels (packed_<level>.cc)

/** M activation rows quantized to int8 per block of Ba: x ≈ d[b] · q[k] on block b. */
struct QuantActs {
  const int8_t* q;     // [M][Kp], zero past K
  const float* d;      // [M][nb] scale of each block
  const int32_t* sum;  // [M][nb] Σ q over each block (exact)
  int64_t Kp, nb;
};

/**
 * One tile: y[m, r] for mr activation rows m and the 16 rows r of one row group,
 * over all of K. Rows r ≥ nValid are not written. y is y[m0, n0] of the output,
 * row stride ldy. No bias (the driver adds it).
 */
struct PackedTileArgs {
  const PackedLayout* L;
  const uint8_t* rg;       // the row group's bytes
  int mr;                  // 1..mrMax of the kernel
  // int8 activations (Q4, Q8): rows m0..m0+mr−1
  const int8_t* aq;        // [mr][Kp] (row stride L->Kp)
  const float* ad;         // [mr][nb]
  const int32_t* asum;     // [mr][nb]
  // f32 activations (H16; Q4/Q8 exact path), already gathered through perm
  const float* af;         // [mr][ldaf]
  int64_t ldaf;
  float* y;
  int64_t ldy;
  int nValid;
};

/**
 * Decode (M = 1…spanMaxM, int8 activations) over nrg consecutive row groups starting
 * at rg0; y is the output of the first one's row 0 for activation row 0 (row m at
 * y + m·ldy); every row group but the last has 16 valid rows, the last has lastValid.
 * Activation rows: aq [mr][lda], ad and asum [mr][nb] (as in QuantActs).
 */
struct PackedSpanArgs {
  const PackedLayout* L;
  const uint8_t* rg0;
  int64_t nrg;
  const int8_t* aq;
  const float* ad;
  const int32_t* asum;
  float* y;
  int lastValid;
  int mr = 1;        // activation rows (M of the call)
  int64_t ldy = 0;   // output row stride (N of the part); unused when mr = 1
  int64_t lda = 0;   // row stride of aq (≥ Kp; padded off a 4 KiB multiple); unused when mr = 1
  /** Set: rg0, nrg, y, lastValid and ldy are unused; the span claims its steps from the split as `role`. */
  struct SpanSplit* split = nullptr;
  int role = 0;
  /** The streams walk their row groups downwards (a stolen share's back): the kernels prefetch rg − rgStride. */
  bool backward = false;
};

// ---------------------------------------------------------------- the decode split (packed_matmul.cc)

/**
 * The row groups of one decode (span) call, shared by its threads. Task (role) r owns share r,
 * a contiguous range of row groups, which its span walks as NS streams side by side (lanes of
 * nrg / NS row groups; the nrg % NS leftover row groups after them, one at a time): step i is row
 * group i of every lane, steps ≥ nrg / NS the leftovers. The owner claims steps from the share's
 * front, one at a time; a role whose share is done claims them from the back of the share with
 * the most steps left (walking its lanes downwards), so the threads finish within about one step
 * of each other whatever their speeds, and a thread's consecutive steps are adjacent in every
 * stream (no stream restarts, except once where it starts stealing). The parts of a
 * concatenated weight only decide where each row group's outputs go (spanStepRows).
 */
struct alignas(64) SpanShare {  // no initializers: a split on the stack costs only the shares spanSplitInit sets
  std::atomic<uint64_t> taken;  // steps claimed: from the front (low 32 bits) | from the back (high 32 bits)
  int64_t rg0, nrg;
};
constexpr int kMaxSpanShares = 64;
struct SpanSplit {
  const uint8_t* data = nullptr;  // the weight's row groups (PackedWeight::data)
  int nShares = 0;
  SpanShare share[kMaxSpanShares];
  // The parts: row groups [rgAt[p], rgAt[p + 1]) write ys[p] (row stride nOf[p]).
  int nParts = 1;
  int64_t rgAt[kMaxParts + 1] = {};
  int64_t nOf[kMaxParts] = {};
  float* ys[kMaxParts] = {};
};
/** Share t of `shares` over RG row groups: [start(t), start(t + 1)), start(t) = t·RG / shares (prefetch.h's plan). */
inline int64_t spanShareStart(int64_t RG, int shares, int t) { return t * RG / shares; }
/** Steps of a share of nrg row groups walked by ns streams. */
inline int64_t spanSteps(int64_t nrg, int ns) { return nrg / ns + nrg % ns; }
/** Sets up the split of RG row groups in `shares` shares (≤ kMaxSpanShares), nothing claimed. */
void spanSplitInit(SpanSplit* sp, int64_t RG, int shares);
/** One claimed step: share, step index, and whether it came from the share's back. */
struct SpanStep {
  int share;
  int64_t step;
  bool back;
};
/** Claims the next step for `role` (its own share's front, else the back of the share with the most left); false: none left. */
bool spanClaim(SpanSplit* sp, int role, int ns, SpanStep* out);
/**
 * The row groups of a claimed step (ns of them, or 1 for a leftover step): their indices, output
 * (row 0 of the part's output at the row group's first row), valid rows and output row stride.
 */
int spanStepRows(const SpanSplit& sp, const SpanStep& s, int ns, int64_t* rg, float** y, int* valid, int64_t* ldy);
/**
 * Tests (addon spanSplitClaims): a split of rgAt[nParts] row groups (parts of partN rows) in `shares`
 * shares claimed with ns streams, one step per entry of order[n] by the role it names (round robin
 * after it until every role finds none left), or, with rt, by the roles running on rt's pool at once.
 * Per claimed row group 8 values: role, share, step, back, row group, its output's offset in one
 * buffer holding the parts back to back (part p at Σ_{q<p} partN[q]), valid rows, row stride.
 */
std::vector<double> spanSplitClaims(const int64_t* rgAt, const int64_t* partN, int nParts, int shares, int ns,
                                    const int32_t* order, int64_t n, Runtime* rt);

/**
 * Row-major 16-bit weights, M ≤ h16RowsMaxM: y[m, n] = Σ_k w[n, k]·x[m, k] for rows
 * n < rows, each row read once, sequentially (a few rows in flight per call). w is the
 * first row (any alignment), ldw the bytes between rows; x [M][ldx] f32; y[m·ldy + n].
 */
struct H16RowsArgs {
  const uint8_t* w;
  int64_t ldw;
  int64_t rows, K;
  H16Type type;
  const float* x;
  int64_t ldx;
  int M;
  float* y;
  int64_t ldy;
};

struct PackedKernels {
  const char* name;
  int mrQ4, mrQ8, mrF32, mrH16;  // activation rows per tile call: int4, int8, their exact f32 path, 16-bit
  void (*q4)(const PackedTileArgs& t);     // int8 activations
  void (*q8)(const PackedTileArgs& t);
  void (*q4f)(const PackedTileArgs& t);    // f32 activations, dequantized in registers (exact path)
  void (*q8f)(const PackedTileArgs& t);
  void (*h16)(const PackedTileArgs& t);    // f32 activations
  /** q[k] = round(x[k]/d_b), d_b = max|x| / 127 per block of Ba, x' = x (perm applied by the caller). */
  void (*quantize)(const float* x, int64_t K, int64_t Kp, int64_t Ba, int8_t* q, float* d, int32_t* sum);
  /** Bandwidth probe: reads `bytes` (a multiple of 256) from each of 4 streams at once; returns a checksum. */
  uint64_t (*readStreams)(const uint8_t* const* streams, size_t bytes);
  /** M ≤ spanMaxM over a span of row groups (bandwidth-shaped); null: the driver calls q4 / q8 per row group. */
  void (*q4Span)(const PackedSpanArgs& t);
  void (*q8Span)(const PackedSpanArgs& t);
  /** The largest M the spans take (larger M runs the tiles, mr rows at a time). */
  int spanMaxM = 1;
  /**
   * M ≥ gemmMinM (int8 activations) over a range of row groups, all M rows in one call
   * (t.mr = M, t.lda = Kp): the AMX level's tile GEMM; null: the per-row-group tiles.
   */
  void (*q4Gemm)(const PackedSpanArgs& t) = nullptr;
  void (*q8Gemm)(const PackedSpanArgs& t) = nullptr;
  int gemmMinM = 0;
  /** Row-major 16-bit views (LAYOUTS.md "Row-major views"), M ≤ h16RowsMaxM. */
  void (*h16Rows)(const H16RowsArgs& a) = nullptr;
  /**
   * Larger M: one row group of a row-major view into the f16x16 layout in a small buffer
   * (out [K][16], rows ≥ nValid zero), then the h16 tile runs on it: the pack is amortized
   * over the M activation rows. rows: row 0 (any alignment), ldw bytes between rows.
   */
  void (*h16Pack)(const uint8_t* rows, int64_t ldw, int nValid, int64_t K, uint16_t* out) = nullptr;
  int h16RowsMaxM = 0;
};

const PackedKernels* packedKernelsScalar();
const PackedKernels* packedKernelsAvx2();    // null when not compiled in
const PackedKernels* packedKernelsAvx512();  // null when not compiled in (AVX-512 F/BW/VL/VNNI)
/**
 * The AVX-512 table (the CPU runs it) plus the AMX-INT8 GEMM (packed_amx.cc); null when not
 * compiled in or when the CPU, the OS (XCR0) or Linux's arch_prctl permission refuses tiles.
 */
const PackedKernels* packedKernelsAmx(const PackedKernels* avx512);
/** The packed kernels for a kernel level name ("amx", "avx512": the best packed level at or below it the CPU runs). */
const PackedKernels* packedKernelsFor(const char* levelName);

/**
 * Streaming-read bandwidth of this machine (packed_probe.cc): a 2 MiB-aligned,
 * huge-page-advised buffer of `bytes` (allocated as the packed weights are), read by
 * `threads` pool threads, each its contiguous share as 4 concurrent streams; GB/s of
 * each of `reps` passes into out[reps].
 */
void readBandwidth(Runtime& rt, size_t bytes, int threads, int reps, double* out);

// ---------------------------------------------------------------- driver (packed_matmul.cc)

/** y[M, N] = x[M, K] · Wᵀ (+ bias); f32Acts selects the exact f32-activation path for Q4/Q8. */
void matmulPacked(Runtime& rt, const float* x, const PackedWeight& w, int64_t M, const float* bias, float* y,
                  bool f32Acts);
/**
 * The same for a concatenated weight, in one call: y_p[M, partN[p]] = x · W_pᵀ (+ bias_p,
 * each null or [partN[p]]) for every part p (one part for a plain weight). One
 * activation quantization and one static split of all row groups over the threads.
 */
void matmulPackedParts(Runtime& rt, const float* x, const PackedWeight& w, int64_t M, const float* const* bias,
                       float* const* ys, bool f32Acts);

}  // namespace qllm
