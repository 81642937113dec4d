"""GPU benchmark: `hubtune batch-predict` on CUDA against `pipeline(device=0, batch_size=32)`, in one run on one GPU.

    python bench/bench_gpu.py --rows 4000          # on a CUDA machine; prints a table and --json figures
    python bench/bench_gpu.py                      # without CUDA: says so and exits 0 (nothing to measure)

Cases on review-length texts and tweets (the builders of bench_predict.py, all offline), MiniLM as a 3-class
classifier (fine-tuned on the GPU for one epoch so label agreement means something): the baseline pipeline
(fp32), hubtune torch fp32 / fp16 / bf16 and, where onnxruntime has the CUDA provider, hubtune onnx fp32.
Reported: rows/s and the ratio to the baseline, label agreement with fp32, the fraction of the GPU's measured
fp16 matmul peak the encoder's useful FLOPs reach, and the peak GPU memory of each case. The GPU is named.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_predict as bp  # noqa: E402  (shares the text builders, the model builder and the FLOP count)


def fp16_peak() -> float:
    """Measured fp16 matmul TFLOP/s (best of 5, 8192^2)."""
    import torch

    n = 8192
    a = torch.randn(n, n, device="cuda", dtype=torch.float16)
    b = torch.randn(n, n, device="cuda", dtype=torch.float16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    best = 0.0
    for _ in range(5):
        reps, t0 = 10, time.perf_counter()
        for _ in range(reps):
            a @ b
        torch.cuda.synchronize()
        best = max(best, 2 * n**3 * reps / (time.perf_counter() - t0) / 1e12)
    return best


def baseline_gpu(model_dir: Path, texts: list[str]) -> tuple[list[str], float]:
    import torch
    from transformers import pipeline

    pipe = pipeline("text-classification", model=str(model_dir), batch_size=32, truncation=True, device=0)
    pipe(texts[:64])
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    out = pipe(texts)
    torch.cuda.synchronize()
    return [o["label"] for o in out], len(texts) / (time.perf_counter() - t0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=4000, help="texts per case")
    ap.add_argument("--model", help="a fine-tuned classifier directory (skips the fine-tuning)")
    ap.add_argument("--train-rows", type=int, default=2000)
    ap.add_argument("--json", dest="json_out", help="write the figures to this JSON file")
    args = ap.parse_args()

    import torch

    if not torch.cuda.is_available():
        print("no CUDA GPU on this machine: nothing to measure (run this on a GPU runner)")
        return 0
    import onnxruntime as ort

    gpu = torch.cuda.get_device_name(0)
    peak = fp16_peak()
    print(f"GPU: {gpu}; torch {torch.__version__} (CUDA {torch.version.cuda}); fp16 matmul peak {peak:.0f} TFLOP/s")
    figures: dict = {"gpu": gpu, "fp16_peak_tflops": round(peak, 1), "cases": {}}
    df = bp.corpus()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model_dir = Path(args.model) if args.model else bp.build_model(work / "m", bp.make_tweets(df, args.train_rows, seed=5))
        cases = [("reviews", bp.make_reviews(df, args.rows)), ("tweets", bp.make_tweets(df, args.rows))]
        ort_cuda = "CUDAExecutionProvider" in ort.get_available_providers()
        if ort_cuda:
            bp.export_onnx(model_dir)
        for name, frame in cases:
            data = work / f"{name}.parquet"
            frame.to_parquet(data, index=False)
            texts = frame["text"].tolist()
            gflop = bp.encoder_gflop(model_dir, texts)
            torch.cuda.reset_peak_memory_stats()
            base_labels, base_rps = baseline_gpu(model_dir, texts)
            rows = {"pipeline fp32": {"rows_per_s": round(base_rps, 1), "ratio": 1.0,
                                      "peak_mem_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2)}}
            fp32_labels = None
            runs = [("torch", "fp32"), ("torch", "fp16")] + ([("torch", "bf16")] if torch.cuda.is_bf16_supported() else [])
            runs += [("onnx", "fp32")] if ort_cuda else []
            for backend, dtype in runs:
                torch.cuda.reset_peak_memory_stats()
                labels, rps, _ = bp.hubtune_run(model_dir, data, work, backend=backend, dtype=dtype, device="cuda", batch_size=64)
                if (backend, dtype) == ("torch", "fp32"):
                    fp32_labels = labels
                agree = sum(a == b for a, b in zip(labels, fp32_labels or labels)) / len(labels)
                rows[f"hubtune {backend} {dtype}"] = {
                    "rows_per_s": round(rps, 1), "ratio": round(rps / base_rps, 2), "agreement_vs_fp32": round(agree, 4),
                    "fraction_of_fp16_peak": round(gflop * rps / len(texts) / 1e3 / peak, 4),
                    "peak_mem_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
                }
            figures["cases"][name] = rows
            print(f"[{name}] {len(texts)} texts, baseline labels equal to hubtune fp32: "
                  f"{sum(a == b for a, b in zip(base_labels, fp32_labels or base_labels)) / len(texts):.4f}")
            for case, r in rows.items():
                print(f"  {case:<22} {r['rows_per_s']:>9.1f} rows/s  {r['ratio']:>5.2f}x  "
                      f"agree {r.get('agreement_vs_fp32', 1.0):.4f}  peak {r.get('fraction_of_fp16_peak', 0):.1%}  "
                      f"mem {r['peak_mem_gib']} GiB")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
