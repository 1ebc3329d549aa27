// Batched KV-block gather/scatter kernels (CUDA), free of PyTorch headers so that
// `nvcc -c swap_kernels.cu` builds anywhere nvcc exists (CI checks exactly that).
//
// Layout. A swap moves `n_blocks` KV blocks. Each block lives in `n_views` views
// (one per layer and per K/V half), view v holding a block's bytes contiguously at
// `view_ptrs[v] + block_id * view_strides[v]`, `view_bytes[v]` long. The contiguous
// buffer holds the swap block after block; inside a block, view after view:
//   buffer + b * slot_bytes + view_offsets[v],  slot_bytes = sum(view_bytes).
#pragma once

#include <cstdint>
#include <cuda_runtime.h>

namespace autellix_swap {

// All pointer arrays below are device-resident (one small upload per swap).
struct ViewTable {
  const uint64_t* view_ptrs;
  const int64_t* view_strides;
  const int64_t* view_bytes;
  const int64_t* view_offsets;
  int32_t n_views;
  int64_t max_view_bytes;  // host-side: the longest view segment (sizes the grid)
};

// buffer[b] <- blocks[block_ids[b]] for all views; one launch.
cudaError_t launch_gather(const ViewTable& views, const int64_t* block_ids, int64_t n_blocks,
                          int64_t slot_bytes, char* buffer, cudaStream_t stream);

// blocks[block_ids[b]] <- buffer[b] for all views; one launch.
cudaError_t launch_scatter(const ViewTable& views, const int64_t* block_ids, int64_t n_blocks,
                           int64_t slot_bytes, const char* buffer, cudaStream_t stream);

}  // namespace autellix_swap
