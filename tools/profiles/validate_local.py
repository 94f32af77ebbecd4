#!/usr/bin/env python3
"""Predicted vs measured tokens/s on this machine (docs/PLANNER.md section 6).

For every configuration: `hetmoe probe -t T --cpu-time` (once per thread count), `hetmoe plan` for
the workload (the prompt length below, 32 generated tokens, the format, engine hetmoe-cpu-0), and
`hetmoe run` measured in CPU time:

  A = run(long prompt, -n 33)   B = run(long prompt, -n 1)   C = run(1-token prompt, -n 1)
  decode step   = (A - B) / 32            (loading and prefill cancel)
  prefill time  = (B - C) + decode step   (C's one-token prefill ~ one decode step)

each the median of --repeats repetitions divided by the thread count (the probe's --cpu-time
also keeps its median pass: the typical memory interference of a shared machine). CPU seconds are the
contention-free equivalent of wall seconds on a machine shared with other jobs (exact at one
thread; at two, idle waits of a thread do not count, so it flatters the engine a little). The
wall-clock tokens/s `hetmoe run` prints (best run) are shown too.

Usage: tools/profiles/validate_local.py [--hetmoe build/tools/hetmoe] [--work DIR] [--repeats 3]
                                        [--only NAME,...] [--keep] [--predict-only]
The measurements are kept in WORK/measured.json; --predict-only re-probes and re-predicts them
without running the models again (after a cost-model or probe change).
Models: models/tiny-shakespeare (bundled) and random checkpoints written into --work with
`hetmoe make-model` (deleted at the end unless --keep).
"""
import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROMPT = ("ROMEO: But soft, what light through yonder window breaks? It is the east, and Juliet is the sun. "
          "Arise, fair sun, and kill the envious moon, who is already sick and pale with grief that thou her "
          "maid art far more fair than she. Be not her maid, since she is envious; her vestal livery is but "
          "sick and green, and none but fools do wear it; cast it off.")

# name, model key, threads, run flags, plan flags
REF = ["--expert-format", "fp8", "--engine", "hetmoe-cpu-0-ref"]
CONFIGS = [
    ("tiny fp8 t1", "tiny", 1, ["--format", "fp8"], ["--expert-format", "fp8"]),
    ("tiny int4 t1", "tiny", 1, ["--format", "int4"], ["--expert-format", "int4"]),
    ("tiny ref t1", "tiny", 1, ["--format", "ref"], REF),
    ("ds3 1L/32e fp8 t1", "ds3-32", 1, ["--format", "fp8"], ["--expert-format", "fp8"]),
    ("ds3 1L/32e int8 t1", "ds3-32", 1, ["--format", "int8"], ["--expert-format", "int8"]),
    ("ds3 1L/32e int4 t1", "ds3-32", 1, ["--format", "int4"], ["--expert-format", "int4"]),
    ("ds3 1L/32e bf16 t1", "ds3-32", 1, ["--format", "bf16"], ["--expert-format", "bf16"]),
    ("ds3 1L/32e ref t1", "ds3-32", 1, ["--format", "ref"], REF),
    ("ds3 1L/32e fp8 t2", "ds3-32", 2, ["--format", "fp8"], ["--expert-format", "fp8"]),
    ("ds3 1L/32e int4 t2", "ds3-32", 2, ["--format", "int4"], ["--expert-format", "int4"]),
    ("v2-lite 4L/16e bf16 t1", "v2", 1, ["--format", "bf16"], ["--expert-format", "bf16"]),
    ("v2-lite 4L/16e int4 t1", "v2", 1, ["--format", "int4"], ["--expert-format", "int4"]),
    ("ds3 1L/256e ref t1", "ds3-256", 1, ["--format", "ref"], REF),
]

MODELS = {
    "tiny": None,  # bundled
    "ds3-32": ["--preset", "ds3-layers", "--layers", "1", "--experts", "32", "--vocab", "3072"],
    "ds3-256": ["--preset", "ds3-layers", "--layers", "1", "--vocab", "3072"],
    "v2": ["--preset", "v2-lite", "--layers", "4", "--experts", "16", "--vocab", "3072"],
}

LINE = re.compile(r"prompt (\d+) tokens in [\d.]+ s \(([\d.]+) tokens/s\); generation (\d+) tokens in [\d.]+ s \(([\d.]+) tokens/s\)")


def sh(args, **kw):
    return subprocess.run(args, capture_output=True, text=True, **kw)


