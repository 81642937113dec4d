"""Issue 14: batch-predict memory is bounded by the token budget (--max-batch-tokens): peak RSS for MiniLM on
review-length texts (512 tokens) stays under 1.5 GB on both backends, and stays flat as the input grows.

Peak RSS is measured in a fresh process (``resource.getrusage(RUSAGE_CHILDREN)`` of a wrapper that runs only the
command). Slow: MiniLM at 512 tokens runs ~1-2 rows/s on the 2 shared cores."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from .test_predict import LABELS, ROOT, minilm_dir

WRAPPER = (
    "import resource, subprocess, sys; r = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
    "print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.stderr.write(r.stderr[-2000:])"
)


def peak_rss_mb(*args: str) -> float:
    r = subprocess.run([sys.executable, "-c", WRAPPER, sys.executable, "-m", "hubtune", *args],
                       capture_output=True, text=True, cwd=ROOT, timeout=1500)
    code, kb = r.stdout.split()
    assert code == "0", r.stderr
    return int(kb) / 1024


def reviews(n: int, path: Path) -> Path:
    """Review-length texts: 30 tweets joined (over 512 MiniLM tokens, so every row is truncated to 512)."""
    tweets = pd.read_csv(ROOT / "data" / "tweets" / "train.csv")["text"].tolist()
    pd.DataFrame({"text": [" ".join(tweets[(i * 13) % 3900 : (i * 13) % 3900 + 30]) for i in range(n)]}).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def minilm_classifier(tmp_path_factory) -> Path:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from hubtune.core.onnx_tools import export_onnx

    out = tmp_path_factory.mktemp("minilm") / "model"
    m = AutoModelForSequenceClassification.from_pretrained(
        minilm_dir(), num_labels=3, id2label=dict(enumerate(LABELS)), label2id={n: i for i, n in enumerate(LABELS)}
    )
    m.save_pretrained(out)
    AutoTokenizer.from_pretrained(minilm_dir()).save_pretrained(out)
    export_onnx(out, out / "onnx")
    return out


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["onnx", "torch"])
def test_minilm_reviews_peak_rss_under_1_5_gb(minilm_classifier, tmp_path, backend):
    data = reviews(48, tmp_path / "reviews.csv")
    out = tmp_path / "p.parquet"
    mb = peak_rss_mb("batch-predict", "--model", str(minilm_classifier), "--dataset", str(data), "--output", str(out),
                     "--max-length", "512", "--backend", backend, "--dtype", "fp32", "--no-progress")
    assert len(pd.read_parquet(out)) == 48
    assert json.loads(Path(f"{out}.meta.json").read_text())["prediction"]["max_length"] == 512
    assert mb < 1536, f"peak RSS {mb:.0f} MB on {backend}"


@pytest.mark.slow
def test_peak_rss_flat_over_a_long_input(tmp_path):
    """A tiny model on short texts: 10x the rows, the same peak RSS (within 64 MB)."""
    from .test_predict import _save_tiny

    model = _save_tiny(tmp_path / "tiny", seed=0)
    tweets = pd.read_csv(ROOT / "data" / "tweets" / "train.csv")[["text", "label"]]
    peaks = {}
    for n in (10_000, 100_000):
        data = tmp_path / f"rows{n}.csv"
        pd.concat([tweets] * (n // len(tweets)), ignore_index=True).to_csv(data, index=False)
        peaks[n] = peak_rss_mb("batch-predict", "--model", str(model), "--dataset", str(data), "--output",
                               str(tmp_path / f"p{n}.parquet"), "--backend", "torch", "--dtype", "fp32", "--no-progress")
    assert peaks[100_000] - peaks[10_000] < 64, peaks
