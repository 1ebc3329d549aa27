// CUDA path of the swap extension: one small upload of the view table and block
// ids, one kernel launch, one transfer per direction (device staging <-> host).
#include "swap_ops.h"

#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>

#include "swap_kernels.h"

namespace autellix_swap {
namespace {

// The view table and block ids in one int64 device tensor:
// [ptrs | strides | bytes | offsets | block ids].
torch::Tensor upload_table(const ViewGeometry& geo, const torch::Tensor& block_ids,
                           const torch::Device& device) {
  const int64_t n_views = static_cast<int64_t>(geo.ptrs.size());
  auto host = torch::empty({4 * n_views + block_ids.numel()},
                           torch::dtype(torch::kInt64).pinned_memory(true));
  int64_t* p = host.data_ptr<int64_t>();
  for (int64_t v = 0; v < n_views; ++v) {
    p[v] = static_cast<int64_t>(geo.ptrs[v]);
    p[n_views + v] = geo.strides[v];
    p[2 * n_views + v] = geo.bytes[v];
    p[3 * n_views + v] = geo.offsets[v];
  }
  std::memcpy(p + 4 * n_views, block_ids.data_ptr<int64_t>(), block_ids.numel() * sizeof(int64_t));
  return host.to(device, /*non_blocking=*/true);
}

ViewTable table_of(const torch::Tensor& dev, const ViewGeometry& geo) {
  const int64_t n_views = static_cast<int64_t>(geo.ptrs.size());
  const int64_t* d = dev.data_ptr<int64_t>();
  return ViewTable{reinterpret_cast<const uint64_t*>(d), d + n_views, d + 2 * n_views,
                   d + 3 * n_views, static_cast<int32_t>(n_views), geo.max_view_bytes};
}

}  // namespace

// One batched swap: gather (blocks -> staging -> host) or scatter (host -> staging ->
// blocks). Synchronous: the caller may reuse the host buffer or the blocks at once.
void batched_swap(const std::vector<torch::Tensor>& views, const ViewGeometry& geo,
                  const torch::Tensor& block_ids, char* host, bool gather) {
  const c10::cuda::CUDAGuard guard(views[0].device());
  auto stream = at::cuda::getCurrentCUDAStream();
  const int64_t n_blocks = block_ids.numel();
  const int64_t total = n_blocks * geo.slot_bytes;
  auto dev = upload_table(geo, block_ids, views[0].device());
  auto staging = torch::empty({total}, torch::dtype(torch::kUInt8).device(views[0].device()));
  char* buffer = static_cast<char*>(staging.data_ptr());
  const ViewTable table = table_of(dev, geo);
  const int64_t* ids = table.view_offsets + geo.ptrs.size();
  if (gather) {
    C10_CUDA_CHECK(launch_gather(table, ids, n_blocks, geo.slot_bytes, buffer, stream));
    C10_CUDA_CHECK(cudaMemcpyAsync(host, buffer, total, cudaMemcpyDeviceToHost, stream));
  } else {
    C10_CUDA_CHECK(cudaMemcpyAsync(buffer, host, total, cudaMemcpyHostToDevice, stream));
    C10_CUDA_CHECK(launch_scatter(table, ids, n_blocks, geo.slot_bytes, buffer, stream));
  }
  C10_CUDA_CHECK(cudaStreamSynchronize(stream));
}

void gather_blocks_cuda(const std::vector<torch::Tensor>& views, const ViewGeometry& geo,
                        const torch::Tensor& block_ids, torch::Tensor& out) {
  batched_swap(views, geo, block_ids, static_cast<char*>(out.data_ptr()), /*gather=*/true);
}

void scatter_blocks_cuda(const torch::Tensor& src, const std::vector<torch::Tensor>& views,
                         const ViewGeometry& geo, const torch::Tensor& block_ids) {
  batched_swap(views, geo, block_ids, static_cast<char*>(src.data_ptr()), /*gather=*/false);
}

// Baseline for benchmarks/swap_kernel.py: what vLLM's swap_blocks does, one
// cudaMemcpyAsync per (block, view) straight between the cache and the host buffer.
void copy_blocks_per_block_cuda(const std::vector<torch::Tensor>& views, const ViewGeometry& geo,
                                const torch::Tensor& block_ids, torch::Tensor& host, bool gather) {
  const c10::cuda::CUDAGuard guard(views[0].device());
  auto stream = at::cuda::getCurrentCUDAStream();
  const int64_t* ids = block_ids.data_ptr<int64_t>();
  char* buffer = static_cast<char*>(host.data_ptr());
  for (int64_t b = 0; b < block_ids.numel(); ++b) {
    for (size_t v = 0; v < geo.ptrs.size(); ++v) {
      char* block = reinterpret_cast<char*>(geo.ptrs[v]) + ids[b] * geo.strides[v];
      char* slot = buffer + b * geo.slot_bytes + geo.offsets[v];
      C10_CUDA_CHECK(gather ? cudaMemcpyAsync(slot, block, geo.bytes[v], cudaMemcpyDeviceToHost, stream)
                            : cudaMemcpyAsync(block, slot, geo.bytes[v], cudaMemcpyHostToDevice, stream));
    }
  }
  C10_CUDA_CHECK(cudaStreamSynchronize(stream));
}

}  // namespace autellix_swap
