"""``AutellixSwapConnector``: swap-based preemption through vLLM V1's KV connector API.

vLLM V1 preempts by recomputation only. This connector restores swap (paper
section 5) without patching vLLM:

Scheduler side (in the engine core, beside ``autellix_engine.extension.scheduler``):

- ``on_preempt`` (called by our scheduler's ``_preempt_request`` just before vLLM
  frees the blocks) reserves one extent of the bounded host pool for the call's
  computed blocks and queues a swap-out; when the pool has no room the call is
  recomputed as in stock vLLM (a *fallback*).
- ``get_num_new_matched_tokens`` offers the swapped tokens (beyond any local prefix
  hit) when the call resumes, as a synchronous load; ``update_state_after_alloc``
  queues the swap-in into the blocks vLLM just allocated. A new call of a program
  whose retained KV went to the host pool (``autellix_engine.extension.retention_pins``) is offered
  that copy the same way, matched by block hash.
- ``build_connector_meta`` hands the step's swap-outs and swap-ins to the worker and
  returns swapped-in extents to the pool; ``request_finished`` frees the extent of a
  call aborted while swapped out.

Worker side: ``register_kv_caches`` turns the cache into block views and allocates
the host pool (pinned on CUDA); ``handle_preemptions`` (run before the step
touches any block) gathers each swap-out into its extent, ``start_load_kv`` (run
before the forward pass for synchronous loads, after new blocks are zeroed)
scatters each swap-in. Both use the batched ``autellix_engine.extension.swap_ops``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from vllm.distributed.kv_transfer.kv_connector.v1.base import (
    KVConnectorBase_V1,
    KVConnectorMetadata,
    KVConnectorRole,
    KVConnectorWorkerMetadata,
)

from autellix_engine.core.stats import SwapStats
from autellix_engine.core.swap_planner import StepSwaps, SwapOp, SwapPlanner
from autellix_engine.core.wire import POOL_BYTES_KEY
from autellix_engine.extension import swap_ops as ops
from autellix_engine.extension.swap_layout import cache_views

if TYPE_CHECKING:
    from vllm.config import VllmConfig
    from vllm.forward_context import ForwardContext
    from vllm.v1.core.kv_cache_manager import KVCacheBlocks
    from vllm.v1.core.sched.output import SchedulerOutput
    from vllm.v1.kv_cache_interface import KVCacheConfig
    from vllm.v1.outputs import KVConnectorOutput
    from vllm.v1.request import Request

logger = logging.getLogger(__name__)

#: ``kv_connector_extra_config`` key: host pool size in bytes.


@dataclass
class SwapMetadata(KVConnectorMetadata):
    """One step's swaps, scheduler -> worker."""

    swaps: StepSwaps = field(default_factory=StepSwaps)


@dataclass
class SwapWorkerMetadata(KVConnectorWorkerMetadata):
    """Seconds each call spent in swaps this step, worker -> scheduler."""

    seconds: dict[str, float] = field(default_factory=dict)

    def aggregate(self, other: KVConnectorWorkerMetadata) -> KVConnectorWorkerMetadata:
        if isinstance(other, SwapWorkerMetadata):
            for req_id, s in other.seconds.items():
                self.seconds[req_id] = max(
                    self.seconds.get(req_id, 0.0), s
                )  # ranks run in parallel
        return self


def bytes_per_block(kv_cache_config: KVCacheConfig) -> int:
    """Bytes of one KV block across all layers (what one host slot holds)."""
    return sum(
        g.kv_cache_spec.page_size_bytes * len(g.layer_names)
        for g in kv_cache_config.kv_cache_groups
    )


def pool_slots(vllm_config: VllmConfig, kv_cache_config: KVCacheConfig) -> int:
    extra = vllm_config.kv_transfer_config.kv_connector_extra_config or {}
    pool_bytes = int(extra.get(POOL_BYTES_KEY, 0))
    per_block = bytes_per_block(kv_cache_config)
    return pool_bytes // per_block if per_block else 0


