"""Float32 PyTorch reference for any DeepSeek V2/V3 checkpoint folder (config.json + safetensors).

    python3 tools/train/reference.py logits   --model DIR --ids 0,5,7 -o out.npy [--absorb]
    python3 tools/train/reference.py generate --model DIR --prompt "ROMEO:" [-n 32] [--temperature 0]
    python3 tools/train/reference.py ppl      --model DIR --text FILE [--ctx 256] [--max-tokens N]

`logits` writes float32 [n_ids, vocab]: the ids are one prompt processed from position 0 in one pass.
FP8 weights are dequantised (weight_scale_inv per 128x128 block) and everything runs in float32.
"""
from __future__ import annotations

import argparse
import math
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from model import DeepseekForCausalLM, load_model  # noqa: E402,F401


@torch.no_grad()
def logits_for(model, ids, absorb: bool = False) -> torch.Tensor:
    """float32 [len(ids), vocab], one prompt from position 0."""
    x = torch.tensor([list(ids)], dtype=torch.long)
    return model(x, absorb=absorb)[0].float()


@torch.no_grad()
def greedy(model, ids, n: int, eos_id: int = 1):
    """Greedy continuation (full recompute each step). Returns (new ids, top1-top2 logit margins)."""
    seq = list(ids)
    out, margins = [], []
    for _ in range(n):
        lg = logits_for(model, seq)[-1]
        top = torch.topk(lg, 2)
        nxt = int(top.indices[0])
        out.append(nxt)
        margins.append(float(top.values[0] - top.values[1]))
        seq.append(nxt)
        if nxt == eos_id:
            break
    return out, margins


@torch.no_grad()
def sample(model, ids, n: int, temperature: float, seed: int, eos_id: int = 1):
    g = torch.Generator().manual_seed(seed)
    seq = list(ids)
    out = []
    for _ in range(n):
        lg = logits_for(model, seq)[-1] / max(temperature, 1e-5)
        nxt = int(torch.multinomial(torch.softmax(lg, -1), 1, generator=g))
        out.append(nxt)
        seq.append(nxt)
        if nxt == eos_id:
            break
    return out


def byte_decoder() -> dict:
    """GPT-2 byte-level map, inverse (MODEL_SPEC 5.2 step 3): unicode char -> byte."""
    bs = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


def token_bytes(tok, ids) -> list:
    dec = byte_decoder()
    return [bytes(dec[ch] for ch in tok.id_to_token(i)) for i in ids]


def windows(ids, ctx: int):
    """Consecutive non-overlapping windows of ctx; a last partial window kept if >= 2 tokens."""
    out = []
    for s in range(0, len(ids), ctx):
        w = ids[s:s + ctx]
        if len(w) >= 2:
            out.append(w)
    return out


@torch.no_grad()
def perplexity(model, tok, ids, ctx: int, routing: bool = False) -> dict:
    """The held-out protocol of docs/TINY_MODEL.md. ids: tokenizer ids, no BOS."""
    nll, n_tok, n_bytes = 0.0, 0, 0
    moes = model.moe_layers()
    counts = {i: torch.zeros(m.cfg.n_routed_experts, dtype=torch.long) for i, m in moes}
    for w in windows(ids, ctx):
        lg = logits_for(model, w)
        nll += F.cross_entropy(lg[:-1].double(), torch.tensor(w[1:]), reduction="sum").item()
        n_tok += len(w) - 1
        n_bytes += sum(len(b) for b in token_bytes(tok, w[1:]))
        if routing:
            for i, m in moes:
                counts[i] += torch.bincount(m.last_indices.flatten(), minlength=m.cfg.n_routed_experts)
    res = {"ctx": ctx, "tokens": n_tok, "bytes": n_bytes, "nll_sum": nll,
           "ppl": math.exp(nll / n_tok), "bpb": nll / math.log(2) / n_bytes}
    if routing:
        res["routing"] = {i: c.tolist() for i, c in counts.items()}
    return res


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("logits")
    p.add_argument("--model", required=True)
    p.add_argument("--ids", required=True, help="comma-separated token ids")
    p.add_argument("-o", "--out", required=True)
    p.add_argument("--absorb", action="store_true", help="use the absorbed MLA form")
    g = sub.add_parser("generate")
    g.add_argument("--model", required=True)
    g.add_argument("--prompt", required=True)
    g.add_argument("-n", type=int, default=32)
    g.add_argument("--temperature", type=float, default=0.0)
    g.add_argument("--seed", type=int, default=0)
    q = sub.add_parser("ppl")
    q.add_argument("--model", required=True)
    q.add_argument("--text", required=True)
    q.add_argument("--ctx", type=int, default=256)
    q.add_argument("--max-tokens", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    model = load_model(a.model)
    if a.cmd == "logits":
        ids = [int(t) for t in a.ids.split(",") if t.strip()]
        np.save(a.out, logits_for(model, ids, a.absorb).numpy().astype(np.float32))
        return
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(os.path.join(a.model, "tokenizer.json"))
    if a.cmd == "generate":
        ids = tok.encode(a.prompt).ids  # BOS prepended by the post-processor
        if a.temperature > 0:
            out = sample(model, ids, a.n, a.temperature, a.seed)
        else:
            out, _ = greedy(model, ids, a.n)
        print(a.prompt + tok.decode(out, skip_special_tokens=False))
    else:
        with open(a.text, encoding="utf-8") as f:
            ids = tok.encode(f.read(), add_special_tokens=False).ids
        if a.max_tokens:
            ids = ids[:a.max_tokens]
        r = perplexity(model, tok, ids, a.ctx)
        print(f"ctx {r['ctx']} tokens {r['tokens']} ppl {r['ppl']:.4f} bpb {r['bpb']:.4f}")


if __name__ == "__main__":
    main()
