"""Train the bundled tiny DeepSeek-V3-format MoE on tinyshakespeare (docs/TINY_MODEL.md).

    python3 tools/train/train.py --out /tmp/hetmoe_tiny            # full run (seeded, 1 thread)
    python3 tools/train/train.py --out /tmp/t --time-steps 3        # timing only

Writes OUT/tokenizer.json, OUT/tokenizer_config.json (trained first on the 90 % split),
OUT/ckpt.pt (fp32 state dict + HF config dict + log) and OUT/train_log.jsonl.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tokenizer as tokmod  # noqa: E402
from model import DeepseekForCausalLM, ModelConfig  # noqa: E402

DEFAULT_DATA = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                             "../../../shared/data/tinyshakespeare.txt"))


def make_config(a, vocab_size: int) -> dict:
    """Every key of the published DeepSeek-V3/R1 config.json, with the tiny sizes."""
    return {
        "architectures": ["DeepseekV3ForCausalLM"],
        "attention_bias": False,
        "attention_dropout": 0.0,
        "auto_map": {
            "AutoConfig": "configuration_deepseek.DeepseekV3Config",
            "AutoModel": "modeling_deepseek.DeepseekV3Model",
            "AutoModelForCausalLM": "modeling_deepseek.DeepseekV3ForCausalLM",
        },
        "aux_loss_alpha": 0.001,
        "bos_token_id": 0,
        "eos_token_id": 1,
        "ep_size": 1,
        "first_k_dense_replace": a.first_k_dense,
        "hidden_act": "silu",
        "hidden_size": a.hidden,
        "initializer_range": 0.02,
        "intermediate_size": a.dense_inter,
        "kv_lora_rank": a.kv_lora_rank,
        "max_position_embeddings": a.max_pos,
        "model_type": "deepseek_v3",
        "moe_intermediate_size": a.moe_inter,
        "moe_layer_freq": 1,
        "n_group": a.n_group,
        "n_routed_experts": a.experts,
        "n_shared_experts": 1,
        "norm_topk_prob": True,
        "num_attention_heads": a.heads,
        "num_experts_per_tok": a.topk,
        "num_hidden_layers": a.layers,
        "num_key_value_heads": a.heads,
        "num_nextn_predict_layers": 0,
        "pretraining_tp": 1,
        "q_lora_rank": a.q_lora_rank,
        "qk_nope_head_dim": a.qk_nope,
        "qk_rope_head_dim": a.qk_rope,
        "quantization_config": {
            "activation_scheme": "dynamic",
            "fmt": "e4m3",
            "quant_method": "fp8",
            "weight_block_size": [128, 128],
        },
        "rms_norm_eps": 1e-06,
        "rope_scaling": {
            "beta_fast": 32,
            "beta_slow": 1,
            "factor": a.max_pos // a.orig_max_pos if a.max_pos % a.orig_max_pos == 0 else a.max_pos / a.orig_max_pos,
            "mscale": 1.0,
            "mscale_all_dim": 1.0,
            "original_max_position_embeddings": a.orig_max_pos,
            "type": "yarn",
        },
        "rope_theta": 10000,
        "routed_scaling_factor": 2.5,
        "scoring_func": "sigmoid",
        "seq_aux": True,
        "tie_word_embeddings": False,
        "topk_group": a.topk_group,
        "topk_method": "noaux_tc",
        "torch_dtype": "bfloat16",
        "transformers_version": "4.46.3",
        "use_cache": True,
        "v_head_dim": a.v_head,
        "vocab_size": vocab_size,
    }


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=DEFAULT_DATA)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1)")
    ap.add_argument("--vocab-size", type=int, default=3000)
    # architecture
    ap.add_argument("--layers", type=int, default=5)
    ap.add_argument("--first-k-dense", type=int, default=1)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--q-lora-rank", type=int, default=192)
    ap.add_argument("--kv-lora-rank", type=int, default=128)
    ap.add_argument("--qk-nope", type=int, default=32)
    ap.add_argument("--qk-rope", type=int, default=16)
    ap.add_argument("--v-head", type=int, default=32)
    ap.add_argument("--dense-inter", type=int, default=512)
    ap.add_argument("--moe-inter", type=int, default=128)
    ap.add_argument("--experts", type=int, default=32)
    ap.add_argument("--topk", type=int, default=4)
    ap.add_argument("--n-group", type=int, default=4)
    ap.add_argument("--topk-group", type=int, default=2)
    ap.add_argument("--max-pos", type=int, default=512)
    ap.add_argument("--orig-max-pos", type=int, default=128)
    # optimisation
    ap.add_argument("--ctx", type=int, default=256)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--min-lr-frac", type=float, default=0.1)
    ap.add_argument("--warmup", type=int, default=30)
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--dropout", type=float, default=0.1)
    ap.add_argument("--bias-update", type=float, default=1e-3, help="aux-loss-free bias step u")
    ap.add_argument("--bias-update-early", type=float, default=1e-2,
                    help="larger u at the start, decaying linearly to --bias-update over --bias-early-steps "
                         "(early hidden states are nearly alike and routing collapses faster than 1e-3 undoes)")
    ap.add_argument("--bias-early-steps", type=int, default=150)
    ap.add_argument("--bos-frac", type=float, default=0.5, help="share of windows that start with BOS")
    ap.add_argument("--eval-every", type=int, default=100)
    ap.add_argument("--eval-windows", type=int, default=16)
    ap.add_argument("--time-steps", type=int, default=0, help="run this many steps, print s/step, exit")
    return ap.parse_args(argv)


def lr_at(step: int, a) -> float:
    if step < a.warmup:
        return a.lr * (step + 1) / a.warmup
    t = (step - a.warmup) / max(1, a.steps - a.warmup)
    return a.lr * (a.min_lr_frac + (1 - a.min_lr_frac) * 0.5 * (1 + math.cos(math.pi * t)))


def bias_step(step: int, a) -> float:
    if step >= a.bias_early_steps:
        return a.bias_update
    t = step / a.bias_early_steps
    return a.bias_update_early * (1 - t) + a.bias_update * t


@torch.no_grad()
def evaluate(model, val: torch.Tensor, ctx: int, n_windows: int) -> float:
    model.eval()
    tot, n = 0.0, 0
    for w in range(n_windows):
        seg = val[w * ctx:(w + 1) * ctx]
        if len(seg) < 2:
            break
        logits = model(seg[None])
        tot += F.cross_entropy(logits[0, :-1], seg[1:], reduction="sum").item()
        n += len(seg) - 1
    model.train()
    return tot / n


def main(argv=None):
    a = parse_args(argv)
    torch.set_num_threads(a.threads)
    random.seed(a.seed)
    np.random.seed(a.seed)
    torch.manual_seed(a.seed)
    os.makedirs(a.out, exist_ok=True)

    train_text, val_text = tokmod.train_split(a.data)
    tok = tokmod.train_tokenizer(train_text, a.vocab_size)
    tokmod.save(tok, a.out, model_max_length=a.max_pos)
    train_ids = torch.tensor(tok.encode(train_text, add_special_tokens=False).ids, dtype=torch.long)
    val_ids = torch.tensor(tok.encode(val_text, add_special_tokens=False).ids, dtype=torch.long)
    print(f"tokens: train {len(train_ids)}  held-out {len(val_ids)}  vocab {tok.get_vocab_size()}", flush=True)

    hf_cfg = make_config(a, tok.get_vocab_size())
    cfg = ModelConfig.from_dict(hf_cfg)
    model = DeepseekForCausalLM(cfg)
    model.init_weights(seed=a.seed)
    for layer in model.model.layers:
        layer.resid_dropout = a.dropout
    n_params = sum(p.numel() for p in model.parameters())
    print(f"params {n_params/1e6:.2f} M", flush=True)

    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and "embed" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.dim() >= 2 and "embed" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": a.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=a.lr, betas=(0.9, 0.95), eps=1e-8)
    gen = torch.Generator().manual_seed(a.seed + 1)
    steps = a.time_steps or a.steps
    log_f = open(os.path.join(a.out, "train_log.jsonl"), "w")
    model.train()
    t0 = time.time()
    last_eval = None
    for step in range(steps):
        starts = torch.randint(0, len(train_ids) - a.ctx - 1, (a.batch,), generator=gen)
        batch = torch.stack([train_ids[s:s + a.ctx + 1] for s in starts.tolist()])
        bos = torch.rand(a.batch, generator=gen) < a.bos_frac
        batch[bos, 0] = 0  # BOS at position 0 (what `hetmoe run` feeds) in part of the windows
        x, y = batch[:, :-1], batch[:, 1:]
        for g in opt.param_groups:
            g["lr"] = lr_at(step, a)
        logits = model(x)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0).item()
        opt.step()
        # aux-loss-free balancing (DeepSeek-V3): b += u * sign(mean_load - load), per MoE layer
        imb = []
        with torch.no_grad():
            for _, moe in model.moe_layers():
                load = torch.bincount(moe.last_indices.flatten(), minlength=cfg.n_routed_experts).float()
                moe.gate.e_score_correction_bias += bias_step(step, a) * torch.sign(load.mean() - load)
                imb.append(round((load.max() / load.mean()).item(), 2))
        rec = {"step": step + 1, "loss": round(loss.item(), 4), "lr": lr_at(step, a),
               "gnorm": round(gnorm, 3), "max_over_mean_load": imb, "elapsed_s": round(time.time() - t0, 1)}
        if a.eval_every and ((step + 1) % a.eval_every == 0 or step + 1 == steps) and not a.time_steps:
            last_eval = evaluate(model, val_ids, a.ctx, a.eval_windows)
            rec["val_loss"] = round(last_eval, 4)
        log_f.write(json.dumps(rec) + "\n")
        log_f.flush()
        if step < 5 or (step + 1) % 10 == 0 or "val_loss" in rec:
            print(json.dumps(rec), flush=True)
    dt = time.time() - t0
    print(f"done: {steps} steps in {dt:.0f} s ({dt/steps:.2f} s/step)", flush=True)
    if a.time_steps:
        return
    torch.save({"hf_config": hf_cfg, "state_dict": model.state_dict(), "args": vars(a),
                "train_seconds": dt, "final_loss": loss.item(), "final_val_loss": last_eval},
               os.path.join(a.out, "ckpt.pt"))
    print("saved", os.path.join(a.out, "ckpt.pt"), flush=True)


if __name__ == "__main__":
    main()