class AutellixSwapConnector(KVConnectorBase_V1):
    """Swap preempted calls' KV blocks to a bounded host pool and back."""

    def __init__(
        self, vllm_config: VllmConfig, role: KVConnectorRole, kv_cache_config: KVCacheConfig
    ) -> None:
        super().__init__(vllm_config, role, kv_cache_config)
        if len(kv_cache_config.kv_cache_groups) != 1:
            raise ValueError(
                "preemption_mode='swap' supports models with one KV cache group "
                f"(full attention); this model has {len(kv_cache_config.kv_cache_groups)}. "
                "Use preemption_mode='recompute'."
            )
        self._block_size = vllm_config.cache_config.block_size
        self._slots = pool_slots(vllm_config, kv_cache_config)
        self._num_blocks = kv_cache_config.num_blocks
        self._expected_slot_bytes = bytes_per_block(kv_cache_config)
        self.planner = SwapPlanner(self._slots, self._block_size)  # scheduler side
        # worker side
        self._views: list[torch.Tensor] = []
        self._host: torch.Tensor | None = None
        self._slot_bytes = 0
        self._seconds: dict[str, float] = {}
        if role == KVConnectorRole.SCHEDULER:
            logger.info(
                "Swap preemption: host pool of %d blocks (%.1f MiB), ops backend %s",
                self._slots,
                self._slots * self._expected_slot_bytes / 2**20,
                ops.backend(),
            )

    @property
    def requires_kv_delivery(self) -> bool:
        return False  # a lost swap is a recomputation, never a wrong answer

    # ------------------------------------------------------------- scheduler side
    def on_preempt(self, request: Request, block_ids: list[int]) -> None:
        """Queue a swap-out of ``request``'s computed blocks (before vLLM frees them)."""
        self.planner.preempted(request.request_id, request.num_computed_tokens, block_ids)

    def get_num_new_matched_tokens(
        self, request: Request, num_computed_tokens: int
    ) -> tuple[int | None, bool]:
        if request.num_computed_tokens:
            return 0, False
        return self.planner.offer(
            request.request_id, request.num_tokens, num_computed_tokens, request.block_hashes
        ), False

    def update_state_after_alloc(
        self, request: Request, blocks: KVCacheBlocks, num_external_tokens: int
    ) -> None:
        if self.planner.awaits_blocks(request.request_id):
            self.planner.resumed(
                request.request_id, list(blocks.get_block_ids()[0]), num_external_tokens
            )

    def build_connector_meta(self, scheduler_output: SchedulerOutput) -> KVConnectorMetadata:
        return SwapMetadata(self.planner.take_step())

    def update_connector_output(self, connector_output: KVConnectorOutput) -> None:
        worker = connector_output.kv_connector_worker_meta
        if isinstance(worker, SwapWorkerMetadata):
            for req_id, seconds in worker.seconds.items():
                self.planner.add_seconds(req_id, seconds)

    def request_finished(
        self, request: Request, block_ids: list[int]
    ) -> tuple[bool, dict[str, Any] | None]:
        self.planner.finished(request.request_id)
        return False, None

    def pop_call_stats(self, req_id: str) -> SwapStats | None:
        """The call's swap counters (our scheduler reports them when the call ends)."""
        return self.planner.pop_stats(req_id)

    # ---------------------------------------------------------------- worker side
    def register_kv_caches(self, kv_caches: dict[str, torch.Tensor]) -> None:
        self._views = cache_views(kv_caches.values(), self._num_blocks)
        self._slot_bytes = ops.slot_bytes(self._views)
        if self._slot_bytes != self._expected_slot_bytes:
            raise RuntimeError(
                f"KV block views hold {self._slot_bytes} bytes per block, the cache "
                f"config {self._expected_slot_bytes}: unsupported KV cache layout"
            )
        pin = self._views[0].is_cuda
        self._host = torch.empty(self._slots * self._slot_bytes, dtype=torch.uint8, pin_memory=pin)
        logger.info(
            "Swap worker: %d block views, %d bytes per block, backend %s",
            len(self._views),
            self._slot_bytes,
            ops.backend(),
        )

    def _host_span(self, op: SwapOp) -> torch.Tensor:
        assert self._host is not None
        start = op.slot * self._slot_bytes
        return self._host[start : start + len(op.block_ids) * self._slot_bytes]

    def _run(self, op: SwapOp, gather: bool) -> None:
        ids = torch.tensor(op.block_ids, dtype=torch.int64)
        started = time.perf_counter()
        if gather:
            ops.gather_blocks(self._views, ids, self._host_span(op))
        else:
            ops.scatter_blocks(self._host_span(op), self._views, ids)
        self._seconds[op.req_id] = self._seconds.get(op.req_id, 0.0) + time.perf_counter() - started

    def handle_preemptions(self, kv_connector_metadata: KVConnectorMetadata) -> None:
        if isinstance(kv_connector_metadata, SwapMetadata):
            for op in kv_connector_metadata.swaps.swap_out:
                self._run(op, gather=True)

    def start_load_kv(self, forward_context: ForwardContext, **kwargs: Any) -> None:
        meta = self._get_connector_metadata()
        if isinstance(meta, SwapMetadata):
            for op in meta.swaps.swap_in:
                self._run(op, gather=False)

    def wait_for_layer_load(self, layer_name: str) -> None:
        return None

    def save_kv_layer(
        self, layer_name: str, kv_layer: torch.Tensor, attn_metadata: Any, **kwargs: Any
    ) -> None:
        return None

    def wait_for_save(self) -> None:
        return None

    def build_connector_worker_meta(self) -> KVConnectorWorkerMetadata | None:
        if not self._seconds:
            return None
        meta, self._seconds = SwapWorkerMetadata(self._seconds), {}
        return meta