def model_dir(key, work, hetmoe):
    if key == "tiny":
        return os.path.join(ROOT, "models", "tiny-shakespeare")
    path = os.path.join(work, key)
    if not os.path.exists(os.path.join(path, "config.json")):
        r = sh([hetmoe, "make-model", "-o", path, "--seed", "1"] + MODELS[key])
        if r.returncode != 0:
            sys.exit(f"make-model {key} failed: {r.stderr}")
        tok = os.path.join(ROOT, "models", "tiny-shakespeare")
        for name in ("tokenizer.json", "tokenizer_config.json"):
            shutil.copy(os.path.join(tok, name), path)  # random weights, any tokenizer that fits the vocab
    return path


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--hetmoe", default=os.path.join(ROOT, "build", "tools", "hetmoe"))
    ap.add_argument("--work", default=os.path.join(ROOT, "..", "h6-models"))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--only", default="")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--predict-only", action="store_true")
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)
    wanted = set(a.only.split(",")) if a.only else None
    profiles = {}
    rows = []
    saved_path = os.path.join(a.work, "measured.json")
    saved = json.load(open(saved_path)) if os.path.exists(saved_path) else {}
    for name, key, threads, run_flags, plan_flags in CONFIGS:
        if wanted and name not in wanted and key not in wanted:
            continue
        model = model_dir(key, a.work, a.hetmoe)
        if threads not in profiles:
            profiles[threads] = os.path.join(a.work, f"probe-t{threads}.json")
            r = sh([a.hetmoe, "probe", "-t", str(threads), "--no-disk", "--cpu-time", "-o", profiles[threads]])
            if r.returncode != 0:
                sys.exit(f"probe failed: {r.stderr}")
        if a.predict_only:
            if name not in saved:
                continue
            prompt, prefill, decode, wall_prefill, wall_decode = saved[name]
        else:
            def cpu_run(prompt, n):
                before = resource.getrusage(resource.RUSAGE_CHILDREN)
                r = sh([a.hetmoe, "run", "-m", model, "-p", prompt, "-n", str(n), "-t", str(threads), "--temp", "0",
                        "--ignore-eos", "--no-bos"] + run_flags)
                after = resource.getrusage(resource.RUSAGE_CHILDREN)
                m = LINE.search(r.stderr)
                if r.returncode != 0 or not m:
                    sys.exit(f"run {name} failed: {r.stderr[-2000:]}")
                cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
                return cpu / threads, int(m.group(1)), float(m.group(2)), float(m.group(4))
            runs = {"A": [], "B": [], "C": []}
            for _ in range(a.repeats):
                runs["A"].append(cpu_run(PROMPT, 33))
                runs["B"].append(cpu_run(PROMPT, 1))
                runs["C"].append(cpu_run("ROMEO", 1))
            best = {k: sorted(x[0] for x in v)[len(v) // 2] for k, v in runs.items()}  # median, like the probe
            prompt = runs["A"][0][1]
            step = (best["A"] - best["B"]) / 32
            prefill_seconds = best["B"] - best["C"] + step
            decode = 1 / step
            prefill = prompt / prefill_seconds
            wall_prefill = max(x[2] for x in runs["A"])
            wall_decode = max(x[3] for x in runs["A"])
            saved[name] = [prompt, prefill, decode, wall_prefill, wall_decode]
            json.dump(saved, open(saved_path, "w"), indent=1)
        engine = [] if "--engine" in plan_flags else ["--engine", "hetmoe-cpu-0"]
        r = sh([a.hetmoe, "plan", "-m", model, "--hw", profiles[threads], "--prompt", str(prompt), "--gen", "32",
                "--json", "--no-upgrades"] + engine + plan_flags)
        if r.returncode != 0:
            sys.exit(f"plan {name} failed: {r.stderr}")
        p = json.loads(r.stdout)
        rows.append((name, prompt, prefill, p["prefill_tokens_per_second"], wall_prefill, decode,
                     p["decode_tokens_per_second"], wall_decode, p["bottleneck"]))
        print(f"{name}: prefill {prefill:.1f} vs {p['prefill_tokens_per_second']:.1f} (wall {wall_prefill:.1f}), "
              f"decode {decode:.2f} vs {p['decode_tokens_per_second']:.2f} (wall {wall_decode:.2f})", file=sys.stderr)
    print("| configuration | prompt | prefill measured (CPU time) | predicted | error | wall best | "
          "decode measured (CPU time) | predicted | error | wall best | predicted bottleneck |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for name, prompt, pm, pp, pw, dm, dp, dw, b in rows:
        print(f"| {name} | {prompt} | {pm:.1f} | {pp:.1f} | {100 * (pp / pm - 1):+.0f}% | {pw:.1f} | {dm:.2f} | {dp:.2f} | "
              f"{100 * (dp / dm - 1):+.0f}% | {dw:.2f} | {b} |")
    if not a.keep:
        for key in MODELS:
            if MODELS[key] is not None:
                shutil.rmtree(os.path.join(a.work, key), ignore_errors=True)


if __name__ == "__main__":
    main()
