// Row-major 16-bit views of a mapped file (native/LAYOUTS.md "Row-major views").
//
// An unquantized F16/BF16 safetensors shard is mapped read-only (MAP_SHARED) once per
// load; each linear becomes a PackedWeight whose rows are the stored bytes, so loading
// copies nothing: the file's pages are already in the page cache, while fresh anonymous
// memory for the f16x16 copy is touched at 0.5–0.9 GB/s on this KVM host (the kernel
// zeroing pages; eval/reports/bench-throughput.md). The mapping lives as long as the
// last view of it (a reference per view; the loader drops its own when done).
//
// `populate` maps with MAP_POPULATE: the page tables of the whole file are filled at
// load (page-cache pages: no read, no zeroing) instead of one minor fault per 4 KiB
// page in the first decode steps.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>

#include "packed.h"

namespace qllm {

struct MappedFile {
  uint8_t* base;
  size_t bytes;
  std::atomic<int> refs;
};

MappedFile* mapFile(const char* path, bool populate, MapStatus* status, int* err) {
#if defined(__linux__)
  *err = 0;
  const int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    *err = errno;
    *status = MapStatus::OpenFailed;
    return nullptr;
  }
  struct stat st;
  if (fstat(fd, &st) != 0 || st.st_size <= 0) {
    *err = errno;
    close(fd);
    *status = MapStatus::MapFailed;
    return nullptr;
  }
  const size_t bytes = static_cast<size_t>(st.st_size);
  void* p = mmap(nullptr, bytes, PROT_READ, MAP_SHARED | (populate ? MAP_POPULATE : 0), fd, 0);
  *err = p == MAP_FAILED ? errno : 0;
  close(fd);  // the mapping keeps the file
  if (p == MAP_FAILED) {
    *status = MapStatus::MapFailed;
    return nullptr;
  }
  *status = MapStatus::Ok;
  return new MappedFile{static_cast<uint8_t*>(p), bytes, {1}};
#else
  (void)path;
  (void)populate;
  *err = 0;
  *status = MapStatus::Unsupported;
  return nullptr;
#endif
}

size_t mappedBytes(const MappedFile* f) { return f->bytes; }

void retainFile(MappedFile* f) { f->refs.fetch_add(1, std::memory_order_relaxed); }

void releaseFile(MappedFile* f) {
  if (f == nullptr || f->refs.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
#if defined(__linux__)
  munmap(f->base, f->bytes);
#endif
  delete f;
}

PackedWeight* view16(MappedFile* f, size_t offset, H16Type type, int64_t N, int64_t K) {
  const size_t rowBytes = static_cast<size_t>(K) * 2;
  if (N < 1 || K < 1 || offset > f->bytes || static_cast<size_t>(N) > (f->bytes - offset) / rowBytes) return nullptr;
  auto* w = new PackedWeight();
  w->L = h16Layout(type, N, K, true);
  w->data = f->base + offset;
  w->bytes = static_cast<size_t>(N) * rowBytes;
  w->partData[0] = w->data;
  w->files[0] = f;
  retainFile(f);
  return w;
}

}  // namespace qllm
