"""Benchmark `hubtune train` against the tutorial recipe (every example padded to max_length=512).

    python bench/bench_train.py --train-rows 240 --eval-rows 240     # ~10 minutes on 2 cores

Same model (packaged MiniLM-L6, full fine-tune), same data, same epochs, learning rate, batch size and
seed (the new head initialised from the same seed), in one process one after the other. Texts are
review-length (tweets of one label concatenated to
a log-normal token target with median 230 tokens, ~9% past 512, like IMDB reviews; see make_reviews); train
and eval reviews come from disjoint halves of the corpus.

  baseline   the tutorial recipe: tokenizer(..., padding="max_length", max_length=512, truncation=True) + Trainer,
             evaluation and a checkpoint each epoch, best model loaded at the end (as in the HF course)
  hubtune    hubtune.train.train(max_length=512): dynamic padding (DataCollatorWithPadding)
  hubtune+gbl  the same with group_by_length=True (length-grouped batches)

Reported: Trainer's train_samples_per_second (its train_runtime includes the per-epoch evaluation on both
sides) and eval accuracy of each; ratios against the baseline.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).parent))

from bench_predict import corpus, minilm_dir  # noqa: E402

LABELS = ["negative", "neutral", "positive"]


def make_reviews(df, n: int, tokenizer, seed: int, median_tokens: int = 230, sigma: float = 0.6):
    """Review-length texts: tweets of one label (URLs and @handles dropped) joined until a token target drawn
    from a log-normal with median ``median_tokens`` (IMDB-like: ~230 tokens median, ~9% past 512)."""
    import re

    import pandas as pd

    rng = np.random.default_rng(seed)
    clean = df.assign(text=df["text"].map(lambda t: " ".join(re.sub(r"(https?://\S+|@\w+)", "", str(t)).split())))
    clean = clean[clean["text"].str.len() > 20]
    pools = {lab: clean[clean["label"] == lab]["text"].sample(frac=1.0, random_state=seed).tolist() for lab in LABELS}
    pos = dict.fromkeys(LABELS, 0)
    rows = []
    for i in range(n):
        lab = LABELS[i % 3]
        target = int(np.exp(rng.normal(np.log(median_tokens), sigma)))
        parts, count = [], 0
        while count < target:
            t = pools[lab][pos[lab] % len(pools[lab])]
            pos[lab] += 1
            parts.append(t)
            count += len(tokenizer(t, add_special_tokens=False)["input_ids"])
        rows.append({"text": " ".join(parts), "label": lab})
    return pd.DataFrame(rows)


def tutorial_recipe(model_dir: str, train_csv: Path, eval_csv: Path, args: argparse.Namespace, out: Path) -> dict:
    import datasets
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, Trainer, TrainingArguments, set_seed

    tok = AutoTokenizer.from_pretrained(model_dir)
    ds = datasets.load_dataset("csv", data_files={"train": str(train_csv), "test": str(eval_csv)})
    ds = ds.map(lambda b: {"labels": [LABELS.index(x) for x in b["label"]]}, batched=True, remove_columns=["label"])
    ds = ds.rename_column("labels", "label")
    ds = ds.map(lambda b: tok(b["text"], padding="max_length", max_length=512, truncation=True), batched=True)
    ds["train"] = ds["train"].shuffle(seed=args.seed)  # the same row order hubtune's data step gives
    set_seed(args.seed)  # hubtune seeds the head's initialisation the same way
    model = AutoModelForSequenceClassification.from_pretrained(
        model_dir, num_labels=3, id2label=dict(enumerate(LABELS)), label2id={n: i for i, n in enumerate(LABELS)}
    )
    targs = TrainingArguments(
        output_dir=str(out), num_train_epochs=args.epochs, learning_rate=args.lr,
        per_device_train_batch_size=args.batch_size, per_device_eval_batch_size=32, seed=args.seed,
        data_seed=args.seed, report_to="none", eval_strategy="epoch", save_strategy="epoch",
        load_best_model_at_end=True, disable_tqdm=True, use_cpu=True, logging_steps=1000,
    )
    # the tutorial's compute_metrics (accuracy) so both sides do the same per-epoch work
    trainer = Trainer(model=model, args=targs, train_dataset=ds["train"], eval_dataset=ds["test"],
                      compute_metrics=lambda p: {"accuracy": float((p.predictions.argmax(-1) == p.label_ids).mean())})
    m = trainer.train().metrics
    pred = trainer.predict(ds["test"])
    acc = float((pred.predictions.argmax(-1) == np.array(ds["test"]["label"])).mean())
    return {"train_samples_per_second": m["train_samples_per_second"], "train_runtime": m["train_runtime"], "accuracy": acc}


def hubtune_recipe(model_dir: str, train_csv: Path, eval_csv: Path, args: argparse.Namespace, out: Path, gbl: bool) -> dict:
    from hubtune.core.config import DataConfig, TrainConfig
    from hubtune.train import train

    cfg = TrainConfig(
        base_model=model_dir, output_dir=str(out), mode="full",
        data=DataConfig(dataset=str(train_csv), eval_dataset=str(eval_csv)),
        num_epochs=args.epochs, learning_rate=args.lr, batch_size=args.batch_size, eval_batch_size=32,
        max_length=512, group_by_length=gbl, seed=args.seed, logging_steps=1000,
    )
    res = train(cfg, overwrite=True, progress=False)
    return {
        "train_samples_per_second": res.train_metrics["train_samples_per_second"],
        "train_runtime": res.train_metrics["train_runtime"],
        "accuracy": res.eval_metrics["accuracy"],
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--train-rows", type=int, default=240)
    ap.add_argument("--eval-rows", type=int, default=240)
    ap.add_argument("--epochs", type=float, default=1.0)
    ap.add_argument("--lr", type=float, default=5e-5)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    import torch
    import transformers

    transformers.logging.set_verbosity_error()
    df = corpus().sample(frac=1.0, random_state=0).reset_index(drop=True)
    half = len(df) // 2
    work = Path(tempfile.mkdtemp(prefix="bench_train_"))
    train_csv, eval_csv = work / "train.csv", work / "eval.csv"
    model = minilm_dir()
    tok = transformers.AutoTokenizer.from_pretrained(model)
    tr = make_reviews(df.iloc[:half], args.train_rows, tok, seed=1)
    ev = make_reviews(df.iloc[half:], args.eval_rows, tok, seed=2)
    for frame in (tr, ev):  # the corpus holds stray CR/LF inside tweets
        frame["text"] = frame["text"].map(lambda t: " ".join(str(t).split()))
    tr.to_csv(train_csv, index=False)
    ev.to_csv(eval_csv, index=False)
    lens = [len(x) for x in tok(tr["text"].tolist(), truncation=True, max_length=512)["input_ids"]]

    results = {}
    t0 = time.perf_counter()
    results["baseline (pad to 512)"] = tutorial_recipe(model, train_csv, eval_csv, args, work / "base")
    results["hubtune (dynamic padding)"] = hubtune_recipe(model, train_csv, eval_csv, args, work / "ht", gbl=False)
    results["hubtune (dynamic + group_by_length)"] = hubtune_recipe(model, train_csv, eval_csv, args, work / "htg", gbl=True)
    base = results["baseline (pad to 512)"]
    report = {
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, "
                   f"torch {torch.__version__}, transformers {transformers.__version__}",
        "data": {"train_rows": args.train_rows, "eval_rows": args.eval_rows,
                 "train_tokens_median": int(np.median(lens)), "train_tokens_mean": round(float(np.mean(lens)), 1),
                 "share_truncated_at_512": round(float(np.mean(np.array(lens) >= 512)), 3)},
        "settings": {"epochs": args.epochs, "lr": args.lr, "batch_size": args.batch_size, "seed": args.seed},
        "results": results,
        "ratios": {k: round(v["train_samples_per_second"] / base["train_samples_per_second"], 2) for k, v in results.items()},
        "accuracy_delta_pt": {k: round(100 * (v["accuracy"] - base["accuracy"]), 2) for k, v in results.items()},
        "wall_seconds": round(time.perf_counter() - t0, 1),
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text)


if __name__ == "__main__":
    main()
