"""batch-predict --engine ray: same output as the local engine, a worker death loses and duplicates nothing,
resume, errors out of the actors, and a clear error when Ray is not installed.

The tests that run a job start one local Ray (2 CPUs) for the module (~10 s) and take 10-25 s each, so they are
marked slow (run them with ``-m slow``); they skip when ray is not installed (``pip install 'hubtune[ray]'``).
The option, --help and missing-Ray tests need no Ray and run by default.
"""

from __future__ import annotations

import importlib.util

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.test_predict import LABELS, ROOT, TWEETS, _save_tiny, cli, opts, read_any
from tests.test_tasks import multilabel_dir, ner_dir  # noqa: F401 - fixtures of the other tasks' models


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return _save_tiny(tmp_path_factory.mktemp("tiny") / "model", seed=0)


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'hubtune[ray]'); the Ray engine tests need it")
    pytest.importorskip("ray.data", reason="ray[data] is not installed (pip install 'hubtune[ray]')")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def rows_parquet(tmp_path_factory) -> Path:
    """1000 labeled tweets with an id column, as parquet."""
    df = pd.read_csv(TWEETS)
    df["uid"] = [f"u{i}" for i in range(len(df))]
    path = tmp_path_factory.mktemp("data") / "rows.parquet"
    df.to_parquet(path)
    return path


def _local_and_ray(tiny, data, tmp_path, **kw):
    from hubtune.predict import batch_predict

    a, b = tmp_path / "local.parquet", tmp_path / "ray.parquet"
    kw.setdefault("dtype", "fp32")  # engines compared on equal terms: auto may measure bf16 faster in one of them
    ra = batch_predict(opts(model=str(tiny), dataset=str(data), output=str(a), **kw))
    rb = batch_predict(opts(model=str(tiny), dataset=str(data), output=str(b), engine="ray", **kw))
    return ra, rb, pd.read_parquet(a), pd.read_parquet(b)


# --------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_ray_equals_local_parquet_two_workers(tiny, rows_parquet, tmp_path, ray_cluster):
    ra, rb, a, b = _local_and_ray(tiny, rows_parquet, tmp_path, keep_columns=["uid"], all_scores=True,
                                  chunk_size=96, num_workers=2)
    assert (rb.engine, rb.workers, rb.rows, rb.errors) == ("ray", 2, 1000, 0)
    assert list(b["row_id"]) == list(range(1000))
    assert list(b.columns) == ["row_id", "uid", "label", "score", *[f"score_{n}" for n in LABELS]]
    assert list(b["uid"]) == [f"u{i}" for i in range(1000)]
    assert list(a["label"]) == list(b["label"])
    pd.testing.assert_frame_equal(a, b, check_exact=False, atol=1e-5)
    assert rb.metrics is not None and rb.metrics["confusion_matrix"] == ra.metrics["confusion_matrix"]
    meta_a = json.loads(Path(ra.meta_path).read_text())
    meta_b = json.loads(Path(rb.meta_path).read_text())
    assert meta_b["range"] == meta_a["range"] == {"start": 0, "end": 1000, "total": 1000}
    assert not (tmp_path / "ray.parquet.parts").exists()


@pytest.mark.slow
def test_ray_equals_local_jsonl_with_bad_rows_and_limit(tiny, tmp_path, ray_cluster):
    texts = pd.read_csv(TWEETS)["text"].tolist()[:230]
    rows = [{"text": t, "label": "neutral"} for t in texts]
    for i in (3, 64, 65, 200):
        rows[i]["text"] = "" if i % 2 else None
    rows[100]["text"] = "   "
    data = tmp_path / "rows.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    ra, rb, a, b = _local_and_ray(tiny, data, tmp_path, chunk_size=64, limit=210, num_workers=1)
    assert (rb.rows, rb.errors) == (ra.rows, ra.errors) == (205, 5)
    pd.testing.assert_frame_equal(a, b, check_exact=False, atol=1e-5)
    ea = [json.loads(x) for x in Path(ra.errors_path).read_text().splitlines()]
    eb = [json.loads(x) for x in Path(rb.errors_path).read_text().splitlines()]
    assert [e["row_id"] for e in eb] == [e["row_id"] for e in ea] == [3, 64, 65, 100, 200]


