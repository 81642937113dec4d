"""Benchmark `hubtune batch-predict` generation against `pipeline("text-generation", batch_size=32)` and a plain
`model.generate` loop at batch 32, on one small LM trained here, greedy, in one run (issue 37).

    python bench/bench_generate.py                  # 500 prompts, 64 new tokens (~10 minutes on 2 cores)
    python bench/bench_generate.py --quick          # 120 prompts, 32 new tokens
    python bench/bench_generate.py --model DIR      # an existing causal LM instead of training one

Model: a GPT-2 (4 layers, hidden 256, a byte-level BPE of 4000 tokens trained on the tweets) trained by hubtune's
causal-LM recipe (`hubtune train`, task text-generation) for three epochs on the 4000 example tweets, so its
greedy continuations are real text, not a random model's. Prompts: the first 3-24 words (seeded) of test tweets,
so their lengths vary. Each method runs in its own process (peak RSS is that process's), model loading excluded
from rows/s; the outputs of every method are compared row by row with the pipeline's (texts without the prompt).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
TWEETS = ROOT / "data" / "tweets"


def tweets(split: str) -> list[str]:
    with open(TWEETS / f"{split}.csv", encoding="utf-8", newline="") as fh:
        return [r["text"] for r in csv.DictReader(fh)]


def train_model(work: Path) -> Path:
    """A small GPT-2 trained on the tweets by hubtune's causal-LM recipe; returns its model folder."""
    import torch
    from tokenizers import ByteLevelBPETokenizer
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast

    from hubtune.core.config import DataConfig, TrainConfig
    from hubtune.train import train

    texts = tweets("train")
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(texts, vocab_size=4000, min_frequency=2, special_tokens=["<|endoftext|>"], show_progress=False)
    tok = GPT2TokenizerFast(tokenizer_object=bpe._tokenizer, eos_token="<|endoftext|>", bos_token="<|endoftext|>",
                            unk_token="<|endoftext|>", model_max_length=256)
    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=len(tok), n_positions=256, n_embd=256, n_layer=4, n_head=4,
                     bos_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id)
    base = work / "base"
    GPT2LMHeadModel(cfg).save_pretrained(base)
    tok.save_pretrained(base)
    res = train(TrainConfig(base_model=str(base), output_dir=str(work / "run"), task="text-generation",
                            data=DataConfig(dataset=str(TWEETS / "train.csv"), eval_dataset=str(TWEETS / "test.csv")),
                            num_epochs=3, batch_size=16, block_size=64, learning_rate=3e-3, logging_steps=1000),
                progress=False)
    return Path(res.model_dir)


def prompts(n: int) -> list[str]:
    rng = random.Random(0)
    out = []
    for t in tweets("test"):
        words = t.split()
        if len(words) >= 4:
            out.append(" ".join(words[: rng.randint(3, min(24, len(words) - 1))]))
        if len(out) == n:
            break
    return out


def run_method(method: str, model: str, data: Path, new: int, out: Path) -> None:
    """One method in this process: writes {texts, seconds, peak_rss_mb} to ``out``."""
    import torch

    rows = [json.loads(line)["prompt"] for line in open(data, encoding="utf-8")]
    texts: list[str]
    if method == "hubtune":
        from hubtune.predict import PredictOptions, batch_predict

        t = time.perf_counter()
        res = batch_predict(PredictOptions(model=model, dataset=str(data), output=str(out.with_suffix(".parquet")),
                                           max_new_tokens=new, progress=False, overwrite=True))
        whole = time.perf_counter() - t  # model loading, the auto choice and the output files included
        seconds = res.rows / res.rows_per_s  # the generation loop (loading excluded, as for the others)
        import pyarrow.parquet as pq

        texts = pq.read_table(out.with_suffix(".parquet")).column("generated_text").to_pylist()
        extra = {"choice": res.choice, "tokens_per_s": res.generation["tokens_per_s"], "whole_run_s": round(whole, 2)}
    else:
        from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline

        tok = AutoTokenizer.from_pretrained(model)
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        tok.padding_side = "left"
        lm = AutoModelForCausalLM.from_pretrained(model).eval()
        extra = {}
        if method == "pipeline":
            pipe = pipeline("text-generation", model=lm, tokenizer=tok, device="cpu")
            t = time.perf_counter()
            res = pipe(rows, batch_size=32, max_new_tokens=new, do_sample=False, return_full_text=False)
            seconds = time.perf_counter() - t
            texts = [r[0]["generated_text"] for r in res]
        else:  # a plain model.generate loop, batches of 32 in input order
            t = time.perf_counter()
            texts = []
            for i in range(0, len(rows), 32):
                enc = tok(rows[i:i + 32], return_tensors="pt", padding=True)
                with torch.inference_mode():
                    seq = lm.generate(**enc, max_new_tokens=new, do_sample=False, pad_token_id=tok.pad_token_id)
                texts += tok.batch_decode(seq[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
            seconds = time.perf_counter() - t
    out.write_text(json.dumps({"texts": texts, "seconds": seconds, "peak_rss_mb": peak_rss_mb(), **extra}))


def peak_rss_mb() -> int:
    """This process's peak resident memory (VmHWM: ru_maxrss would carry the parent's over exec)."""
    with open("/proc/self/status", encoding="utf-8") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024)
    return 0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=500)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--model")
    ap.add_argument("--work", default=None, help="folder for the trained model (kept; reused when it holds one)")
    ap.add_argument("--method", help=argparse.SUPPRESS)
    ap.add_argument("--data", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.method:
        run_method(a.method, a.model, Path(a.data), a.new_tokens, Path(a.out))
        return
    if a.quick:
        a.rows, a.new_tokens = 120, 32
    work = Path(a.work or tempfile.mkdtemp(prefix="bench-generate-"))
    model = a.model
    if model is None:
        trained = work / "run" / "model"
        model = str(trained if (trained / "config.json").is_file() else train_model(work))
    data = work / "prompts.jsonl"
    with open(data, "w", encoding="utf-8") as fh:
        for p in prompts(a.rows):
            fh.write(json.dumps({"prompt": p}) + "\n")
    from hubtune.core.envinfo import cpu_info

    info = cpu_info()
    results = {}
    for method in ("pipeline", "generate-loop", "hubtune"):
        out = work / f"{method}.json"
        subprocess.run([sys.executable, __file__, "--method", method, "--model", model, "--data", str(data),
                        "--new-tokens", str(a.new_tokens), "--out", str(out)], check=True,
                       env={**os.environ, "CI": "true"})
        results[method] = json.loads(out.read_text())
    ref = results["pipeline"]["texts"]
    print(f"CPU: {info['model']}, {info['cores']} cores, flags: {' '.join(k for k, v in info['flags'].items() if v) or 'none'}")
    print(f"model: {model}; {len(ref)} prompts, {a.new_tokens} new tokens, greedy")
    print("| method | rows/s | vs pipeline | identical to pipeline | peak RSS MB |")
    print("|---|---|---|---|---|")
    base = len(ref) / results["pipeline"]["seconds"]
    for method, r in results.items():
        rps = len(r["texts"]) / r["seconds"]
        same = sum(x == y for x, y in zip(r["texts"], ref))
        print(f"| {method} | {rps:.1f} | {rps / base:.2f}x | {same}/{len(ref)} | {r['peak_rss_mb']} |")
    if "choice" in results["hubtune"]:
        print(f"hubtune's path: {results['hubtune']['choice'].get('reason')}; "
              f"{results['hubtune']['tokens_per_s']} tokens/s; whole run (loading included) "
              f"{results['hubtune']['whole_run_s']} s")


if __name__ == "__main__":
    main()
