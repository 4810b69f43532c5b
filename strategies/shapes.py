"""The weight shapes (N, K) of real FP8 block-quantized checkpoints (128 x 128 weight blocks), TP = 1,
each from its model's config.json: what a served model hands the GEMM. Under tensor parallelism t a
column-parallel layer has N / t and a row-parallel one K / t.

>>> weight_shapes(max_elements=2**24).example()[0] % 16
0
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument


@dataclass(frozen=True)
class Shape:
    """A linear layer, ``out[M, N] = x[M, K] @ W[N, K].T``; ``source``: its config.json formula."""

    id: str
    model: str
    layer: str
    n: int
    k: int
    source: str
    note: str = ""

    def label(self) -> str:
        return f"{self.id} N={self.n} K={self.k}"


_DS = "deepseek-ai/DeepSeek-V3"  # also DeepSeek-R1: the same config
_Q8 = "Qwen/Qwen3-8B-FP8"
_Q32 = "Qwen/Qwen3-32B-FP8"
_Q235 = "Qwen/Qwen3-235B-A22B-FP8"
_L8 = "meta-llama/Llama-3.1-8B-Instruct"
_L70 = "meta-llama/Llama-3.3-70B-Instruct"

SHAPES: tuple[Shape, ...] = (
    # DeepSeek-V3 config.json: hidden_size 7168, intermediate_size 18432, moe_intermediate_size 2048,
    # n_shared_experts 1, q_lora_rank 1536, kv_lora_rank 512, qk_nope_head_dim 128,
    # qk_rope_head_dim 64, v_head_dim 128, num_attention_heads 128;
    # quantization_config.weight_block_size [128, 128].
    Shape(
        "dsv3.fused_qkv_a_proj",
        _DS,
        "self_attn.fused_qkv_a_proj",
        2112,
        7168,
        "q_lora_rank + kv_lora_rank + qk_rope_head_dim x hidden_size",
        "what vLLM runs: q_a_proj and kv_a_proj_with_mqa fused; N = 16.5 blocks, the last one partial",
    ),
    Shape(
        "dsv3.q_b_proj",
        _DS,
        "self_attn.q_b_proj",
        24576,
        1536,
        "num_attention_heads * (qk_nope_head_dim + qk_rope_head_dim) x q_lora_rank",
    ),
    Shape(
        "dsv3.kv_b_proj",
        _DS,
        "self_attn.kv_b_proj",
        32768,
        512,
        "num_attention_heads * (qk_nope_head_dim + v_head_dim) x kv_lora_rank",
        "an FP8 GEMM in prefill only (MLA decode absorbs it into bf16 W_UK/W_UV)",
    ),
    Shape(
        "dsv3.o_proj", _DS, "self_attn.o_proj", 7168, 16384, "hidden_size x num_attention_heads * v_head_dim"
    ),
    Shape(
        "dsv3.mlp.gate_up_proj",
        _DS,
        "mlp.gate_up_proj (dense layers 0-2)",
        36864,
        7168,
        "2 * intermediate_size x hidden_size",
        "first_k_dense_replace = 3 dense layers",
    ),
    Shape(
        "dsv3.mlp.down_proj",
        _DS,
        "mlp.down_proj (dense layers 0-2)",
        7168,
        18432,
        "hidden_size x intermediate_size",
    ),
    Shape(
        "dsv3.mlp.gate_up_proj.tp2",
        _DS,
        "mlp.gate_up_proj (dense layers 0-2) under tensor parallelism 2",
        18432,
        7168,
        "2 * intermediate_size / 2 x hidden_size",
        "a column-parallel layer's N / TP: what each of two GPUs runs",
    ),
    Shape(
        "dsv3.mlp.down_proj.tp2",
        _DS,
        "mlp.down_proj (dense layers 0-2) under tensor parallelism 2, K-split",
        7168,
        9216,
        "hidden_size x intermediate_size / 2",
        "a row-parallel layer's K / TP",
    ),
    Shape(
        "dsv3.shared.gate_up_proj",
        _DS,
        "mlp.shared_experts.gate_up_proj",
        4096,
        7168,
        "2 * moe_intermediate_size * n_shared_experts x hidden_size",
    ),
    Shape(
        "dsv3.shared.down_proj",
        _DS,
        "mlp.shared_experts.down_proj",
        7168,
        2048,
        "hidden_size x moe_intermediate_size * n_shared_experts",
    ),
    # Qwen3-8B-FP8 config.json: hidden_size 4096, intermediate_size 12288, num_attention_heads 32,
    # num_key_value_heads 8, head_dim 128; quantization_config.weight_block_size [128, 128].
    Shape(
        "qwen3-8b.qkv_proj",
        _Q8,
        "self_attn.qkv_proj",
        6144,
        4096,
        "(num_attention_heads + 2 * num_key_value_heads) * head_dim x hidden_size",
    ),
    Shape(
        "qwen3-8b.o_proj", _Q8, "self_attn.o_proj", 4096, 4096, "hidden_size x num_attention_heads * head_dim"
    ),
    Shape(
        "qwen3-8b.gate_up_proj", _Q8, "mlp.gate_up_proj", 24576, 4096, "2 * intermediate_size x hidden_size"
    ),
    Shape("qwen3-8b.down_proj", _Q8, "mlp.down_proj", 4096, 12288, "hidden_size x intermediate_size"),
    # Qwen3-32B-FP8 config.json: hidden_size 5120, intermediate_size 25600, num_attention_heads 64,
    # num_key_value_heads 8, head_dim 128; quantization_config.weight_block_size [128, 128].
    Shape(
        "qwen3-32b.qkv_proj",
        _Q32,
        "self_attn.qkv_proj",
        10240,
        5120,
        "(num_attention_heads + 2 * num_key_value_heads) * head_dim x hidden_size",
    ),
    Shape(
        "qwen3-32b.o_proj",
        _Q32,
        "self_attn.o_proj",
        5120,
        8192,
        "hidden_size x num_attention_heads * head_dim",
    ),
    Shape(
        "qwen3-32b.gate_up_proj", _Q32, "mlp.gate_up_proj", 51200, 5120, "2 * intermediate_size x hidden_size"
    ),
    Shape("qwen3-32b.down_proj", _Q32, "mlp.down_proj", 5120, 25600, "hidden_size x intermediate_size"),
    # Qwen3-235B-A22B-FP8 config.json: hidden_size 4096, moe_intermediate_size 1536,
    # num_attention_heads 64, num_key_value_heads 4, head_dim 128; weight_block_size [128, 128].
    Shape(
        "qwen3-235b.qkv_proj",
        _Q235,
        "self_attn.qkv_proj",
        9216,
        4096,
        "(num_attention_heads + 2 * num_key_value_heads) * head_dim x hidden_size",
    ),
    Shape(
        "qwen3-235b.o_proj",
        _Q235,
        "self_attn.o_proj",
        4096,
        8192,
        "hidden_size x num_attention_heads * head_dim",
    ),
    Shape(
        "qwen3-235b.expert.gate_up_proj",
        _Q235,
        "mlp.experts[e].gate_up_proj",
        3072,
        4096,
        "2 * moe_intermediate_size x hidden_size",
    ),
    Shape(
        "qwen3-235b.expert.down_proj",
        _Q235,
        "mlp.experts[e].down_proj",
        4096,
        1536,
        "hidden_size x moe_intermediate_size",
    ),
    # Llama-3.1-8B config.json: hidden_size 4096, intermediate_size 14336, num_attention_heads 32,
    # num_key_value_heads 8, head_dim 128 (FP8 block checkpoints: llm-compressor's FP8_BLOCK scheme).
    Shape(
        "llama3-8b.qkv_proj",
        _L8,
        "self_attn.qkv_proj",
        6144,
        4096,
        "(num_attention_heads + 2 * num_key_value_heads) * head_dim x hidden_size",
    ),
    Shape(
        "llama3-8b.gate_up_proj", _L8, "mlp.gate_up_proj", 28672, 4096, "2 * intermediate_size x hidden_size"
    ),
    Shape("llama3-8b.down_proj", _L8, "mlp.down_proj", 4096, 14336, "hidden_size x intermediate_size"),
    # Llama-3.3-70B config.json: hidden_size 8192, intermediate_size 28672, num_attention_heads 64,
    # num_key_value_heads 8, head_dim 128.
    Shape(
        "llama3-70b.qkv_proj",
        _L70,
        "self_attn.qkv_proj",
        10240,
        8192,
        "(num_attention_heads + 2 * num_key_value_heads) * head_dim x hidden_size",
    ),
    Shape(
        "llama3-70b.o_proj",
        _L70,
        "self_attn.o_proj",
        8192,
        8192,
        "hidden_size x num_attention_heads * head_dim",
    ),
    Shape(
        "llama3-70b.gate_up_proj",
        _L70,
        "mlp.gate_up_proj",
        57344,
        8192,
        "2 * intermediate_size x hidden_size",
    ),
    Shape("llama3-70b.down_proj", _L70, "mlp.down_proj", 8192, 28672, "hidden_size x intermediate_size"),
    # Checkpoint tensors that vLLM fuses into fused_qkv_a_proj.
    Shape(
        "dsv3.q_a_proj",
        _DS,
        "self_attn.q_a_proj",
        1536,
        7168,
        "q_lora_rank x hidden_size",
        "checkpoint tensor; vLLM runs it inside fused_qkv_a_proj",
    ),
    Shape(
        "dsv3.kv_a_proj_with_mqa",
        _DS,
        "self_attn.kv_a_proj_with_mqa",
        576,
        7168,
        "kv_lora_rank + qk_rope_head_dim x hidden_size",
        "checkpoint tensor (vLLM fuses it); N = 4.5 blocks, partial last block kept",
    ),
)
BY_ID = {s.id: s for s in SHAPES}


def weight_shapes(max_elements: int | None = None, shapes=SHAPES) -> st.SearchStrategy[tuple[int, int]]:
    """``(N, K)`` of a real checkpoint's layer; ``max_elements`` keeps those with ``N * K`` at most that
    (e.g. a compute budget for one row of M). Shrinks toward the smallest."""
    chosen = [s for s in shapes if max_elements is None or s.n * s.k <= max_elements]
    if not chosen:
        raise InvalidArgument(f"weight_shapes: no shape with N*K <= {max_elements}")
    return st.sampled_from(sorted(((s.n, s.k) for s in chosen), key=lambda nk: nk[0] * nk[1]))