@pytest.mark.slow
def test_worker_death_every_row_exactly_once(tiny, rows_parquet, tmp_path, ray_cluster, monkeypatch):
    """The first chunk's actor exits (os._exit); Ray restarts it and retries the chunk: no row lost or doubled."""
    from hubtune.predict import batch_predict
    from hubtune.predict.ray import CRASH_ONCE_ENV

    marker = tmp_path / "crashed"
    monkeypatch.setenv(CRASH_ONCE_ENV, str(marker))
    out = tmp_path / "p.parquet"
    res = batch_predict(opts(model=str(tiny), dataset=str(rows_parquet), output=str(out), engine="ray", num_workers=2,
                             chunk_size=50, keep_columns=["uid"], keep_parts=True, dtype="fp32"))
    assert marker.is_file(), "no actor crashed: the test hook did not fire"
    df = pd.read_parquet(out)
    assert res.rows == 1000
    assert list(df["row_id"]) == list(range(1000))  # every row exactly once, in order
    assert list(df["uid"]) == [f"u{i}" for i in range(1000)]
    chunks = sorted((tmp_path / "p.parquet.parts").glob("chunk-*.parquet"))
    assert len(chunks) == 20 and sum(len(pd.read_parquet(c)) for c in chunks) == 1000
    ref = tmp_path / "ref.parquet"
    monkeypatch.delenv(CRASH_ONCE_ENV)
    batch_predict(opts(model=str(tiny), dataset=str(rows_parquet), output=str(ref), chunk_size=50, keep_columns=["uid"],
                       dtype="fp32"))
    pd.testing.assert_frame_equal(pd.read_parquet(ref), df, check_exact=False, atol=1e-5)


@pytest.mark.slow
def test_row_error_from_actor_then_resume(tiny, tmp_path, ray_cluster):
    """--on-error fail raises RowError out of the actor; --resume reuses the committed chunks and finishes."""
    from hubtune.core.errors import ResumeMismatchError, RowError
    from hubtune.predict import batch_predict

    df = pd.read_csv(TWEETS).iloc[:400].copy()
    df.loc[390, "text"] = ""
    data = tmp_path / "rows.csv"
    df.to_csv(data, index=False)
    out = tmp_path / "p.csv"
    base = dict(model=str(tiny), dataset=str(data), output=str(out), engine="ray", num_workers=1, chunk_size=40)
    with pytest.raises(RowError, match="row 390 "):
        batch_predict(opts(on_error="fail", **base))
    committed = list((tmp_path / "p.csv.parts").glob("chunk-*.json"))
    assert committed and not out.exists()
    with pytest.raises(ResumeMismatchError, match="--engine"):
        batch_predict(opts(**dict(base, engine="local"), resume=True))
    res = batch_predict(opts(resume=True, **base))
    assert res.resumed_rows == 40 * len(committed) and res.rows_per_s > 0
    assert (res.rows, res.errors) == (399, 1)
    got = read_any(out)
    assert list(got["row_id"]) == [i for i in range(400) if i != 390]


def test_ray_option_errors(tiny, tmp_path):
    from hubtune.core.errors import ConfigError
    from hubtune.predict import batch_predict

    base = dict(model=str(tiny), dataset=str(TWEETS), output=str(tmp_path / "p.parquet"), engine="ray")
    with pytest.raises(ConfigError, match="--num-shards"):
        batch_predict(opts(num_shards=2, **base))
    with pytest.raises(ConfigError, match="--num-workers"):
        batch_predict(opts(num_workers=0, **base))
    with pytest.raises(ConfigError, match="--engine 'spark'"):
        batch_predict(opts(**dict(base, engine="spark")))
    assert not (tmp_path / "p.parquet.parts").exists()


