"""Write a DeepSeek checkpoint folder exactly like the published one (MODEL_SPEC 4).

    python3 tools/train/export.py --ckpt /tmp/hetmoe_tiny/ckpt.pt --out models/tiny-shakespeare
    python3 tools/train/export.py random --config CONFIG.json --out DIR [--seed 0]   # random weights

FP8 (F8_E4M3 + F32 weight_scale_inv [ceil(out/128), ceil(in/128)]) on q_a/q_b/q_proj, kv_a, kv_b, o,
dense gate/up/down, shared and routed experts, when config.json has a quantization_config; BF16 for
embeddings, lm_head, norms and the router `mlp.gate.weight`; F32 `e_score_correction_bias`.
Without quantization_config (V2-style) every weight is BF16.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from model import FP8_BLOCK, DeepseekForCausalLM, ModelConfig  # noqa: E402

FP8_MAX = 448.0
FP8_NAME = re.compile(
    r"^model\.layers\.\d+\.(self_attn\.(q_a_proj|q_b_proj|q_proj|kv_a_proj_with_mqa|kv_b_proj|o_proj)"
    r"|mlp\.(experts\.\d+\.|shared_experts\.)?(gate_proj|up_proj|down_proj))\.weight$")


def quantize_fp8(w: torch.Tensor, block: int = FP8_BLOCK):
    """Block quantisation: scale = amax(block)/448, q = RNE e4m3(w/scale). Returns (q, scale_inv)."""
    w = w.float()
    M, N = w.shape
    mb, nb = math.ceil(M / block), math.ceil(N / block)
    pad = torch.zeros(mb * block, nb * block)  # zero padding does not change a block's amax
    pad[:M, :N] = w
    amax = pad.view(mb, block, nb, block).abs().amax(dim=(1, 3))
    scale = torch.where(amax > 0, amax / FP8_MAX, torch.ones_like(amax)).float()
    s = scale.repeat_interleave(block, 0).repeat_interleave(block, 1)[:M, :N]
    q = (w / s).clamp(-FP8_MAX, FP8_MAX).to(torch.float8_e4m3fn)
    return q.contiguous(), scale.contiguous()


def checkpoint_tensors(state: dict, hf_cfg: dict) -> dict:
    fp8 = bool(hf_cfg.get("quantization_config"))
    out = {}
    for name, t in state.items():
        t = t.detach().float().cpu()
        if name.endswith("e_score_correction_bias"):
            out[name] = t.contiguous()
        elif fp8 and FP8_NAME.match(name):
            q, s = quantize_fp8(t)
            out[name] = q
            out[name + "_scale_inv"] = s
        else:
            out[name] = t.to(torch.bfloat16).contiguous()
    return out


def generation_config(hf_cfg: dict) -> dict:
    return {"_from_model_config": True, "bos_token_id": hf_cfg["bos_token_id"],
            "eos_token_id": hf_cfg["eos_token_id"], "do_sample": True, "temperature": 0.6,
            "top_p": 0.95, "transformers_version": hf_cfg.get("transformers_version", "4.46.3")}


def write_checkpoint(state: dict, hf_cfg: dict, out_dir: str, tokenizer_dir: str | None = None):
    from safetensors.torch import save_file

    os.makedirs(out_dir, exist_ok=True)
    hf_cfg = dict(hf_cfg)
    rs = hf_cfg.get("rope_scaling")
    if rs and float(rs.get("factor", 0)).is_integer():  # the published config writes an integer (40)
        hf_cfg["rope_scaling"] = dict(rs, factor=int(rs["factor"]))
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(hf_cfg, f, indent=2)
        f.write("\n")
    with open(os.path.join(out_dir, "generation_config.json"), "w") as f:
        json.dump(generation_config(hf_cfg), f, indent=2)
        f.write("\n")
    save_file(checkpoint_tensors(state, hf_cfg), os.path.join(out_dir, "model.safetensors"),
              metadata={"format": "pt"})
    if tokenizer_dir:
        for fn in ("tokenizer.json", "tokenizer_config.json"):
            shutil.copyfile(os.path.join(tokenizer_dir, fn), os.path.join(out_dir, fn))


def random_state(hf_cfg: dict, seed: int) -> dict:
    """Random weights for a config (for engine tests). Biases of noaux_tc routers are random too."""
    cfg = ModelConfig.from_dict(hf_cfg)
    model = DeepseekForCausalLM(cfg)
    model.init_weights(seed=seed)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1:  # norms: not all ones, so a reader that skips them is caught
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
        for _, moe in model.moe_layers():
            if moe.gate.has_bias:
                moe.gate.e_score_correction_bias.copy_(0.05 * torch.randn(cfg.n_routed_experts, generator=g))
    return model.state_dict()


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "random":
        ap = argparse.ArgumentParser()
        ap.add_argument("--config", required=True)
        ap.add_argument("--out", required=True)
        ap.add_argument("--seed", type=int, default=0)
        ap.add_argument("--tokenizer-dir", default=None)
        a = ap.parse_args(argv[1:])
        with open(a.config) as f:
            hf_cfg = json.load(f)
        write_checkpoint(random_state(hf_cfg, a.seed), hf_cfg, a.out, a.tokenizer_dir)
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", required=True, help="ckpt.pt written by train.py")
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    ck = torch.load(a.ckpt, map_location="cpu", weights_only=False)
    write_checkpoint(ck["state_dict"], ck["hf_config"], a.out, os.path.dirname(os.path.abspath(a.ckpt)))
    size = sum(os.path.getsize(os.path.join(a.out, f)) for f in os.listdir(a.out))
    print(f"wrote {a.out}: {size / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
