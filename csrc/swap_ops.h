// Shared declarations of the swap extension's PyTorch side.
#pragma once

#include <torch/extension.h>

#include <vector>

namespace autellix_swap {

// One view's geometry: base pointer and per-block stride and length, in bytes.
struct ViewGeometry {
  std::vector<uint64_t> ptrs;
  std::vector<int64_t> strides;
  std::vector<int64_t> bytes;
  std::vector<int64_t> offsets;  // of each view inside a block's slot
  int64_t slot_bytes = 0;
  int64_t max_view_bytes = 0;
};

// Checks the views and block ids and returns their geometry (errors are ValueErrors).
ViewGeometry describe_views(const std::vector<torch::Tensor>& views,
                            const torch::Tensor& block_ids);

#ifdef AUTELLIX_WITH_CUDA
void gather_blocks_cuda(const std::vector<torch::Tensor>& views, const ViewGeometry& geo,
                        const torch::Tensor& block_ids, torch::Tensor& out);
void scatter_blocks_cuda(const torch::Tensor& src, const std::vector<torch::Tensor>& views,
                         const ViewGeometry& geo, const torch::Tensor& block_ids);
void copy_blocks_per_block_cuda(const std::vector<torch::Tensor>& views, const ViewGeometry& geo,
                                const torch::Tensor& block_ids, torch::Tensor& host, bool gather);
#endif

}  // namespace autellix_swap
