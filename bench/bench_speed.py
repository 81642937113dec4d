"""Issue 14 speed set, one command, one process, ratios in one run; prints ready-to-paste markdown tables.

    python bench/bench_speed.py --quick               # <= 10 min on 2 idle cores (quickstart trained 1 epoch)
    python bench/bench_speed.py                       # the full quickstart (3 epochs), more rows
    python bench/bench_speed.py --quick --json speed.json

What it measures, in this order (every case on the same machine, one after the other):

1. machine: CPU model, AMX / AVX-512 VNNI / AVX-512 BF16 flags, and the measured fp32 and bf16 matmul peaks
   (a large ``torch.matmul``, best of several; measured again at the end).
2. training: the tutorial recipe (plain ``Trainer``, fp32, tokenizer truncation + ``DataCollatorWithPadding``,
   the same PEFT LoRA, data, epochs, learning rate, batch size and seed) vs ``hubtune train`` of
   ``examples/quickstart.yaml`` with its defaults (``precision: auto``): samples/s and accuracy on the same
   eval tweets. Where auto picks bf16 (AMX, CUDA >= 8.0, or AVX-512 BF16 measured fast), the same config is
   trained again with ``precision: fp32`` to check bf16's accuracy against fp32; the table says what auto chose.
3. the quickstart model, merged and exported with ``--quantize int8`` through the default export gate:
   agreement, accuracy drop and file size as the gate measured them.
4. batch-predict with the library defaults (``--backend auto --dtype auto``) vs
   ``pipeline("text-classification", batch_size=32)``: ~400 review-length texts (tweets of data/tweets of one
   label concatenated to 0.5x-2x 175 words; there is no review corpus offline) and 2,000 tweets of
   data/tweets/train.csv; steady-state rows/s (model loading excluded on both sides), label agreement with
   the fp32 pipeline, and the fraction of the measured matmul peak (fp32 or bf16, whichever the path ran)
   reached in useful encoder FLOPs (2 x linear params x tokens + 4 x layers x seq^2 x hidden, no padding).
5. int8 on the quickstart model: ``--backend onnx --dtype int8`` vs ``--backend onnx --dtype fp32`` (ORT fp32):
   speed-up, and agreement / accuracy on the 1,000 labeled test tweets.
6. CUDA: ``bench/bench_gpu.py`` on the same model when a GPU is present; otherwise the table says skipped.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).parent))

from bench_predict import baseline, encoder_gflop, hubtune_run  # noqa: E402

TRAIN_CSV, TEST_CSV = ROOT / "data/tweets/train.csv", ROOT / "data/tweets/test.csv"
QUICKSTART = ROOT / "examples/quickstart.yaml"


def say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def make_reviews(rows: list[dict[str, str]], n: int, words: int = 175, seed: int = 1) -> list[dict[str, str]]:
    """~``words``-word texts: tweets of one label concatenated (deterministic, target 0.5x-2x ``words``)."""
    rng = np.random.default_rng(seed)
    labels = sorted({r["label"] for r in rows})
    pools = {lab: [r["text"] for r in rows if r["label"] == lab] for lab in labels}
    for lab in labels:
        rng.shuffle(pools[lab])
    pos = dict.fromkeys(labels, 0)
    out = []
    for i in range(n):
        lab = labels[i % len(labels)]
        target, parts, count = int(words * rng.uniform(0.5, 2.0)), [], 0
        while count < target:
            t = pools[lab][pos[lab] % len(pools[lab])]
            pos[lab] += 1
            parts.append(t)
            count += len(t.split())
        out.append({"text": " ".join(parts), "label": lab})
    return out


def matmul_peak(dtype: str, n: int = 2048, tries: int = 5) -> float:
    """GFLOP/s of a large square torch.matmul in ``dtype`` (best of ``tries``: the machine may be shared)."""
    import torch

    dt = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype]
    a, b = torch.randn(n, n).to(dt), torch.randn(n, n).to(dt)
    for _ in range(2):
        a @ b
    best = 0.0
    for _ in range(tries):
        reps, t0 = 3, time.perf_counter()
        for _ in range(reps):
            a @ b
        best = max(best, 2 * n**3 * reps / (time.perf_counter() - t0) / 1e9)
    return best


def machine() -> dict:
    from hubtune.core.envinfo import cpu_info, fast_bf16

    import torch

    c = cpu_info()
    fast, why = fast_bf16()
    return {"cpu": c["model"], "cores": c["cores"], "amx": bool(c["flags"].get("amx_tile")),
            "avx512_vnni": bool(c["flags"].get("avx512_vnni")), "avx512_bf16": bool(c["flags"].get("avx512_bf16")),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "fast_bf16": fast, "fast_bf16_reason": why, "torch": torch.__version__, "threads": torch.get_num_threads()}


# ------------------------------------------------------------------------------------------------
# training
# ------------------------------------------------------------------------------------------------
def quickstart_overrides(args: argparse.Namespace, out: Path) -> dict:
    import yaml

    cfg = yaml.safe_load(QUICKSTART.read_text(encoding="utf-8"))
    cfg["output_dir"] = str(out)
    cfg["data"]["dataset"], cfg["data"]["eval_dataset"] = "data/tweets/train.csv", "data/tweets/test.csv"  # cwd: repo
    if args.quick:
        cfg["num_epochs"] = 1
    if args.train_rows:
        cfg["data"]["max_samples"] = args.train_rows
    if args.eval_rows:
        cfg["data"]["eval_max_samples"] = args.eval_rows
    return cfg


def tutorial_recipe(cfg: dict, out: Path) -> dict:
    """The PEFT/Trainer tutorial: tokenize with truncation, pad per batch, plain Trainer in fp32, same LoRA."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig, TaskType, get_peft_model
    from transformers import (AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding, Trainer,
                              TrainingArguments)

    from hubtune.data.dataset import load_train_eval
    from hubtune.core.config import DataConfig, from_dict
    from hubtune.core.modeling import resolve_model_source

    data = load_train_eval(from_dict(DataConfig, cfg["data"]))
    names = list(data.label_names)
    src = resolve_model_source(cfg["base_model"])
    tok = AutoTokenizer.from_pretrained(src)
    torch.manual_seed(cfg["seed"])
    model = AutoModelForSequenceClassification.from_pretrained(
        src, num_labels=len(names), id2label=dict(enumerate(names)), label2id={n: i for i, n in enumerate(names)})
    lc = cfg["lora"]
    model = get_peft_model(model, LoraConfig(task_type=TaskType.SEQ_CLS, r=lc["r"], lora_alpha=lc["alpha"],
                                             lora_dropout=lc["dropout"]))

    def enc(ds):
        d = Dataset.from_dict({"text": list(ds.dataset["text"]), "label": list(ds.dataset["label"])})
        return d.map(lambda b: tok(b["text"], truncation=True, max_length=cfg["max_length"]), batched=True,
                     remove_columns=["text"])

    train, ev = enc(data.train), enc(data.eval)

    def acc(p):
        return {"accuracy": float((np.argmax(p.predictions, -1) == p.label_ids).mean())}

    args = TrainingArguments(
        output_dir=str(out), num_train_epochs=cfg["num_epochs"], learning_rate=cfg["learning_rate"],
        per_device_train_batch_size=cfg["batch_size"], per_device_eval_batch_size=64, eval_strategy="epoch",
        save_strategy="no", report_to=[], seed=cfg["seed"], use_cpu=not torch.cuda.is_available(),
        disable_tqdm=True, logging_strategy="no",
    )
    trainer = Trainer(model=model, args=args, train_dataset=train, eval_dataset=ev,
                      data_collator=DataCollatorWithPadding(tok), compute_metrics=acc)
    m = trainer.train().metrics
    e = trainer.evaluate()
    return {"samples_per_s": m["train_samples_per_second"], "train_seconds": m["train_runtime"],
            "accuracy": e["eval_accuracy"], "precision": "fp32", "rows": len(train)}


