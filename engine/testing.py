"""Drive a vLLM V1 scheduler without a model, with fake model outputs.

This is how vLLM's own scheduler tests work (``tests/v1/core/utils.py``): build the
scheduler directly on a small KV-cache config, add ``Request`` objects, and loop
``schedule()`` / ``update_from_output()`` feeding one sampled token per scheduled
request. Used by the scheduler's unit tests and by the scheduling-overhead benchmark.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import torch
from vllm.config import CacheConfig, ModelConfig, SchedulerConfig, VllmConfig
from vllm.sampling_params import SamplingParams
from vllm.v1.core.kv_cache_utils import get_request_block_hasher, init_none_hash
from vllm.v1.core.sched.scheduler import Scheduler
from vllm.v1.kv_cache_interface import FullAttentionSpec, KVCacheConfig, KVCacheGroupSpec
from vllm.v1.outputs import ModelRunnerOutput
from vllm.v1.request import Request
from vllm.v1.structured_output import StructuredOutputManager

from autellix_engine.core.config import PolicyConfig, PolicyKind
from autellix_engine.core.wire import ProgramTag, scheduler_settings
from autellix_engine.extension.scheduler import AutellixScheduler
from autellix_engine.frontend.models import resolve_model

BLOCK_SIZE = 16
FAKE_TOKEN = 7  # the token every fake step "samples" (never EOS: ignore_eos is set)


def _sha256(data: Any) -> bytes:
    return hashlib.sha256(repr(data).encode()).digest()


@dataclass
class HarnessConfig:
    policy: str | None = "atlas"  # None: stock vLLM Scheduler (FCFS)
    max_num_seqs: int = 8
    max_num_batched_tokens: int = 8192
    num_blocks: int = 10_000
    max_model_len: int = 4096
    policy_config: PolicyConfig | None = None


def create_scheduler(cfg: HarnessConfig) -> Scheduler:
    """A scheduler over a fake KV cache of ``cfg.num_blocks`` blocks."""
    model_dir = resolve_model("tiny").path
    policy = PolicyKind(cfg.policy) if cfg.policy else PolicyKind.FCFS
    pconf = cfg.policy_config or PolicyConfig()
    vllm_config = VllmConfig(
        scheduler_config=SchedulerConfig(
            max_num_seqs=cfg.max_num_seqs,
            max_num_batched_tokens=cfg.max_num_batched_tokens,
            max_model_len=cfg.max_model_len,
            enable_chunked_prefill=True,
            async_scheduling=False,
            policy="priority" if cfg.policy not in (None, "fcfs") else "fcfs",
            is_encoder_decoder=False,
        ),
        model_config=ModelConfig(
            model=str(model_dir), skip_tokenizer_init=True, dtype="float32",
            max_model_len=cfg.max_model_len, seed=0,
        ),
        cache_config=CacheConfig(block_size=BLOCK_SIZE, enable_prefix_caching=True),
        additional_config=(scheduler_settings(policy.value, pconf.to_dict()) if cfg.policy
                           else {}),
    )
    kv_cache_config = KVCacheConfig(
        num_blocks=cfg.num_blocks,
        kv_cache_tensors=[],
        kv_cache_groups=[
            KVCacheGroupSpec(
                ["layer"],
                FullAttentionSpec(
                    block_size=BLOCK_SIZE, num_kv_heads=1, head_size=1, dtype=torch.float32
                ),
            )
        ],
    )
    vllm_config.cache_config.num_gpu_blocks = cfg.num_blocks
    cls = AutellixScheduler if cfg.policy else Scheduler
    return cls(
        vllm_config=vllm_config,
        kv_cache_config=kv_cache_config,
        structured_output_manager=StructuredOutputManager(vllm_config),
        block_size=BLOCK_SIZE,
        hash_block_size=BLOCK_SIZE,
        log_stats=True,
    )


_hash_ready = False


def make_request(
    request_id: str,
    prompt_len: int,
    max_tokens: int,
    *,
    program_id: str | None = None,
    program_service: float | None = None,
    arrival_time: float | None = None,
    first_token: int = 1,
    session_id: str | None = None,
    priority: int = 0,
    remaining_work: float | None = None,
    program_arrival: float | None = None,
    prompt_token_ids: list[int] | None = None,
    ended_programs: tuple[str, ...] = (),
) -> Request:
    """A request with a distinct prompt (no accidental prefix sharing), or with
    ``prompt_token_ids`` (e.g. a program's history, to hit its cached prefix)."""
    global _hash_ready
    if not _hash_ready:
        init_none_hash(_sha256)
        _hash_ready = True
    extra = None
    if program_id is not None:
        extra = ProgramTag(program_id, "main", program_service, 0.0,
                           remaining_work=remaining_work,
                           program_arrival=program_arrival,
                           ended_programs=ended_programs).to_extra_args()
    params = SamplingParams(max_tokens=max_tokens, ignore_eos=True, extra_args=extra)
    prompt = prompt_token_ids or [first_token + (i % 1000) for i in range(prompt_len)]
    return Request(
        request_id=request_id,
        prompt_token_ids=prompt,
        sampling_params=params,
        pooling_params=None,
        arrival_time=arrival_time,
        block_hasher=get_request_block_hasher(BLOCK_SIZE, _sha256),
        session_id=session_id,
        priority=priority,
    )


def fake_step(scheduler: Scheduler):
    """One engine step with a fake model: every scheduled request samples one token
    once its prompt is computed. Returns (scheduler_output, engine_core_outputs)."""
    out = scheduler.schedule()
    req_ids, sampled = [], []
    for req_id, n in out.num_scheduled_tokens.items():
        req = scheduler.requests[req_id]
        req_ids.append(req_id)
        done_prompt = req.num_computed_tokens >= req.num_tokens
        sampled.append([FAKE_TOKEN] if done_prompt else [])
    runner_out = ModelRunnerOutput(
        req_ids=req_ids,
        req_id_to_index={r: i for i, r in enumerate(req_ids)},
        sampled_token_ids=sampled,
    )
    return out, scheduler.update_from_output(out, runner_out)
