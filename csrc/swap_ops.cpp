// The swap extension's operators and their CPU implementation (multi-threaded).
//
//   gather_blocks(views, block_ids, out):  out <- the blocks, one contiguous buffer
//   scatter_blocks(src, views, block_ids): the blocks <- src
//
// `views` are tensors whose dim 0 indexes KV blocks and whose other dims are
// contiguous (e.g. kv_cache[0] and kv_cache[1] of every layer). `block_ids` is a
// CPU int64 tensor. `out`/`src` are contiguous uint8 host tensors (pinned when the
// views are on a GPU) of at least len(block_ids) * sum(view block bytes) bytes.
#include "swap_ops.h"

#include <ATen/Parallel.h>

#include <cstring>

namespace autellix_swap {

ViewGeometry describe_views(const std::vector<torch::Tensor>& views,
                            const torch::Tensor& block_ids) {
  TORCH_CHECK_VALUE(!views.empty(), "views must not be empty");
  TORCH_CHECK_VALUE(block_ids.device().is_cpu() && block_ids.scalar_type() == torch::kInt64 &&
                        block_ids.dim() == 1 && block_ids.is_contiguous(),
                    "block_ids must be a contiguous 1-D int64 CPU tensor");
  ViewGeometry geo;
  int64_t min_blocks = -1;
  for (size_t i = 0; i < views.size(); ++i) {
    const auto& v = views[i];
    TORCH_CHECK_VALUE(v.dim() >= 1, "view ", i, " must have a block dimension");
    TORCH_CHECK_VALUE(v.device() == views[0].device(), "all views must be on one device");
    // The bytes of one block must be contiguous: dims 1.. form a dense row.
    int64_t expected = 1;
    for (int64_t d = v.dim() - 1; d >= 1; --d) {
      TORCH_CHECK_VALUE(v.size(d) == 1 || v.stride(d) == expected, "view ", i,
                        " is not contiguous inside a block (dim ", d, ")");
      expected *= v.size(d);
    }
    const int64_t elem = v.element_size();
    const int64_t bytes = expected * elem;
    geo.ptrs.push_back(reinterpret_cast<uint64_t>(v.data_ptr()));
    geo.strides.push_back(v.stride(0) * elem);
    geo.bytes.push_back(bytes);
    geo.offsets.push_back(geo.slot_bytes);
    geo.slot_bytes += bytes;
    geo.max_view_bytes = std::max(geo.max_view_bytes, bytes);
    min_blocks = min_blocks < 0 ? v.size(0) : std::min(min_blocks, v.size(0));
  }
  const int64_t* ids = block_ids.data_ptr<int64_t>();
  for (int64_t b = 0; b < block_ids.numel(); ++b) {
    TORCH_CHECK_VALUE(ids[b] >= 0 && ids[b] < min_blocks, "block id ", ids[b],
                      " out of range [0, ", min_blocks, ")");
  }
  return geo;
}

namespace {

void check_host_buffer(const torch::Tensor& buf, int64_t need, const char* name) {
  TORCH_CHECK_VALUE(buf.device().is_cpu() && buf.scalar_type() == torch::kUInt8 &&
                        buf.is_contiguous(),
                    name, " must be a contiguous uint8 CPU tensor");
  TORCH_CHECK_VALUE(buf.numel() >= need, name, " holds ", buf.numel(), " bytes; the swap needs ",
                    need);
}

// Copies every (block, view) segment, spread over ATen's intra-op threads.
template <bool kGather>
void copy_segments_cpu(const ViewGeometry& geo, const torch::Tensor& block_ids, char* buffer) {
  const int64_t n_views = static_cast<int64_t>(geo.ptrs.size());
  const int64_t n_segments = block_ids.numel() * n_views;
  const int64_t* ids = block_ids.data_ptr<int64_t>();
  // Grain: enough segments per task that thread start-up is amortised (~256 KiB).
  const int64_t grain = std::max<int64_t>(1, (256 << 10) / std::max<int64_t>(1, geo.max_view_bytes));
  at::parallel_for(0, n_segments, grain, [&](int64_t begin, int64_t end) {
    for (int64_t s = begin; s < end; ++s) {
      const int64_t b = s / n_views, v = s % n_views;
      char* block = reinterpret_cast<char*>(geo.ptrs[v]) + ids[b] * geo.strides[v];
      char* slot = buffer + b * geo.slot_bytes + geo.offsets[v];
      if (kGather) {
        std::memcpy(slot, block, geo.bytes[v]);
      } else {
        std::memcpy(block, slot, geo.bytes[v]);
      }
    }
  });
}

}  // namespace

void gather_blocks(const std::vector<torch::Tensor>& views, const torch::Tensor& block_ids,
                   torch::Tensor out) {
  const ViewGeometry geo = describe_views(views, block_ids);
  check_host_buffer(out, block_ids.numel() * geo.slot_bytes, "out");
  if (block_ids.numel() == 0) return;
  if (views[0].device().is_cpu()) {
    copy_segments_cpu<true>(geo, block_ids, static_cast<char*>(out.data_ptr()));
    return;
  }
#ifdef AUTELLIX_WITH_CUDA
  TORCH_CHECK_VALUE(views[0].is_cuda(), "views must be CPU or CUDA tensors");
  gather_blocks_cuda(views, geo, block_ids, out);
#else
  TORCH_CHECK(false, "this build of the swap extension has no CUDA support");
#endif
}

void scatter_blocks(torch::Tensor src, const std::vector<torch::Tensor>& views,
                    const torch::Tensor& block_ids) {
  const ViewGeometry geo = describe_views(views, block_ids);
  check_host_buffer(src, block_ids.numel() * geo.slot_bytes, "src");
  if (block_ids.numel() == 0) return;
  if (views[0].device().is_cpu()) {
    copy_segments_cpu<false>(geo, block_ids, static_cast<char*>(src.data_ptr()));
    return;
  }
#ifdef AUTELLIX_WITH_CUDA
  TORCH_CHECK_VALUE(views[0].is_cuda(), "views must be CPU or CUDA tensors");
  scatter_blocks_cuda(src, views, geo, block_ids);
#else
  TORCH_CHECK(false, "this build of the swap extension has no CUDA support");
#endif
}

// Benchmark baseline only (CUDA builds): one copy per (block, view).
void copy_blocks_per_block(const std::vector<torch::Tensor>& views, const torch::Tensor& block_ids,
                           torch::Tensor host, bool gather) {
  const ViewGeometry geo = describe_views(views, block_ids);
  check_host_buffer(host, block_ids.numel() * geo.slot_bytes, "host");
#ifdef AUTELLIX_WITH_CUDA
  TORCH_CHECK_VALUE(views[0].is_cuda(), "the per-block baseline is CUDA-only");
  copy_blocks_per_block_cuda(views, geo, block_ids, host, gather);
#else
  TORCH_CHECK(false, "this build of the swap extension has no CUDA support");
#endif
}

bool has_cuda() {
#ifdef AUTELLIX_WITH_CUDA
  return true;
#else
  return false;
#endif
}

}  // namespace autellix_swap

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "Autellix batched KV-block swap (gather/scatter) operations";
  m.def("gather_blocks", &autellix_swap::gather_blocks, "Gather KV blocks into one host buffer",
        pybind11::arg("views"), pybind11::arg("block_ids"), pybind11::arg("out"));
  m.def("scatter_blocks", &autellix_swap::scatter_blocks,
        "Scatter one host buffer back into KV blocks", pybind11::arg("src"),
        pybind11::arg("views"), pybind11::arg("block_ids"));
  m.def("copy_blocks_per_block", &autellix_swap::copy_blocks_per_block,
        "Benchmark baseline: one cudaMemcpyAsync per block and view", pybind11::arg("views"),
        pybind11::arg("block_ids"), pybind11::arg("host"), pybind11::arg("gather"));
  m.def("has_cuda", &autellix_swap::has_cuda, "Whether this build has the CUDA path");
}