def hubtune_recipe(cfg: dict) -> tuple[dict, Path]:
    from hubtune.core.config import TrainConfig, from_dict
    from hubtune.train import train

    res = train(from_dict(TrainConfig, cfg), progress=False)
    summary = json.loads((res.output_dir / "run_summary.json").read_text(encoding="utf-8"))
    return {"samples_per_s": res.train_metrics.get("train_samples_per_second"),
            "train_seconds": res.train_metrics.get("train_runtime"), "accuracy": res.eval_metrics["accuracy"],
            "precision": summary.get("precision"), "precision_reason": summary.get("precision_reason"),
            "rows": res.sizes.get("train")}, res.output_dir


# ------------------------------------------------------------------------------------------------
def widen_tokenizer(model_dir: Path, out: Path, max_len: int = 512) -> Path:
    """A copy of ``model_dir`` whose tokenizer truncates at ``max_len`` (both sides of the comparison read it)."""
    if out.exists():
        return out
    shutil.copytree(model_dir, out)  # onnx/ too: the same weights, so batch-predict may choose it
    cfg_file = out / "tokenizer_config.json"
    cfg = json.loads(cfg_file.read_text())
    cfg["model_max_length"] = max_len
    cfg_file.write_text(json.dumps(cfg, indent=2))
    return out


