"""Preemption by swapping KV blocks to host memory (paper section 5).

- ``ops``: the batched gather/scatter operations (the ``csrc/`` extension, with a
  documented pure-PyTorch fallback);
- ``layout``: a vLLM KV cache as block-indexed views;
- ``host_pool``: the bounded host swap pool's bookkeeping (pure Python);
- ``connector``: the vLLM V1 KV connector that swaps preempted calls out and back in.
"""
