"""Checks of the PyTorch reference (plain `python3 tools/train/test_reference.py`; exits non-zero on failure).

* absorbed MLA == naive MLA (V3 with q_lora; V2 without, softmax greedy / group_limited_greedy)
* YaRN frequencies and softmax scale against MODEL_SPEC Appendix B
* E4M3 decoding values, FP8 block quantise/dequantise incl. partial edge blocks
* write a random checkpoint folder -> load_model -> same logits as the in-memory quantised model
* router: -inf group masking with negative biases; bias only selects
* the bundled model (if present): tokenizer check and fixture logits reproduce
"""
from __future__ import annotations

import copy
import json
import math
import os
import sys
import tempfile

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "../.."))
sys.path.insert(0, HERE)
import export  # noqa: E402
import model as M  # noqa: E402

V3_TINY = {
    "architectures": ["DeepseekV3ForCausalLM"], "model_type": "deepseek_v3",
    "vocab_size": 300, "hidden_size": 64, "intermediate_size": 160, "moe_intermediate_size": 48,
    "n_routed_experts": 16, "n_shared_experts": 1, "num_experts_per_tok": 4, "n_group": 4, "topk_group": 2,
    "routed_scaling_factor": 2.5, "scoring_func": "sigmoid", "topk_method": "noaux_tc", "norm_topk_prob": True,
    "first_k_dense_replace": 1, "moe_layer_freq": 1, "num_hidden_layers": 3, "num_attention_heads": 4,
    "num_key_value_heads": 4, "q_lora_rank": 48, "kv_lora_rank": 32, "qk_nope_head_dim": 16,
    "qk_rope_head_dim": 8, "v_head_dim": 16, "hidden_act": "silu", "rms_norm_eps": 1e-6, "rope_theta": 10000,
    "max_position_embeddings": 512,
    "rope_scaling": {"type": "yarn", "factor": 4, "original_max_position_embeddings": 128, "beta_fast": 32,
                     "beta_slow": 1, "mscale": 1.0, "mscale_all_dim": 1.0},
    "attention_bias": False, "tie_word_embeddings": False, "bos_token_id": 0, "eos_token_id": 1,
    "num_nextn_predict_layers": 0, "torch_dtype": "bfloat16",
    "quantization_config": {"activation_scheme": "dynamic", "fmt": "e4m3", "quant_method": "fp8",
                            "weight_block_size": [128, 128]},
}
V2_TINY = dict(V3_TINY, architectures=["DeepseekV2ForCausalLM"], model_type="deepseek_v2", q_lora_rank=None,
               n_shared_experts=2, scoring_func="softmax", topk_method="greedy", n_group=1, topk_group=1,
               norm_topk_prob=False, routed_scaling_factor=1.0,
               rope_scaling=dict(V3_TINY["rope_scaling"], mscale=0.707, mscale_all_dim=0.707))
V2_TINY.pop("quantization_config")
V2_GROUPED = dict(V2_TINY, topk_method="group_limited_greedy", n_group=4, topk_group=2, routed_scaling_factor=16.0)


def close(a, b, tol, what):
    err = (a - b).abs().max().item()
    assert err <= tol, f"{what}: max abs diff {err} > {tol}"


def build(cfg_dict, seed=0):
    model = M.DeepseekForCausalLM(M.ModelConfig.from_dict(cfg_dict))
    state = export.random_state(cfg_dict, seed)
    model.load_state_dict(state)
    return model.eval()


def test_absorbed_equals_naive():
    ids = torch.randint(0, 300, (2, 37), generator=torch.Generator().manual_seed(0))
    for name, cfg in (("v3", V3_TINY), ("v2", V2_TINY), ("v2-grouped", V2_GROUPED)):
        model = build(cfg)
        with torch.no_grad():
            naive, absorbed = model(ids), model(ids, absorb=True)
        close(naive, absorbed, 1e-4 * max(1.0, naive.abs().max().item()), f"{name} absorbed vs naive")
        model.train()  # SDPA path used for training
        with torch.no_grad():
            close(model(ids), naive, 1e-4, f"{name} sdpa vs naive")


