"""DeepSeek-V3 / V2 model in PyTorch, written from docs/MODEL_SPEC.md (shared/docs).

One module serves three purposes:
  * the trainable model for the bundled tiny checkpoint (tools/train/train.py),
  * the float32 reference forward for any checkpoint folder hetmoe reads or writes
    (config.json + model.safetensors[.index.json], FP8 block-dequantised on load),
  * the naive vs absorbed MLA check (tools/train/test_reference.py).

Module names mirror the Hugging Face tensor names (MODEL_SPEC section 4.2/4.3), so
`state_dict()` keys are exactly the checkpoint names.

Spec sections referenced in comments: 2.2 RMSNorm, 2.4/2.5 MLA, 2.6 MLP, 2.7 MoE, 3 RoPE/YaRN,
4.4 FP8 dequantisation.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

FP8_BLOCK = 128


# --------------------------------------------------------------------------------------------
# config
# --------------------------------------------------------------------------------------------
@dataclass
class ModelConfig:
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    moe_intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    q_lora_rank: Optional[int]
    kv_lora_rank: int
    qk_nope_head_dim: int
    qk_rope_head_dim: int
    v_head_dim: int
    n_routed_experts: Optional[int]
    n_shared_experts: int = 1
    num_experts_per_tok: int = 1
    n_group: int = 1
    topk_group: int = 1
    routed_scaling_factor: float = 1.0
    scoring_func: str = "softmax"
    topk_method: str = "greedy"
    norm_topk_prob: bool = False
    first_k_dense_replace: int = 0
    moe_layer_freq: int = 1
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    max_position_embeddings: int = 4096
    rope_scaling: Optional[dict] = None
    extra: dict = field(default_factory=dict)

    @staticmethod
    def from_dict(d: dict) -> "ModelConfig":
        names = set(ModelConfig.__dataclass_fields__) - {"extra"}
        kw = {k: d[k] for k in names if k in d}
        # new transformers spell the rope block `rope_parameters` (MODEL_SPEC 7.1)
        if kw.get("rope_scaling") is None and d.get("rope_parameters"):
            rp = dict(d["rope_parameters"])
            if rp.get("rope_type", rp.get("type")) == "yarn":
                rp["type"] = "yarn"
                kw["rope_scaling"] = rp
            if "rope_theta" in rp:
                kw["rope_theta"] = rp["rope_theta"]
        if kw.get("q_lora_rank") == 0:
            kw["q_lora_rank"] = None
        cfg = ModelConfig(**kw)
        cfg.extra = {k: v for k, v in d.items() if k not in names}
        return cfg

    @property
    def qk_head_dim(self) -> int:
        return self.qk_nope_head_dim + self.qk_rope_head_dim

    def is_moe_layer(self, layer: int) -> bool:  # MODEL_SPEC 1.3
        return (bool(self.n_routed_experts) and layer >= self.first_k_dense_replace
                and layer % self.moe_layer_freq == 0)

    def yarn(self) -> Optional[dict]:
        rs = self.rope_scaling
        if not rs or rs.get("type", rs.get("rope_type")) != "yarn":
            return None
        return rs


# --------------------------------------------------------------------------------------------
# RoPE / YaRN (MODEL_SPEC 3)
# --------------------------------------------------------------------------------------------
def yarn_get_mscale(scale: float, mscale: float = 1.0) -> float:
    if scale <= 1:
        return 1.0
    return 0.1 * mscale * math.log(scale) + 1.0


def rope_inv_freq(cfg: ModelConfig) -> torch.Tensor:
    """f'_i for i = 0 .. dr/2-1, float32, following the reference precompute_freqs_cis."""
    d = cfg.qk_rope_head_dim
    base = float(cfg.rope_theta)
    freqs = 1.0 / (base ** (torch.arange(0, d, 2, dtype=torch.float32) / d))
    ys = cfg.yarn()
    if ys is None:
        return freqs
    factor = float(ys["factor"])
    l0 = float(ys.get("original_max_position_embeddings", 4096))
    beta_fast = float(ys.get("beta_fast", 32))
    beta_slow = float(ys.get("beta_slow", 1))

    def corr_dim(rot: float) -> float:
        return d * math.log(l0 / (rot * 2 * math.pi)) / (2 * math.log(base))

    low = max(math.floor(corr_dim(beta_fast)), 0)
    high = min(math.ceil(corr_dim(beta_slow)), d - 1)
    denom = (high - low) if high != low else 0.001
    ramp = torch.clamp((torch.arange(d // 2, dtype=torch.float32) - low) / denom, 0, 1)
    return freqs * (1 - ramp) + (freqs / factor) * ramp


def softmax_scale(cfg: ModelConfig) -> float:
    """qk_head_dim^-1/2 * m^2 with m = yarn_get_mscale(factor, mscale_all_dim) (MODEL_SPEC 2.4)."""
    scale = cfg.qk_head_dim ** -0.5
    ys = cfg.yarn()
    if ys is not None:
        m_all = float(ys.get("mscale_all_dim", 0.0) or 0.0)
        if m_all:
            m = yarn_get_mscale(float(ys["factor"]), m_all)
            scale = scale * m * m
    return scale


def rope_cos_sin(cfg: ModelConfig, positions: torch.Tensor):
    """cos/sin [T, dr/2] (float32) for the given absolute positions. No magnitude scaling."""
    inv = rope_inv_freq(cfg)
    ang = torch.outer(positions.to(torch.float32), inv)
    return torch.cos(ang), torch.sin(ang)


def apply_rope_interleaved(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate adjacent pairs (2i, 2i+1) by theta_i (MODEL_SPEC 3.3). x [..., T, dr], cos/sin [T, dr/2]."""
    x0 = x[..., 0::2]
    x1 = x[..., 1::2]
    y0 = x0 * cos - x1 * sin
    y1 = x0 * sin + x1 * cos
    return torch.stack((y0, y1), dim=-1).flatten(-2)


# --------------------------------------------------------------------------------------------
# layers
# --------------------------------------------------------------------------------------------
class RMSNorm(nn.Module):
    def __init__(self, n: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # MODEL_SPEC 2.2: reduce in fp32
        xf = x.float()
        y = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * y.to(x.dtype)


def _linear(i: int, o: int) -> nn.Linear:
    return nn.Linear(i, o, bias=False)


class MLA(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        H, D = cfg.num_attention_heads, cfg.hidden_size
        self.n_heads = H
        if cfg.q_lora_rank:
            self.q_a_proj = _linear(D, cfg.q_lora_rank)
            self.q_a_layernorm = RMSNorm(cfg.q_lora_rank)  # default eps (spec 2.2)
            self.q_b_proj = _linear(cfg.q_lora_rank, H * cfg.qk_head_dim)
        else:
            self.q_proj = _linear(D, H * cfg.qk_head_dim)
        self.kv_a_proj_with_mqa = _linear(D, cfg.kv_lora_rank + cfg.qk_rope_head_dim)
        self.kv_a_layernorm = RMSNorm(cfg.kv_lora_rank)
        self.kv_b_proj = _linear(cfg.kv_lora_rank, H * (cfg.qk_nope_head_dim + cfg.v_head_dim))
        self.o_proj = _linear(H * cfg.v_head_dim, D)
        self.scale = softmax_scale(cfg)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                absorb: bool = False) -> torch.Tensor:
        cfg = self.cfg
        B, T, _ = x.shape
        H, dn, dr, dv, C = (self.n_heads, cfg.qk_nope_head_dim, cfg.qk_rope_head_dim,
                            cfg.v_head_dim, cfg.kv_lora_rank)
        if cfg.q_lora_rank:
            q = self.q_b_proj(self.q_a_layernorm(self.q_a_proj(x)))
        else:
            q = self.q_proj(x)
        q = q.view(B, T, H, dn + dr).transpose(1, 2)  # [B, H, T, dn+dr]
        q_nope, q_pe = q[..., :dn], q[..., dn:]
        kva = self.kv_a_proj_with_mqa(x)
        c = self.kv_a_layernorm(kva[..., :C])  # [B, T, C]  normalised latent (what the cache holds)
        k_pe = kva[..., C:].unsqueeze(1)  # [B, 1, T, dr]  one head, shared
        q_pe = apply_rope_interleaved(q_pe, cos, sin)
        k_pe = apply_rope_interleaved(k_pe, cos, sin)
        if not absorb:
            kv = self.kv_b_proj(c).view(B, T, H, dn + dv).transpose(1, 2)
            k_nope, v = kv[..., :dn], kv[..., dn:]
            k = torch.cat((k_nope, k_pe.expand(B, H, T, dr)), dim=-1)
            qf = torch.cat((q_nope, q_pe), dim=-1)
            if self.training:
                o = F.scaled_dot_product_attention(qf, k, v, is_causal=True, scale=self.scale)
            else:
                s = torch.matmul(qf.float(), k.float().transpose(-1, -2)) * self.scale
                o = self._softmax_ctx(s, v)
        else:
            # MODEL_SPEC 2.5: fold W_UK into q, attend over the latent, apply W_UV afterwards
            w = self.kv_b_proj.weight.view(H, dn + dv, C)
            w_uk, w_uv = w[:, :dn], w[:, dn:]
            q_lat = torch.einsum("bhtd,hdc->bhtc", q_nope, w_uk)  # [B, H, T, C]
            s = (torch.matmul(q_lat, c.unsqueeze(1).transpose(-1, -2))
                 + torch.matmul(q_pe, k_pe.transpose(-1, -2))) * self.scale
            o_lat = self._softmax_ctx(s, c.unsqueeze(1))  # [B, H, T, C]
            o = torch.einsum("bhtc,hdc->bhtd", o_lat, w_uv)
        o = o.transpose(1, 2).reshape(B, T, H * dv)
        return self.o_proj(o)

    @staticmethod
    def _softmax_ctx(s: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        T = s.shape[-1]
        mask = torch.ones(T, T, dtype=torch.bool, device=s.device).triu(1)
        s = s.float().masked_fill(mask, float("-inf"))
        p = torch.softmax(s, dim=-1)
        return torch.matmul(p.to(v.dtype), v)


class MLP(nn.Module):
    """SwiGLU (MODEL_SPEC 2.6): down(silu(gate x) * up x)."""

    def __init__(self, d: int, inter: int):
        super().__init__()
        self.gate_proj = _linear(d, inter)
        self.up_proj = _linear(d, inter)
        self.down_proj = _linear(inter, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Gate(nn.Module):
    """Router (MODEL_SPEC 2.7). `weight` [E, D]; `e_score_correction_bias` [E] only for noaux_tc."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        E = cfg.n_routed_experts
        self.weight = nn.Parameter(torch.empty(E, cfg.hidden_size))
        self.has_bias = cfg.topk_method == "noaux_tc"
        if self.has_bias:
            self.register_buffer("e_score_correction_bias", torch.zeros(E, dtype=torch.float32))

    def forward(self, x: torch.Tensor):
        """x [N, D] -> (weights [N, k] fp32, indices [N, k])."""
        cfg = self.cfg
        E, k = cfg.n_routed_experts, cfg.num_experts_per_tok
        logits = F.linear(x.float(), self.weight.float())
        if cfg.scoring_func == "sigmoid":
            scores = torch.sigmoid(logits)
        elif cfg.scoring_func == "softmax":
            scores = torch.softmax(logits, dim=-1)
        else:
            raise ValueError(f"unsupported scoring_func {cfg.scoring_func!r}")
        sel = scores
        if self.has_bias:
            sel = scores + self.e_score_correction_bias  # bias only chooses, never weighs
        if cfg.n_group > 1 and cfg.topk_method != "greedy":
            g = sel.view(-1, cfg.n_group, E // cfg.n_group)
            if self.has_bias:
                gscore = g.topk(2, dim=-1)[0].sum(-1)  # noaux_tc: sum of the 2 best per group
            else:
                gscore = g.amax(dim=-1)  # group_limited_greedy: max per group
            keep = gscore.topk(cfg.topk_group, dim=-1)[1]
            gmask = torch.ones_like(gscore, dtype=torch.bool).scatter_(1, keep, False)
            sel = g.masked_fill(gmask.unsqueeze(-1), float("-inf")).view(-1, E)
        idx = sel.topk(k, dim=-1)[1]
        w = scores.gather(1, idx)
        if cfg.norm_topk_prob:
            w = w / (w.sum(-1, keepdim=True) + 1e-20)
        w = w * cfg.routed_scaling_factor
        return w, idx


class MoE(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.gate = Gate(cfg)
        self.experts = nn.ModuleList(
            MLP(cfg.hidden_size, cfg.moe_intermediate_size) for _ in range(cfg.n_routed_experts))
        if cfg.n_shared_experts:
            self.shared_experts = MLP(cfg.hidden_size, cfg.moe_intermediate_size * cfg.n_shared_experts)
        self.last_indices: Optional[torch.Tensor] = None  # [N, k] of the last forward

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x = x.reshape(-1, shape[-1])
        w, idx = self.gate(x)
        self.last_indices = idx.detach()
        y = torch.zeros_like(x)
        flat = idx.flatten()
        order = torch.argsort(flat, stable=True)
        counts = torch.bincount(flat, minlength=self.cfg.n_routed_experts).tolist()
        tok = order // idx.shape[1]
        wflat = w.flatten()[order]
        start = 0
        for e, n in enumerate(counts):  # fixed expert order
            if n == 0:
                continue
            t = tok[start:start + n]
            out = self.experts[e](x[t]) * wflat[start:start + n, None].to(x.dtype)
            y.index_add_(0, t, out)
            start += n
        if self.cfg.n_shared_experts:
            y = y + self.shared_experts(x)
        return y.view(shape)


class DecoderLayer(nn.Module):
    def __init__(self, cfg: ModelConfig, layer: int):
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.self_attn = MLA(cfg)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.mlp = MoE(cfg) if cfg.is_moe_layer(layer) else MLP(cfg.hidden_size, cfg.intermediate_size)
        self.resid_dropout = 0.0  # training only; not part of the architecture

    def forward(self, h, cos, sin, absorb=False):
        p = self.resid_dropout if self.training else 0.0
        h = h + F.dropout(self.self_attn(self.input_layernorm(h), cos, sin, absorb), p, self.training)
        return h + F.dropout(self.mlp(self.post_attention_layernorm(h)), p, self.training)


class Backbone(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(DecoderLayer(cfg, i) for i in range(cfg.num_hidden_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)


class DeepseekForCausalLM(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.model = Backbone(cfg)
        self.lm_head = _linear(cfg.hidden_size, cfg.vocab_size)

    def moe_layers(self):
        return [(i, l.mlp) for i, l in enumerate(self.model.layers) if isinstance(l.mlp, MoE)]

    def hidden(self, ids: torch.Tensor, start_pos: int = 0, absorb: bool = False) -> torch.Tensor:
        """ids [B, T] -> final-normed hidden [B, T, D]; positions start_pos.. (one prompt per row)."""
        T = ids.shape[1]
        cos, sin = rope_cos_sin(self.cfg, torch.arange(start_pos, start_pos + T))
        h = self.model.embed_tokens(ids)
        for layer in self.model.layers:
            h = layer(h, cos, sin, absorb)
        return self.model.norm(h)

    def forward(self, ids: torch.Tensor, absorb: bool = False) -> torch.Tensor:
        return self.lm_head(self.hidden(ids, 0, absorb))

    def init_weights(self, std: float = 0.02, seed: Optional[int] = None):
        g = torch.Generator().manual_seed(seed) if seed is not None else None
        n_layers = self.cfg.num_hidden_layers
        for name, p in self.named_parameters():
            if p.dim() == 1:
                nn.init.ones_(p)
                continue
            s = std
            if name.endswith(("o_proj.weight", "down_proj.weight")):
                s = std / math.sqrt(2 * n_layers)  # residual-branch outputs (GPT-2 style)
            with torch.no_grad():
                p.normal_(0.0, s, generator=g)


# --------------------------------------------------------------------------------------------
# checkpoint loading (MODEL_SPEC 4)
# --------------------------------------------------------------------------------------------
def dequant_fp8(q: torch.Tensor, scale_inv: torch.Tensor, block: int = FP8_BLOCK) -> torch.Tensor:
    """W[i,j] = fp8(Q[i,j]) * S[i//128, j//128]; edge blocks may be partial (MODEL_SPEC 4.4)."""
    M, N = q.shape
    assert scale_inv.shape == (math.ceil(M / block), math.ceil(N / block)), (q.shape, scale_inv.shape)
    s = scale_inv.float().repeat_interleave(block, 0).repeat_interleave(block, 1)[:M, :N]
    return q.to(torch.float32) * s


def read_checkpoint_tensors(model_dir: str) -> dict:
    from safetensors.torch import load_file

    index = os.path.join(model_dir, "model.safetensors.index.json")
    if os.path.exists(index):
        with open(index) as f:
            files = sorted(set(json.load(f)["weight_map"].values()))
    else:
        files = ["model.safetensors"]
    tensors = {}
    for fn in files:
        tensors.update(load_file(os.path.join(model_dir, fn)))
    return tensors


def load_config(model_dir: str) -> ModelConfig:
    with open(os.path.join(model_dir, "config.json")) as f:
        return ModelConfig.from_dict(json.load(f))


def load_model(model_dir: str, dtype: torch.dtype = torch.float32) -> DeepseekForCausalLM:
    """Load an HF-format DeepSeek V2/V3 folder; FP8 weights are dequantised to `dtype`."""
    cfg = load_config(model_dir)
    raw = read_checkpoint_tensors(model_dir)
    n = cfg.num_hidden_layers
    state = {}
    for name, t in raw.items():
        if name.endswith("_scale_inv"):
            continue
        if name.startswith("model.layers."):
            if int(name.split(".")[2]) >= n:  # MTP layer(s): skip (MODEL_SPEC 4.2)
                continue
        if t.dtype == torch.float8_e4m3fn:
            si = raw.get(name + "_scale_inv")
            if si is None:
                raise ValueError(f"{name}: FP8 tensor without {name}_scale_inv")
            t = dequant_fp8(t, si)
        state[name] = t.to(dtype)
    with torch.device("meta"):
        model = DeepseekForCausalLM(cfg)
    model = model.to_empty(device="cpu").to(dtype)
    missing, unexpected = model.load_state_dict(state, strict=False, assign=False)
    if missing or unexpected:
        raise ValueError(f"checkpoint mismatch: missing {missing[:8]} unexpected {unexpected[:8]}")
    for _, moe in model.moe_layers():  # the bias stays fp32 (MODEL_SPEC 4.2)
        if moe.gate.has_bias:
            moe.gate.e_score_correction_bias = moe.gate.e_score_correction_bias.float()
    model.eval()
    return model