def test_missing_ray_is_a_clear_error(tiny, tmp_path, monkeypatch):
    from hubtune.core.errors import MissingDependencyError
    from hubtune.predict import batch_predict

    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` does when it is not installed: ImportError
    out = tmp_path / "p.parquet"
    with pytest.raises(MissingDependencyError, match=r"pip install 'hubtune\[ray\]'"):
        batch_predict(opts(model=str(tiny), dataset=str(TWEETS), output=str(out), engine="ray"))
    assert not out.exists() and not (tmp_path / "p.parquet.parts").exists()


def test_cli_missing_ray_one_line_exit_7(tiny, tmp_path):
    code = (
        "import sys; sys.modules['ray'] = None; from hubtune.cli.main import main; "
        f"sys.argv = ['hubtune', 'batch-predict', '--model', {str(tiny)!r}, '--dataset', {str(TWEETS)!r}, "
        f"'--output', {str(tmp_path / 'p.parquet')!r}, '--engine', 'ray', '--num-workers', '2']; sys.exit(main())"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 7, r.stderr
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: --engine ray needs Ray Data"), r.stderr
    assert "pip install 'hubtune[ray]'" in lines[0] and "--engine local" in lines[0]


def test_cli_help_lists_ray_flags_without_importing_ray():
    code = (
        "import sys; from typer.testing import CliRunner; from hubtune.cli.main import app; "
        "r = CliRunner().invoke(app, ['batch-predict', '--help'], terminal_width=200); print(r.output); "
        "print('RAY_IMPORTED' if 'ray' in sys.modules else 'RAY_NOT_IMPORTED')"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr
    for flag in ("--engine", "--address", "--num-workers", "--gpus-per-worker"):
        assert flag in r.stdout
    assert "RAY_NOT_IMPORTED" in r.stdout


@pytest.mark.slow
def test_cli_engine_ray_starts_its_own_ray(tiny, rows_parquet, tmp_path):
    """The CLI in a fresh process (no Ray running there): starts a local Ray, predicts, shuts it down."""
    pytest.importorskip("ray", reason="ray is not installed (pip install 'hubtune[ray]')")
    out = tmp_path / "p.jsonl"
    r = cli("batch-predict", "--model", str(tiny), "--dataset", str(rows_parquet), "--output", str(out),
            "--engine", "ray", "--num-workers", "2", "--chunk-size", "128", "--limit", "300", "--json", timeout=300)
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert (summary["engine"], summary["workers"], summary["rows"]) == ("ray", 2, 300)
    assert list(read_any(out)["row_id"]) == list(range(300))
    np.testing.assert_allclose(read_any(out)["score"].to_numpy() > 0, True)


@pytest.mark.slow
def test_ray_streams_a_hub_dataset_from_the_local_hub(tiny, tmp_path, ray_cluster, local_hub, monkeypatch):
    """A Hub dataset (parquet under data/, through the local Hub) read streaming, chunk by chunk, never whole:
    the same output as the local engine, and the input is not loaded before the first chunk is predicted."""
    import hubtune.predict.ray as ray_engine
    from hubtune.predict import batch_predict

    folder = tmp_path / "ds"
    (folder / "data").mkdir(parents=True)
    df = pd.read_csv(TWEETS).iloc[:500].reset_index(drop=True)
    df["uid"] = [f"u{i}" for i in range(len(df))]
    df.to_parquet(folder / "data" / "test-00000-of-00001.parquet")
    local_hub.api().create_repo("org/tweets", repo_type="dataset")
    local_hub.api().upload_folder(folder_path=str(folder), repo_id="org/tweets", repo_type="dataset")

    read = []  # chunks produced by the reader, counted when each is handed on
    real = ray_engine._stream_chunks

    def counting(*args, **kw):
        for item in real(*args, **kw):
            read.append(item[0])
            yield item

    monkeypatch.setattr(ray_engine, "_stream_chunks", counting)
    ra, rb, a, b = _local_and_ray(tiny, "org/tweets:test", tmp_path, keep_columns=["uid"], chunk_size=50, num_workers=1)
    assert (rb.engine, rb.rows) == ("ray", 500)
    assert read == list(range(0, 500, 50))  # streamed in order, one chunk at a time
    assert list(b["uid"]) == [f"u{i}" for i in range(500)]
    pd.testing.assert_frame_equal(a, b, check_exact=False, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("which", ["ner_dir", "multilabel_dir"])
def test_ray_equals_local_for_the_other_tasks(which, request, tmp_path, ray_cluster):
    """Entities (a list column) and multi-label label sets: the Ray engine writes what the local engine writes
    (multi-label on OpenVINO: its actors run the graph the driver chose)."""
    model = request.getfixturevalue(which)
    backend = "openvino" if which == "multilabel_dir" and importlib.util.find_spec("openvino") else "torch"
    ra, rb, a, b = _local_and_ray(model, TWEETS, tmp_path, limit=60, chunk_size=25, num_workers=2, backend=backend)
    assert rb.backend == ra.backend == backend
    assert (rb.engine, rb.rows) == ("ray", 60) and list(b["row_id"]) == list(range(60))
    column = "entities" if which == "ner_dir" else "labels"
    assert list(b.columns) == list(a.columns) and column in b.columns
    assert [list(map(str, x)) for x in a[column]] == [list(map(str, x)) for x in b[column]]
    assert json.loads(Path(rb.meta_path).read_text())["prediction"]["task"] == json.loads(Path(ra.meta_path).read_text())["prediction"]["task"]
