// CUDA side of the swap extension: one kernel launch moves every (block, view)
// segment of a swap. See swap_kernels.h for the layout.
#include "swap_kernels.h"

namespace autellix_swap {
namespace {

constexpr int kThreads = 256;
// Segments are split into chunks so that a grid has enough CTAs even for few
// blocks, and each CTA copies at most this many bytes.
constexpr int64_t kChunkBytes = 16 * 1024;

template <bool kGather>
__global__ void copy_segments(const uint64_t* __restrict__ view_ptrs,
                              const int64_t* __restrict__ view_strides,
                              const int64_t* __restrict__ view_bytes,
                              const int64_t* __restrict__ view_offsets, int32_t n_views,
                              const int64_t* __restrict__ block_ids, int64_t slot_bytes,
                              char* __restrict__ buffer) {
  const int64_t segment = blockIdx.x;
  const int64_t b = segment / n_views;
  const int32_t v = static_cast<int32_t>(segment % n_views);
  const int64_t len = view_bytes[v];
  const int64_t begin = static_cast<int64_t>(blockIdx.y) * kChunkBytes;
  if (begin >= len) return;
  const int64_t end = begin + kChunkBytes < len ? begin + kChunkBytes : len;

  char* block = reinterpret_cast<char*>(view_ptrs[v]) + block_ids[b] * view_strides[v];
  char* slot = buffer + b * slot_bytes + view_offsets[v];
  char* dst = kGather ? slot : block;
  const char* src = kGather ? block : slot;

  const bool aligned16 = ((reinterpret_cast<uintptr_t>(src + begin) |
                           reinterpret_cast<uintptr_t>(dst + begin) | (end - begin)) & 15) == 0;
  if (aligned16) {
    const int4* s = reinterpret_cast<const int4*>(src + begin);
    int4* d = reinterpret_cast<int4*>(dst + begin);
    const int64_t n = (end - begin) / 16;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) d[i] = s[i];
  } else {
    for (int64_t i = begin + threadIdx.x; i < end; i += blockDim.x) dst[i] = src[i];
  }
}

template <bool kGather>
cudaError_t launch(const ViewTable& views, const int64_t* block_ids, int64_t n_blocks,
                   int64_t slot_bytes, char* buffer, cudaStream_t stream) {
  if (n_blocks == 0 || views.n_views == 0) return cudaSuccess;
  const int64_t segments = n_blocks * views.n_views;
  if (segments > 0x7fffffffLL) return cudaErrorInvalidValue;
  const int64_t chunks = (views.max_view_bytes + kChunkBytes - 1) / kChunkBytes;
  if (chunks > 65535) return cudaErrorInvalidValue;
  dim3 grid(static_cast<unsigned>(segments), static_cast<unsigned>(chunks > 0 ? chunks : 1));
  copy_segments<kGather><<<grid, kThreads, 0, stream>>>(
      views.view_ptrs, views.view_strides, views.view_bytes, views.view_offsets, views.n_views,
      block_ids, slot_bytes, buffer);
  return cudaGetLastError();
}

}  // namespace

cudaError_t launch_gather(const ViewTable& views, const int64_t* block_ids, int64_t n_blocks,
                          int64_t slot_bytes, char* buffer, cudaStream_t stream) {
  return launch<true>(views, block_ids, n_blocks, slot_bytes, buffer, stream);
}

cudaError_t launch_scatter(const ViewTable& views, const int64_t* block_ids, int64_t n_blocks,
                           int64_t slot_bytes, const char* buffer, cudaStream_t stream) {
  return launch<false>(views, block_ids, n_blocks, slot_bytes, const_cast<char*>(buffer),
                       stream);
}

}  // namespace autellix_swap
