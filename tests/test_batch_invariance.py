"""Issue 35 item 12: a row's answer never depends on the rows batched beside it.

An XLNet classifier batch-predicted agreed with pipeline() (one row at a time) on 35% of labels: batches were
padded on the right, and XLNet's head reads the last position. Every family of the fast suite
(tests/_families.py) predicts a handful of real texts of different lengths one row at a time and in one batch,
on the torch backend, and the scores must agree."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tests._families import FAMILIES, TEXTS, build

SCORE_TOLERANCE = 1e-4  # softmax scores: float noise of a padded batch is ~1e-6


def _scores(runner, texts, batch_size):
    from hubtune.core.metrics import softmax
    from hubtune.predict.batching import Chunk, prepare_chunk, run_chunk

    chunk = Chunk(0, 0, {"text": list(texts)}, np.zeros(0, np.int64), [])
    prepare_chunk(chunk, runner.tokenizer, "text", None, 64)
    return softmax(run_chunk(runner, chunk, batch_size, 1 << 20))


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_a_rows_scores_do_not_depend_on_its_batch(family, tmp_path):
    from hubtune.predict.options import PredictOptions
    from hubtune.predict.runners import make_runner

    model_dir = build(family, tmp_path / "model")
    runner = make_runner(model_dir, PredictOptions(model=str(model_dir), dataset="-", output=str(tmp_path / "o.parquet"),
                                                   backend="torch", dtype="fp32"), tmp_path / "export")
    alone = np.concatenate([_scores(runner, [t], 1) for t in TEXTS])
    batched = _scores(runner, TEXTS, len(TEXTS))
    assert len({len(runner.tokenizer(t)["input_ids"]) for t in TEXTS}) > 3  # the batch really is padded
    assert list(batched.argmax(-1)) == list(alone.argmax(-1)), (family, runner.padding_side)
    assert np.abs(batched - alone).max() <= SCORE_TOLERANCE, (family, float(np.abs(batched - alone).max()))


def test_xlnet_batch_predict_answers_what_pipeline_answers_row_by_row(tmp_path):
    """The reported case end to end: `batch-predict --backend torch --dtype fp32` of an XLNet classifier whose
    tokenizer was saved with padding_side="left" (and the default batch size) gives pipeline()'s labels and
    scores, and the same file as --batch-size 1."""
    from transformers import AutoTokenizer, pipeline

    from tests._bad_input import succeeds

    model_dir = build("xlnet", tmp_path / "model")
    tok = AutoTokenizer.from_pretrained(model_dir)
    tok.padding_side = "left"
    tok.save_pretrained(model_dir)
    rows = tmp_path / "rows.csv"
    pd.DataFrame({"text": TEXTS * 3}).to_csv(rows, index=False)
    out = {}
    for bs in ("1", "16"):
        succeeds(["batch-predict", "-m", model_dir, "-d", rows, "-o", tmp_path / f"bs{bs}.parquet", "--backend",
                  "torch", "--dtype", "fp32", "--batch-size", bs, "--no-progress"])
        out[bs] = pd.read_parquet(tmp_path / f"bs{bs}.parquet")
    clf = pipeline("text-classification", model=str(model_dir), device="cpu")
    ref = [clf(t)[0] for t in TEXTS * 3]
    assert list(out["16"]["label"]) == [r["label"] for r in ref] == list(out["1"]["label"])
    assert np.abs(out["16"]["score"].to_numpy() - np.array([r["score"] for r in ref])).max() < SCORE_TOLERANCE
    assert np.abs(out["16"]["score"].to_numpy() - out["1"]["score"].to_numpy()).max() < SCORE_TOLERANCE


def test_a_token_classifier_padded_on_the_left_keeps_each_rows_tags_first(tmp_path):
    """A left-padded batch of per-token logits is realigned: each row's own tokens first, as the shard writer
    reads them (a runner that pads on the left, answering each token's id as its logit)."""
    from types import SimpleNamespace

    from hubtune.predict.batching import Chunk, Encoded, run_chunk

    class Echo:
        tokenizer = SimpleNamespace(pad_token_id=0)
        label_names = ["a"]
        padding_side = "left"

        def __call__(self, feeds):
            assert (feeds["input_ids"][:, -1] != 0).all()  # padded on the left
            return feeds["input_ids"][..., None].astype(np.float32)

    seqs = [[5, 6, 7], [8], [9, 10]]
    chunk = Chunk(0, 0, {}, np.arange(3), [], Encoded.from_lists(seqs))
    got = run_chunk(Echo(), chunk, 8, 1 << 20)[..., 0]
    assert got.tolist() == [[5, 6, 7], [8, 0, 0], [9, 10, 0]]


@pytest.mark.parametrize("family", ["xlnet", "bert", "gpt2"])
def test_evaluate_and_the_gates_score_a_row_as_it_scores_alone(family, tmp_path):
    """modeling.predict_logits (evaluate, train's reload check, the merge and export gates) padded by the
    tokenizer's side: XLNet with a right-padding tokenizer read pads in a batch."""
    from hubtune.core.modeling import predict_logits
    from hubtune.tasks.loading import load_classifier

    loaded = load_classifier(str(build(family, tmp_path / "model")), device="cpu")
    alone = np.concatenate([predict_logits(loaded.model, loaded.tokenizer, [t], batch_size=1) for t in TEXTS])
    batched = predict_logits(loaded.model, loaded.tokenizer, TEXTS, batch_size=len(TEXTS))
    assert np.abs(batched - alone).max() <= 1e-4, float(np.abs(batched - alone).max())
