"""Byte-level BPE tokenizer in DeepSeek-V3 form (MODEL_SPEC section 5), trained with `tokenizers`.

    python3 tools/train/tokenizer.py train --out DIR [--vocab-size 3000]   # train on the 90% split
    python3 tools/train/tokenizer.py check DIR                              # pre-tokenizer / template checks
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

BOS = "<｜begin▁of▁sentence｜>"
EOS = "<｜end▁of▁sentence｜>"
PAD = "<｜▁pad▁｜>"
USER = "<｜User｜>"
ASSISTANT = "<｜Assistant｜>"
THINK = "<think>"
END_THINK = "</think>"
# the tool-call markers the R1 chat template emits; kept as specials so the template renders to
# single tokens as in the real vocabulary
TOOL_SPECIALS = [
    "<｜tool▁calls▁begin｜>", "<｜tool▁calls▁end｜>", "<｜tool▁call▁begin｜>", "<｜tool▁call▁end｜>",
    "<｜tool▁outputs▁begin｜>", "<｜tool▁outputs▁end｜>", "<｜tool▁output▁begin｜>",
    "<｜tool▁output▁end｜>", "<｜tool▁sep｜>",
]
SPECIALS = [BOS, EOS, PAD, USER, ASSISTANT, THINK, END_THINK] + TOOL_SPECIALS

# MODEL_SPEC 5.2: three isolated regex splits, then ByteLevel without its own regex.
SPLIT_DIGITS = r"\p{N}{1,3}"
SPLIT_CJK = r"[一-龥぀-ゟ゠-ヿ]+"
SPLIT_MAIN = (r"[!\"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^" "\r\n"
              r"\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[" "\r\n" r"]*|\s*[" "\r\n"
              r"]+|\s+(?!\S)|\s+")

# DeepSeek-R1 chat template, revised form (generation prompt ends with "<｜Assistant｜><think>\n");
# MODEL_SPEC 5.4.
CHAT_TEMPLATE = (
    "{% if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}{% endif %}"
    "{% set ns = namespace(is_first=false, is_tool=false, is_output_first=true, system_prompt='', is_first_sp=true) %}"
    "{%- for message in messages %}{%- if message['role'] == 'system' %}{%- if ns.is_first_sp %}"
    "{% set ns.system_prompt = ns.system_prompt + message['content'] %}{% set ns.is_first_sp = false %}"
    "{%- else %}{% set ns.system_prompt = ns.system_prompt + '\\n\\n' + message['content'] %}{%- endif %}"
    "{%- endif %}{%- endfor %}"
    "{{ bos_token }}{{ ns.system_prompt }}"
    "{%- for message in messages %}"
    "{%- if message['role'] == 'user' %}{%- set ns.is_tool = false -%}{{'<｜User｜>' + message['content']}}{%- endif %}"
    "{%- if message['role'] == 'assistant' and 'tool_calls' in message %}{%- set ns.is_tool = false -%}"
    "{%- for tool in message['tool_calls'] %}{%- if not ns.is_first %}"
    "{%- if message['content'] is none %}"
    "{{'<｜Assistant｜><｜tool▁calls▁begin｜><｜tool▁call▁begin｜>' + tool['type'] + '<｜tool▁sep｜>' + tool['function']['name'] + '\\n' + '```json' + '\\n' + tool['function']['arguments'] + '\\n' + '```' + '<｜tool▁call▁end｜>'}}"
    "{%- else %}"
    "{{'<｜Assistant｜>' + message['content'] + '<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>' + tool['type'] + '<｜tool▁sep｜>' + tool['function']['name'] + '\\n' + '```json' + '\\n' + tool['function']['arguments'] + '\\n' + '```' + '<｜tool▁call▁end｜>'}}"
    "{%- endif %}{%- set ns.is_first = true -%}"
    "{%- else %}"
    "{{'\\n' + '<｜tool▁call▁begin｜>' + tool['type'] + '<｜tool▁sep｜>' + tool['function']['name'] + '\\n' + '```json' + '\\n' + tool['function']['arguments'] + '\\n' + '```' + '<｜tool▁call▁end｜>'}}"
    "{%- endif %}{%- endfor %}{{'<｜tool▁calls▁end｜><｜end▁of▁sentence｜>'}}{%- endif %}"
    "{%- if message['role'] == 'assistant' and 'tool_calls' not in message %}"
    "{%- if ns.is_tool %}{{'<｜tool▁outputs▁end｜>' + message['content'] + '<｜end▁of▁sentence｜>'}}{%- set ns.is_tool = false -%}"
    "{%- else %}{% set content = message['content'] %}"
    "{% if '</think>' in content %}{% set content = content.split('</think>')[-1] %}{% endif %}"
    "{{'<｜Assistant｜>' + content + '<｜end▁of▁sentence｜>'}}{%- endif %}{%- endif %}"
    "{%- if message['role'] == 'tool' %}{%- set ns.is_tool = true -%}{%- if ns.is_output_first %}"
    "{{'<｜tool▁outputs▁begin｜><｜tool▁output▁begin｜>' + message['content'] + '<｜tool▁output▁end｜>'}}"
    "{%- set ns.is_output_first = false %}"
    "{%- else %}{{'\\n<｜tool▁output▁begin｜>' + message['content'] + '<｜tool▁output▁end｜>'}}{%- endif %}"
    "{%- endif %}{%- endfor -%}"
    "{% if ns.is_tool %}{{'<｜tool▁outputs▁end｜>'}}{% endif %}"
    "{% if add_generation_prompt and not ns.is_tool %}{{'<｜Assistant｜><think>\\n'}}{% endif %}"
)


def pre_tokenizer():
    return pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(SPLIT_DIGITS), behavior="isolated", invert=False),
        pre_tokenizers.Split(Regex(SPLIT_CJK), behavior="isolated", invert=False),
        pre_tokenizers.Split(Regex(SPLIT_MAIN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
    ])


def train_tokenizer(text: str, vocab_size: int = 3000) -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizer()
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=2, special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator([text], trainer=trainer)
    # add BOS like the published tokenizer.json (add_bos_token true); encode(..., add_special_tokens=False)
    # gives the raw ids
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, 0)])
    for i, s in enumerate(SPECIALS):
        assert tok.token_to_id(s) == i, (s, tok.token_to_id(s))
    return tok


def _added(content: str) -> dict:
    return {"__type": "AddedToken", "content": content, "lstrip": False, "normalized": True,
            "rstrip": False, "single_word": False}


def tokenizer_config(model_max_length: int) -> dict:
    return {
        "add_bos_token": True,
        "add_eos_token": False,
        "bos_token": _added(BOS),
        "clean_up_tokenization_spaces": False,
        "eos_token": _added(EOS),
        "legacy": True,
        "model_max_length": model_max_length,
        "pad_token": _added(EOS),
        "sp_model_kwargs": {},
        "unk_token": None,
        "tokenizer_class": "LlamaTokenizerFast",
        "chat_template": CHAT_TEMPLATE,
    }


def save(tok: Tokenizer, out_dir: str, model_max_length: int = 512):
    os.makedirs(out_dir, exist_ok=True)
    tok.save(os.path.join(out_dir, "tokenizer.json"))
    with open(os.path.join(out_dir, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(tokenizer_config(model_max_length), f, ensure_ascii=False, indent=2)
        f.write("\n")


def render_chat(messages, add_generation_prompt=True, bos_token=BOS) -> str:
    import jinja2
    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True)  # as transformers does
    return env.from_string(CHAT_TEMPLATE).render(
        messages=messages, add_generation_prompt=add_generation_prompt, bos_token=bos_token)


def load(model_dir: str) -> Tokenizer:
    return Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))


def train_split(path: str, frac: float = 0.9):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    n = int(len(text) * frac)
    return text[:n], text[n:]


# --------------------------------------------------------------------------------------------
def check(model_dir: str) -> None:
    """Raises AssertionError when the saved tokenizer deviates from MODEL_SPEC 5."""
    tok = load(model_dir)
    pieces = [p for p, _ in tok.pre_tokenizer.pre_tokenize_str("12345 日本語テキスト Hello, world!\n\n")]
    # MODEL_SPEC 5.2 by hand: digits in groups of <= 3; the CJK/kana run isolated; then the main
    # pattern: " Hello" (optional non-letter + letters), "," (punct run), " world", "!\n\n" (punct +
    # trailing newlines).  Pieces are shown after the byte-level map (space -> U+0120, \n -> U+010A).
    expect = ["123", "45", " ", "日本語テキスト", " Hello", ",", " world", "!\n\n"]
    bl = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    expect_bl = ["".join(p for p, _ in bl.pre_tokenize_str(e)) for e in expect]
    assert pieces == expect_bl, f"pre-tokenizer split {pieces} != {expect_bl}"
    # special tokens
    for i, s in enumerate(SPECIALS):
        assert tok.token_to_id(s) == i, f"{s} has id {tok.token_to_id(s)}, want {i}"
    enc = tok.encode("Hello")
    assert enc.ids[0] == 0, "BOS must be prepended"
    assert tok.encode("Hello", add_special_tokens=False).ids == enc.ids[1:]
    # round trip incl. unicode / newlines
    s = "ROMEO:\nBut, soft! what light 12345 through yonder 日本語 window breaks?\n\n"
    assert tok.decode(tok.encode(s, add_special_tokens=False).ids) == s
    # chat template
    with open(os.path.join(model_dir, "tokenizer_config.json"), encoding="utf-8") as f:
        cfg = json.load(f)
    assert cfg["add_bos_token"] is True and cfg["bos_token"]["content"] == BOS
    assert cfg["eos_token"]["content"] == EOS
    r = render_chat([{"role": "user", "content": "Hi"}])
    assert r == f"{BOS}{USER}Hi{ASSISTANT}<think>\n", repr(r)
    r = render_chat([{"role": "system", "content": "S"}, {"role": "user", "content": "a"},
                     {"role": "assistant", "content": "<think>x</think>b"}, {"role": "user", "content": "c"}])
    assert r == f"{BOS}S{USER}a{ASSISTANT}b{EOS}{USER}c{ASSISTANT}<think>\n", repr(r)
    ids = tok.encode(r, add_special_tokens=False).ids
    assert ids[0] == 0 and ids.count(0) == 1 and tok.token_to_id(THINK) in ids
    print("tokenizer check: OK  pieces=", pieces)


def main(argv=None):
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train")
    t.add_argument("--data", default=os.path.join(os.path.dirname(__file__), "../../../shared/data/tinyshakespeare.txt"))
    t.add_argument("--out", required=True)
    t.add_argument("--vocab-size", type=int, default=3000)
    c = sub.add_parser("check")
    c.add_argument("dir")
    a = ap.parse_args(argv)
    if a.cmd == "train":
        train_text, _ = train_split(a.data)
        tok = train_tokenizer(train_text, a.vocab_size)
        save(tok, a.out)
        print("vocab", tok.get_vocab_size())
    else:
        check(a.dir)


if __name__ == "__main__":
    sys.exit(main())