def flops_fraction(gflop: float, rows: int, rps: float, peak: float) -> float:
    return gflop / (rows / rps) / peak if rps and peak else 0.0


def agreement(a: list, b: list) -> float:
    return float(np.mean(np.asarray(a) == np.asarray(b)))


def write_parquet(rows: list[dict[str, str]], path: Path) -> Path:
    import pandas as pd

    pd.DataFrame(rows).to_parquet(path, index=False)
    return path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="quickstart trained 1 epoch; <= 10 min on 2 cores")
    ap.add_argument("--reviews", type=int, default=400)
    ap.add_argument("--tweets", type=int, default=2000)
    ap.add_argument("--train-rows", type=int, help="override the quickstart's data.max_samples (smoke runs only)")
    ap.add_argument("--eval-rows", type=int, help="override the quickstart's data.eval_max_samples (smoke runs only)")
    ap.add_argument("--keep", help="keep the trained run here (default: a temporary folder, removed)")
    ap.add_argument("--json", dest="json_out", help="write the figures to this JSON file")
    args = ap.parse_args()
    t_start = time.perf_counter()
    os.chdir(ROOT)
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-speed-"))
    work.mkdir(parents=True, exist_ok=True)
    fig: dict = {"command": "python " + " ".join(["bench/bench_speed.py", *sys.argv[1:]]), "machine": machine()}
    say(f"machine: {fig['machine']}")
    fig["peaks_gflops"] = {"fp32": matmul_peak("fp32"), "bf16": matmul_peak("bf16")}
    say(f"matmul peaks: {fig['peaks_gflops']}")

    # 2. training
    cfg = quickstart_overrides(args, work / "run")
    say("training: tutorial recipe (plain Trainer, fp32)")
    base = tutorial_recipe(cfg, work / "tutorial")
    shutil.rmtree(work / "tutorial", ignore_errors=True)
    say(f"  {base}")
    say("training: hubtune train examples/quickstart.yaml (precision auto)")
    hub, run = hubtune_recipe(cfg)
    say(f"  {hub}")
    fig["train"] = {"tutorial": base, "hubtune": hub, "epochs": cfg["num_epochs"]}
    if hub["precision"] != "fp32":
        say("training: the same config, precision fp32 (bf16's accuracy against fp32)")
        fig["train"]["hubtune_fp32"], _ = hubtune_recipe(dict(cfg, precision="fp32", output_dir=str(work / "run-fp32")))
        shutil.rmtree(work / "run-fp32", ignore_errors=True)
        say(f"  {fig['train']['hubtune_fp32']}")

    # 3. merge + export int8 through the default gate
    from hubtune.publish.export import ExportOptions, export
    from hubtune.publish.merge import MergeOptions, merge

    say("merge + export --quantize int8 (default gate)")
    merge(MergeOptions(source=str(run)))
    ex = export(ExportOptions(source=str(run), quantize="int8"))
    model_dir = Path(ex.model_dir)
    v8 = ex.variants.get("onnx-int8") or ex.refused.get("onnx-int8")
    fig["export_int8"] = {
        "kept": "onnx-int8" in ex.variants, "reason": v8.reason, "agreement": v8.parity.label_agreement,
        "accuracy_fp32": ex.variants["pytorch"].metrics["accuracy"], "accuracy_drop_pt": v8.accuracy_drop_pt,
        "size_mb": v8.size_mb, "size_mb_fp32": ex.variants["onnx"].size_mb, "examples": ex.num_examples,
        "method": v8.config, "eval_source": ex.eval_source,
    }
    say(f"  {fig['export_int8']}")

    # 4. default batch-predict vs pipeline, as issue 14 measured it: a tokenizer that allows 512 tokens
    # (the quickstart run saves model_max_length 128, its training length)
    model_dir = widen_tokenizer(model_dir, work / "model-512")
    train_rows, test_rows = read_csv(TRAIN_CSV), read_csv(TEST_CSV)
    cases = {"reviews": make_reviews(train_rows + test_rows, args.reviews), "tweets": train_rows[:args.tweets]}
    fig["predict"] = {}
    for name, rows in cases.items():
        data = write_parquet(rows, work / f"{name}.parquet")
        texts = [r["text"] for r in rows]
        gflop = encoder_gflop(model_dir, texts)
        say(f"[{name}] pipeline(batch_size=32) on {len(texts)} texts")
        base_labels, base_rps = baseline(model_dir, texts)
        say(f"[{name}] hubtune batch-predict, defaults")
        from hubtune.predict import PredictOptions, batch_predict

        out = work / f"{name}-default.parquet"
        res = batch_predict(PredictOptions(model=str(model_dir), dataset=str(data), output=str(out), progress=False))
        import pandas as pd

        labels = pd.read_parquet(out)["label"].tolist()
        dtype = res.dtype if res.dtype in ("bf16", "fp16") else "fp32"
        peak = fig["peaks_gflops"]["bf16" if dtype in ("bf16", "fp16") else "fp32"]
        fig["predict"][name] = {
            "rows": len(texts), "gflop": gflop, "pipeline_rows_s": base_rps, "hubtune_rows_s": res.rows_per_s,
            "speedup": res.rows_per_s / base_rps, "backend": res.backend, "dtype": res.dtype,
            "hubtune_seconds_total": res.seconds, "pipeline_seconds_compute": len(texts) / base_rps,
            "reason": res.choice.get("reason"), "agreement_vs_fp32": agreement(labels, base_labels),
            "peak_used": dtype if dtype != "fp16" else "bf16",
            "peak_fraction": flops_fraction(gflop, len(texts), res.rows_per_s, peak),
            "pipeline_peak_fraction": flops_fraction(gflop, len(texts), base_rps, fig["peaks_gflops"]["fp32"]),
        }
        say(f"  {fig['predict'][name]}")

    # 5. int8 vs ORT fp32 on the quickstart model
    fig["int8"] = {}
    test_rows = test_rows[:args.tweets]
    labeled = write_parquet(test_rows, work / "test.parquet")
    for name, data in (("test tweets", labeled), ("reviews", work / "reviews.parquet")):
        say(f"[int8] {name}: onnx fp32 vs onnx int8")
        l32, r32, _ = hubtune_run(model_dir, data, work, backend="onnx", dtype="fp32")
        l8, r8, _ = hubtune_run(model_dir, data, work, backend="onnx", dtype="int8")
        row = {"rows": len(l32), "fp32_rows_s": r32, "int8_rows_s": r8, "speedup": r8 / r32, "agreement": agreement(l8, l32)}
        if name == "test tweets":
            truth = [r["label"] for r in test_rows]
            row["accuracy_fp32"], row["accuracy_int8"] = agreement(l32, truth), agreement(l8, truth)
        fig["int8"][name] = row
        say(f"  {row}")

    # 6. CUDA
    import torch

    if torch.cuda.is_available():
        say("CUDA: bench/bench_gpu.py on the same model")
        proc = subprocess.run([sys.executable, str(ROOT / "bench/bench_gpu.py"), "--model", str(model_dir),
                               "--rows", "2000", "--json", str(work / "gpu.json")], capture_output=True, text=True)
        fig["gpu"] = json.loads((work / "gpu.json").read_text()) if proc.returncode == 0 else {"error": proc.stderr[-2000:]}
    else:
        fig["gpu"] = None
    fig["peaks_gflops_after"] = {"fp32": matmul_peak("fp32"), "bf16": matmul_peak("bf16")}
    fig["seconds"] = round(time.perf_counter() - t_start, 1)
    print(markdown(fig))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(fig, indent=2, default=str), encoding="utf-8")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def markdown(f: dict) -> str:
    m, p, pa = f["machine"], f["peaks_gflops"], f["peaks_gflops_after"]
    yes = {True: "yes", False: "no"}
    head = (f"Machine: {m['cpu']}, {m['cores']} cores; AMX: {yes[m['amx']]}; AVX-512 VNNI: {yes[m['avx512_vnni']]}; "
            f"AVX-512 BF16: {yes[m['avx512_bf16']]}; GPU: {m['cuda'] or 'none'}; torch {m['torch']}, {m['threads']} threads. "
            f"Measured matmul peaks: fp32 {p['fp32']:.0f} GFLOP/s, bf16 {p['bf16']:.0f} GFLOP/s "
            f"(after the cases: {pa['fp32']:.0f} / {pa['bf16']:.0f}). Command: `{f['command']}` ({f['seconds']:.0f} s).")
    cpu = f"{m['cpu']} (AMX {yes[m['amx']]}, AVX-512 VNNI {yes[m['avx512_vnni']]}, AVX-512 BF16 {yes[m['avx512_bf16']]})"
    out = [head, "", f"**batch-predict defaults vs `pipeline(batch_size=32)`** — {cpu}", "",
           "| texts | rows | pipeline rows/s | hubtune rows/s | speed-up | chose | labels vs fp32 | % of matmul peak (hubtune / pipeline) | end to end, s (hubtune incl. load, choice, check / pipeline compute only) |",
           "|---|---|---|---|---|---|---|---|---|"]
    for name, r in f["predict"].items():
        out.append(f"| {name} | {r['rows']} | {r['pipeline_rows_s']:.1f} | {r['hubtune_rows_s']:.1f} | **{r['speedup']:.2f}x** | "
                   f"{r['backend']} {r['dtype']} | {r['agreement_vs_fp32']:.2%} | {r['peak_fraction']:.0%} of {r['peak_used']} / "
                   f"{r['pipeline_peak_fraction']:.0%} of fp32 | "
                   f"{r.get('hubtune_seconds_total', 0):.1f} / {r.get('pipeline_seconds_compute', 0):.1f} |")
    reasons = {r["reason"] for r in f["predict"].values() if r.get("reason")}
    if reasons:
        out.append(f"\nWhy: {'; '.join(sorted(reasons))}")
    e, i8 = f["export_int8"], f["int8"]
    out += ["", f"**int8 on the quickstart model** ({f['train']['epochs']:g} epoch(s)) — {cpu}", "",
            "| measured on | agreement with fp32 | accuracy fp32 -> int8 | speed-up vs ORT fp32 | size |", "|---|---|---|---|---|",
            f"| export gate ({e['examples']} texts of {e['eval_source']}; {'kept' if e['kept'] else 'REFUSED: ' + str(e['reason'])}) | "
            f"{e['agreement']:.2%} | {e['accuracy_fp32']:.4f} (drop {e['accuracy_drop_pt']:.2f} pt) | - | "
            f"{e['size_mb']:.1f} MB vs {e['size_mb_fp32']:.1f} MB |"]
    for name, r in i8.items():
        acc = (f"{r['accuracy_fp32']:.4f} -> {r['accuracy_int8']:.4f}" if "accuracy_fp32" in r else "-")
        out.append(f"| {name} ({r['rows']} rows, batch-predict) | {r['agreement']:.2%} | {acc} | **{r['speedup']:.2f}x** "
                   f"({r['fp32_rows_s']:.1f} -> {r['int8_rows_s']:.1f} rows/s) | |")
    out.append(f"\nMethod: {e['method']}")
    t = f["train"]
    b, h = t["tutorial"], t["hubtune"]
    out += ["", f"**training, quickstart config ({t['epochs']:g} epoch(s), {h['rows']} rows)** — {cpu}", "",
            "| recipe | precision | samples/s | accuracy | ratio |", "|---|---|---|---|---|",
            f"| tutorial (plain Trainer) | fp32 | {b['samples_per_s']:.1f} | {b['accuracy']:.4f} | 1.00x |",
            f"| hubtune train (`precision: auto`) | {h['precision']} | {h['samples_per_s']:.1f} | {h['accuracy']:.4f} | "
            f"**{h['samples_per_s'] / b['samples_per_s']:.2f}x** |"]
    if t.get("hubtune_fp32"):
        h32 = t["hubtune_fp32"]
        out.append(f"| hubtune train, `precision: fp32` (same config) | fp32 | {h32['samples_per_s']:.1f} | "
                   f"{h32['accuracy']:.4f} | {h32['samples_per_s'] / b['samples_per_s']:.2f}x |")
    out.append(f"\nPrecision: {h.get('precision_reason')}")
    if f.get("gpu"):
        out += ["", "**CUDA** (bench/bench_gpu.py, same model)", "", "```", json.dumps(f["gpu"], indent=1), "```"]
    else:
        out += ["", "CUDA: skipped (no GPU on this machine)."]
    return "\n".join(out)


if __name__ == "__main__":
    raise SystemExit(main())
