"""Reference fixtures for the bundled model, computed from the EXPORTED files (FP8 dequantised, fp32).

    python3 tools/train/make_fixtures.py [--model models/tiny-shakespeare] [--out tests/data/tiny_ref]

Writes prompts.json, logits.safetensors, perplexity.json, routing.json (formats: docs/TINY_MODEL.md).
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "../.."))
sys.path.insert(0, HERE)
import reference as ref  # noqa: E402
import tokenizer as tokmod  # noqa: E402
from model import load_model  # noqa: E402

DEFAULT_DATA = os.path.normpath(os.path.join(ROOT, "../shared/data/tinyshakespeare.txt"))
N_GREEDY = 32

PROMPTS = [
    "ROMEO:",
    "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\n",
    "KING RICHARD III:\nNow is the winter of our discontent\nMade glorious summer by this sun of York;",
    "JULIET:\nO Romeo, Romeo! wherefore art thou Romeo?",
    "What, ho! Where's my lord? -- 'Tis past twelve; the watch is set.\n\nHAMLET:\n",
    None,  # chat-template prompt, filled in below
    "In 1597, 42 players sang: «Ça va?» 日本語テキスト — naïve café!\n",
    "\n\nMENENIUS:\nI tell you, friends, most charitable care\nHave the patricians of you.",
]
CHAT = [{"role": "user", "content": "Speak, speak. Who art thou?"}]


def prompt_ids(tok, text: str):
    """What `hetmoe run` feeds: BOS + tokens of the text, unless the text already starts with BOS
    (a rendered chat template), which is then tokenised as is (no second BOS)."""
    ids = tok.encode(text, add_special_tokens=False).ids
    if ids[:1] != [0]:
        ids = [0] + ids
    return ids


def skew(counts) -> float:
    """Share of routings taken by the top 20 % of experts."""
    c = sorted(counts, reverse=True)
    k = max(1, round(0.2 * len(c)))
    return sum(c[:k]) / max(1, sum(c))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=os.path.join(ROOT, "models/tiny-shakespeare"))
    ap.add_argument("--out", default=os.path.join(ROOT, "tests/data/tiny_ref"))
    ap.add_argument("--data", default=DEFAULT_DATA)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    from safetensors.torch import save_file
    from tokenizers import Tokenizer

    os.makedirs(a.out, exist_ok=True)
    model = load_model(a.model)
    tok = Tokenizer.from_file(os.path.join(a.model, "tokenizer.json"))

    texts = list(PROMPTS)
    texts[texts.index(None)] = tokmod.render_chat(CHAT, add_generation_prompt=True)
    prompts, logit_tensors = [], {}
    for i, text in enumerate(texts):
        ids = prompt_ids(tok, text)
        n = len(ids)
        positions = sorted(set([0, n // 2, n - 1]))
        full = ref.logits_for(model, ids)
        logit_tensors[f"prompt{i}.logits"] = full[positions].contiguous()
        gen, margins = ref.greedy(model, ids, N_GREEDY)
        prompts.append({
            "text": text, "ids": ids, "logit_positions": positions,
            "greedy_ids": gen, "greedy_text": tok.decode(gen, skip_special_tokens=False),
            "greedy_margins": [round(m, 5) for m in margins],
        })
        print(f"prompt{i}: {len(ids)} ids -> {tok.decode(gen)!r}", flush=True)
    with open(os.path.join(a.out, "prompts.json"), "w", encoding="utf-8") as f:
        # one key per line, lists kept on one line
        f.write("[\n" + ",\n".join(
            "  {\n" + ",\n".join(f"    {json.dumps(k)}: {json.dumps(v, ensure_ascii=False)}" for k, v in p.items())
            + "\n  }" for p in prompts) + "\n]\n")
    save_file(logit_tensors, os.path.join(a.out, "logits.safetensors"))

    _, held_out = tokmod.train_split(a.data)
    val_ids = tok.encode(held_out, add_special_tokens=False).ids
    full = ref.perplexity(model, tok, val_ids, 256, routing=True)
    fast = ref.perplexity(model, tok, val_ids[:2048], 128)
    routing = full.pop("routing")
    ppl = {"protocol": "docs/TINY_MODEL.md#held-out-perplexity",
           "held_out": "last 10% of tinyshakespeare.txt by characters, tokenised without BOS",
           "held_out_tokens": len(val_ids),
           "full_ctx256": full,
           "fast_ctx128_first2048": dict(fast, max_tokens=2048)}
    with open(os.path.join(a.out, "perplexity.json"), "w") as f:
        json.dump(ppl, f, indent=1)
        f.write("\n")
    cfg = model.cfg
    rjson = {"text": "held-out, ctx 256 windows, every token position routed (incl. each window's first)",
             "n_routed_experts": cfg.n_routed_experts, "num_experts_per_tok": cfg.num_experts_per_tok,
             "layers": {str(i): {"counts": c, "top20pct_share": round(skew(c), 4)} for i, c in routing.items()}}
    with open(os.path.join(a.out, "routing.json"), "w") as f:
        json.dump(rjson, f, indent=1)
        f.write("\n")
    print(f"ppl ctx256 {full['ppl']:.3f} bpb {full['bpb']:.4f} ({full['tokens']} tokens); "
          f"ctx128/2048 ppl {fast['ppl']:.3f} bpb {fast['bpb']:.4f}")
    for i, c in routing.items():
        print(f"layer {i}: top-20% share {skew(c):.3f}  min {min(c)} max {max(c)}")


if __name__ == "__main__":
    main()