def test_yarn_and_scale():
    v3 = M.ModelConfig.from_dict(json.load(open(os.path.join(ROOT, "../shared/data/configs/deepseek-v3-r1.config.json")))) \
        if os.path.exists(os.path.join(ROOT, "../shared/data/configs/deepseek-v3-r1.config.json")) else None
    if v3 is None:
        v3 = M.ModelConfig.from_dict(dict(V3_TINY, qk_nope_head_dim=128, qk_rope_head_dim=64, rope_scaling=dict(
            V3_TINY["rope_scaling"], factor=40, original_max_position_embeddings=4096)))
    f = M.rope_inv_freq(v3).double()
    for i, want in ((0, 1.0), (1, 0.7498942093), (10, 0.0562341325), (11, 0.0390069266), (16, 0.0055),
                    (22, 1.778279e-4), (23, 3.333804e-5), (31, 3.333804e-6)):
        assert abs(f[i].item() - want) <= 1e-6 * max(1.0, want * 1e3), (i, f[i].item(), want)
    assert abs(M.softmax_scale(v3) - 0.1352338) < 1e-6, M.softmax_scale(v3)
    v2 = M.ModelConfig.from_dict(dict(v3.__dict__, rope_scaling=dict(v3.rope_scaling, mscale=0.707, mscale_all_dim=0.707)))
    assert abs(M.softmax_scale(v2) - 0.1147214) < 1e-6, M.softmax_scale(v2)
    # interleaved pairs: rotating (x0, x1) by theta_0 = pos * 1.0
    x = torch.zeros(1, 8)
    x[0, 0] = 1.0
    cos, sin = M.rope_cos_sin(M.ModelConfig.from_dict(V3_TINY), torch.tensor([2]))
    y = M.apply_rope_interleaved(x, cos, sin)
    assert abs(y[0, 0] - math.cos(2.0)) < 1e-6 and abs(y[0, 1] - math.sin(2.0)) < 1e-6 and y[0, 2:].abs().max() == 0


def test_fp8():
    raw = torch.tensor([0x7E, 0x38, 0x08, 0x01, 0xFE], dtype=torch.uint8).view(torch.float8_e4m3fn).float()
    assert raw.tolist() == [448.0, 1.0, 0.015625, 0.001953125, -448.0], raw.tolist()
    g = torch.Generator().manual_seed(0)
    for shape in ((192, 256), (144, 256), (384, 192), (130, 129), (5, 3)):
        w = torch.randn(shape, generator=g) * torch.rand(shape, generator=g)
        q, s = export.quantize_fp8(w)
        assert q.dtype == torch.float8_e4m3fn and s.shape == (math.ceil(shape[0] / 128), math.ceil(shape[1] / 128))
        d = M.dequant_fp8(q, s)
        # e4m3 has 3 mantissa bits: relative error <= 2^-4 of the block amax scale
        for bi in range(s.shape[0]):
            for bj in range(s.shape[1]):
                blk = (slice(bi * 128, (bi + 1) * 128), slice(bj * 128, (bj + 1) * 128))
                amax = w[blk].abs().max()
                assert abs(d[blk].abs().max() - amax) <= 1e-6 * amax, "block amax must be exact (448)"
                assert (d[blk] - w[blk]).abs().max() <= amax / 16 + 1e-12
        # scales are per block of the unpadded weight
        assert abs(s[-1, -1] - w[(s.shape[0] - 1) * 128:, (s.shape[1] - 1) * 128:].abs().max() / 448) < 1e-9


