"""Issue 24's matrix: tiny random classifiers of 15 model families (tests/_families.py: 2 layers, hidden 32,
the packaged MiniLM tokenizer) through LoRA (targets found without lora.target_modules), torch.onnx export
(time, max |diff| of the logits vs PyTorch on real texts) and batch-predict on ONNX Runtime vs PyTorch.

    python bench/bench_families.py            # ~2 minutes on 2 cores
    python bench/bench_families.py --json out.json
    python bench/bench_families.py --flow     # also train-and-push, full and LoRA, on the embedded local Hub
                                              # (train -> merge -> ONNX + int8 -> card -> push -> fresh-process
                                              # verification): ~6 more minutes
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def cpu() -> str:
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown CPU"
    name = next((ln.split(":", 1)[1].strip() for ln in info.splitlines() if ln.startswith("model name")), "unknown CPU")
    flags = next((ln.split(":", 1)[1].split() for ln in info.splitlines() if ln.startswith("flags")), [])
    shown = [f for f in flags if f.startswith(("avx512_bf16", "avx512_vnni", "amx"))] or [f for f in flags if f == "avx2"]
    return f"{name} ({', '.join(shown)})"


def flow(family: str, mode: str, base: Path, work: Path) -> str:
    """train-and-push of ``base`` (1 epoch on 64 tweets, ONNX + int8) to the embedded local Hub: "verified in N s"
    (the pushed revision loaded by pipeline() and ONNX Runtime in a fresh process answered as measured), or why not."""
    from hubtune.core.config import DataConfig, ExportSettings, GateSettings, LoraSettings, PipelineConfig, PublishSettings
    from hubtune.pipeline import PipelineOptions, run_pipeline
    from tests.conftest import TWEETS_TEST, TWEETS_TRAIN

    cfg = PipelineConfig(
        base_model=str(base), output_dir=str(work / f"run-{mode}"), mode=mode,
        data=DataConfig(dataset=str(TWEETS_TRAIN), eval_dataset=str(TWEETS_TEST), max_samples=64, eval_max_samples=48),
        num_epochs=1, batch_size=16, max_length=32, learning_rate=1e-3, logging_steps=1000,
        lora=LoraSettings(r=4, alpha=8, dropout=0.0), publish=PublishSettings(repo_id=f"org/{family}-{mode}", tag="v1"),
        export=ExportSettings(onnx=True, quantize="int8"), gates=GateSettings(golden_examples=16),
    )
    t0 = time.perf_counter()
    try:
        res = run_pipeline(PipelineOptions(config=cfg, progress=False, local_hub=str(work / "hub")))
    except Exception as exc:  # noqa: BLE001 - the matrix records the failure
        return f"N: {type(exc).__name__}: {' '.join(str(exc).split())[:120]}"
    seconds = time.perf_counter() - t0
    int8 = "int8" if "onnx-int8" in (res.variants or {}) else "int8 refused by its gate"
    return (f"verified in {seconds:.1f} s ({int8})" if res.verified and res.committed else f"N: {res.message[:120]}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", default=None)
    ap.add_argument("--flow", action="store_true", help="also train-and-push each family, full and LoRA")
    args = ap.parse_args()
    import numpy as np
    import pandas as pd
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from hubtune.core.config import TrainConfig
    from hubtune.core.onnx_tools import export_onnx, session
    from hubtune.predict import batch_predict
    from hubtune.predict.options import PredictOptions
    from hubtune.train.adapters import adapter_targets, apply_adapter
    from tests._families import FAMILIES, TEXTS, build

    rows_file = Path(tempfile.mkdtemp()) / "rows.csv"
    pd.DataFrame({"text": TEXTS * 2}).to_csv(rows_file, index=False)
    results = []
    for family in FAMILIES:
        work = Path(tempfile.mkdtemp(prefix=f"fam-{family}-"))
        model_dir = build(family, work / "model")
        row: dict = {"family": family}
        model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
        tok = AutoTokenizer.from_pretrained(model_dir)
        try:
            row["lora_targets"] = ", ".join(adapter_targets(apply_adapter(
                AutoModelForSequenceClassification.from_pretrained(model_dir), TrainConfig(base_model="x", mode="lora"))))
        except Exception as exc:  # noqa: BLE001 - the matrix records the failure
            row["lora_targets"] = f"N: {type(exc).__name__}"
        t0 = time.perf_counter()
        try:
            export_onnx(model_dir, work / "onnx", model=model, tokenizer=tok)
            row["export_s"] = round(time.perf_counter() - t0, 2)
            enc = tok(TEXTS, padding=True, return_tensors="pt")
            with torch.no_grad():
                ref = model(**{k: v for k, v in enc.items() if k in tok.model_input_names}).logits.numpy()
            sess = session(work / "onnx" / "model.onnx")
            got = sess.run(None, {i.name: enc[i.name].numpy() for i in sess.get_inputs()})[0]
            row["max_diff"] = float(np.abs(got - ref).max())
        except Exception as exc:  # noqa: BLE001
            row["export_s"], row["max_diff"] = f"N: {type(exc).__name__}", None
        labels = {}
        for backend in ("torch", "onnx"):
            try:
                batch_predict(PredictOptions(model=str(model_dir), dataset=str(rows_file), backend=backend, dtype="fp32",
                                             output=str(work / f"{backend}.parquet")))
                labels[backend] = list(pd.read_parquet(work / f"{backend}.parquet")["label"])
                row[backend] = "Y"
            except Exception as exc:  # noqa: BLE001
                row[backend] = f"N: {type(exc).__name__}"
        row["labels_equal"] = labels.get("torch") == labels.get("onnx") if len(labels) == 2 else None
        if args.flow:
            for mode in ("full", "lora"):
                row[f"flow_{mode}"] = flow(family, mode, model_dir, work)
        results.append(row)
        print(json.dumps(row), flush=True)
    print(f"\nCPU: {cpu()}; torch {torch.__version__}\n")
    print("| family | LoRA targets (found) | export s | max abs diff | batch-predict onnx | batch-predict torch | labels equal |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        diff = f"{r['max_diff']:.1e}" if isinstance(r.get("max_diff"), float) else "-"
        print(f"| {r['family']} | {r['lora_targets']} | {r['export_s']} | {diff} | {r['onnx']} | {r['torch']} | "
              f"{'yes' if r['labels_equal'] else 'no'} |")
    if args.flow:
        print("\n| family | train-and-push full | train-and-push LoRA |\n|---|---|---|")
        for r in results:
            print(f"| {r['family']} | {r['flow_full']} | {r['flow_lora']} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"cpu": cpu(), "results": results}, indent=1))


if __name__ == "__main__":
    main()