def test_checkpoint_roundtrip():
    ids = [0, 5, 7, 11, 200, 3, 3, 9]
    for cfg in (V3_TINY, V2_GROUPED):
        state = export.random_state(cfg, 3)
        with tempfile.TemporaryDirectory() as d:
            export.write_checkpoint(state, cfg, d)
            from safetensors import safe_open
            with safe_open(os.path.join(d, "model.safetensors"), "pt") as f:
                keys = set(f.keys())
                if "quantization_config" in cfg:
                    assert f.get_tensor("model.layers.1.self_attn.q_a_proj.weight").dtype == torch.float8_e4m3fn
                    assert f.get_tensor("model.layers.1.self_attn.kv_a_proj_with_mqa.weight_scale_inv").shape == (1, 1)
                    assert f.get_tensor("model.layers.1.mlp.gate.weight").dtype == torch.bfloat16
                    assert f.get_tensor("model.layers.1.mlp.gate.e_score_correction_bias").dtype == torch.float32
                    assert "model.layers.2.mlp.experts.15.down_proj.weight_scale_inv" in keys
                else:
                    assert not any(k.endswith("_scale_inv") for k in keys)
                    assert "model.layers.0.self_attn.q_proj.weight" in keys
            loaded = M.load_model(d)
        # expected: the same weights after quantise -> dequantise (or bf16 rounding), fp32 compute
        want = M.DeepseekForCausalLM(M.ModelConfig.from_dict(cfg))
        deq = {}
        for k, t in export.checkpoint_tensors(state, cfg).items():
            if k.endswith("_scale_inv"):
                continue
            if t.dtype == torch.float8_e4m3fn:
                t = M.dequant_fp8(t, export.checkpoint_tensors({k: state[k]}, cfg)[k + "_scale_inv"])
            deq[k] = t.float()
        want.load_state_dict(deq)
        want.eval()
        with torch.no_grad():
            x = torch.tensor([ids])
            close(loaded(x), want(x), 1e-5, "loaded checkpoint logits")


def test_router_masking():
    cfg = M.ModelConfig.from_dict(V3_TINY)
    gate = M.Gate(cfg)
    with torch.no_grad():
        gate.weight.zero_()
        gate.weight[:, 0] = torch.linspace(-2, 2, 16)  # expert 15 has the largest affinity
        # big negative bias on the whole last group: it must be dropped; in the surviving groups the
        # bias makes expert 0 selected although its affinity is the lowest
        gate.e_score_correction_bias.zero_()
        gate.e_score_correction_bias[12:16] = -5.0
        gate.e_score_correction_bias[0] = 3.0
    x = torch.zeros(1, cfg.hidden_size)
    x[0, 0] = 1.0
    w, idx = gate(x)
    sel = sorted(idx[0].tolist())
    assert all(e < 12 for e in sel) and 0 in sel, sel
    s = torch.sigmoid(torch.linspace(-2, 2, 16))[idx[0]]
    close(w[0], s / s.sum() * 2.5, 1e-6, "combine weights use unbiased affinities")
    # every biased score negative: a 0.0 fill of the dropped groups (0, 1) would let them win; -inf does not
    with torch.no_grad():
        gate.e_score_correction_bias.fill_(-10.0)
    _, idx = gate(x)
    assert sorted(idx[0].tolist()) == [12, 13, 14, 15], idx


def test_bundled_model():
    mdir = os.path.join(ROOT, "models/tiny-shakespeare")
    fdir = os.path.join(ROOT, "tests/data/tiny_ref")
    if not os.path.exists(os.path.join(mdir, "model.safetensors")):
        print("  (bundled model absent: skipped)")
        return
    import tokenizer as tokmod
    tokmod.check(mdir)
    if not os.path.exists(os.path.join(fdir, "prompts.json")):
        return
    from safetensors.torch import load_file
    import reference as ref
    model = M.load_model(mdir)
    prompts = json.load(open(os.path.join(fdir, "prompts.json"), encoding="utf-8"))
    logits = load_file(os.path.join(fdir, "logits.safetensors"))
    for i, p in enumerate(prompts[:3]):
        lg = ref.logits_for(model, p["ids"])
        close(lg[p["logit_positions"]], logits[f"prompt{i}.logits"], 1e-4, f"prompt{i} fixture logits")
        lga = ref.logits_for(model, p["ids"], absorb=True)
        close(lga, lg, 1e-3, f"prompt{i} absorbed vs naive (bundled)")


def main():
    torch.set_num_threads(1)
    tests = [(k, v) for k, v in globals().items() if k.startswith("test_") and callable(v)]
    failed = 0
    for name, fn in tests:
        try:
            fn()
            print(f"PASS {name}")
        except Exception as e:  # noqa: BLE001
            failed += 1
            print(f"FAIL {name}: {type(e).__name__}: {e}")
    print(f"{len(tests) - failed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
