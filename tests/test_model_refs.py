"""Model references and loading shared by evaluate, card, export and batch-predict: a padless decoder classifier
(GPT-2) gets its pad token from eos, and every command takes a model folder, a run directory, a Hub id or
``packaged:minilm``."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from .conftest import TWEETS_TEST, TWEETS_TRAIN

LABELS = ["negative", "neutral", "positive"]


@pytest.fixture(scope="module")
def gpt2_cls(tmp_path_factory) -> Path:
    """A GPT-2 sequence classifier (2 layers, n_embd 32, byte-level BPE of 400) with no pad token, as GPT-2 ships."""
    import torch
    from tokenizers import ByteLevelBPETokenizer
    from transformers import GPT2Config, GPT2ForSequenceClassification, GPT2TokenizerFast

    with open(TWEETS_TRAIN, encoding="utf-8", newline="") as fh:
        texts = [r["text"] for r in csv.DictReader(fh)][:300]
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(texts, vocab_size=400, min_frequency=2, special_tokens=["<|endoftext|>"], show_progress=False)
    tok = GPT2TokenizerFast(tokenizer_object=bpe._tokenizer, eos_token="<|endoftext|>", bos_token="<|endoftext|>",
                            unk_token="<|endoftext|>", model_max_length=128)
    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=len(tok), n_positions=128, n_embd=32, n_layer=2, n_head=2,
                     bos_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id, num_labels=3,
                     id2label=dict(enumerate(LABELS)), label2id={n: i for i, n in enumerate(LABELS)})
    model = GPT2ForSequenceClassification(cfg)
    with torch.no_grad():
        model.score.weight.mul_(50.0)  # wide margins: float noise cannot flip a label
    out = tmp_path_factory.mktemp("gpt2cls") / "model"
    model.save_pretrained(out)
    tok.save_pretrained(out)
    assert tok.pad_token is None and model.config.pad_token_id is None
    return out


def _unbatched_logits(model_dir: Path, texts: list[str]) -> np.ndarray:
    """One row at a time (no padding, so no pad token needed): the anchor a batched run must equal."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    with torch.inference_mode():
        return np.stack([model(**tok(t, truncation=True, max_length=128, return_tensors="pt")).logits[0].numpy()
                         for t in texts])


def test_batch_predict_gpt2_without_pad_token_equals_row_by_row(gpt2_cls, tmp_path):
    from hubtune.core.metrics import softmax
    from hubtune.predict import PredictOptions, batch_predict

    out = tmp_path / "p.jsonl"
    res = batch_predict(PredictOptions(model=str(gpt2_cls), dataset=str(TWEETS_TEST), output=str(out), limit=12,
                                       batch_size=8, progress=False))
    assert res.rows == 12 and res.errors == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    with open(TWEETS_TEST, encoding="utf-8", newline="") as fh:
        texts = [r["text"] for r in csv.DictReader(fh)][:12]
    probs = softmax(_unbatched_logits(gpt2_cls, texts))
    assert [r["label"] for r in rows] == [LABELS[i] for i in probs.argmax(-1)]
    np.testing.assert_allclose([r["score"] for r in rows], probs.max(-1), atol=1e-4)


def test_evaluate_gpt2_without_pad_token(gpt2_cls):
    from hubtune.evaluate import EvalOptions, evaluate
    from hubtune.core.metrics import softmax

    rep = evaluate(EvalOptions(model=str(gpt2_cls), dataset=str(TWEETS_TEST), limit=10, batch_size=4))
    assert rep.num_examples == 10 and 0.0 <= rep.metrics["accuracy"] <= 1.0


def test_no_pad_and_no_eos_is_a_one_line_refusal(gpt2_cls):
    from transformers import AutoConfig, AutoTokenizer

    from hubtune.core.errors import ModelLoadError
    from hubtune.core.modeling import ensure_pad_token

    tok = AutoTokenizer.from_pretrained(gpt2_cls)
    cfg = AutoConfig.from_pretrained(gpt2_cls)
    ensure_pad_token(tok, cfg, str(gpt2_cls))
    assert tok.pad_token == tok.eos_token and cfg.pad_token_id == tok.eos_token_id
    tok2 = AutoTokenizer.from_pretrained(gpt2_cls)
    tok2.eos_token = None
    with pytest.raises(ModelLoadError, match="no pad token and no eos token"):
        ensure_pad_token(tok2, AutoConfig.from_pretrained(gpt2_cls), str(gpt2_cls))


# --------------------------------------------------------------------------------------------------
# One reading of a model reference for evaluate, card, export and batch-predict
# --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def full_run(tmp_path_factory) -> Path:
    from ._tiny_runs import make_full_run, make_tiny_base

    base = make_tiny_base(tmp_path_factory.mktemp("refbase") / "base")
    return make_full_run(tmp_path_factory.mktemp("refrun") / "run", base)


def _same(a, b) -> bool:
    return Path(a).resolve() == Path(b).resolve()


def test_every_command_reads_a_run_dir_a_folder_and_packaged_minilm_alike(full_run, minilm_dir, tmp_path):
    from hubtune.publish.export import resolve_model_dir as export_dir
    from hubtune.core.modeling import resolve_model_ref, resolve_model_source
    from hubtune.predict.source import resolve_model_dir as predict_dir

    for ref, folder, run in ((str(full_run), full_run / "model", full_run),
                             (str(full_run / "model"), full_run / "model", full_run),
                             ("packaged:minilm", Path(minilm_dir), None)):
        resolved = resolve_model_ref(ref)
        assert _same(resolved.path, folder) and (resolved.run_dir is None) == (run is None)
        assert _same(resolve_model_source(ref), folder)  # evaluate's (and card's) loader
        assert _same(predict_dir(ref, revision=None, backend="torch")[0], folder)  # batch-predict
        got, got_run = export_dir(ref, str(tmp_path / "onnx"))  # export
        assert _same(got, folder) and (got_run is None) == (run is None)


def test_a_merged_lora_run_resolves_to_merged(tmp_path):
    from hubtune.core.modeling import resolve_model_ref

    run = tmp_path / "run"
    (run / "model").mkdir(parents=True)
    (run / "model" / "adapter_config.json").write_text("{}")
    (run / "merged").mkdir()
    (run / "merged" / "config.json").write_text("{}")
    (run / "merged" / "tokenizer.json").write_text("{}")  # a folder without tokenizer files is refused (issue 35)
    (run / "run_summary.json").write_text("{}")
    ref = resolve_model_ref(str(run))
    assert ref.kind == "run" and _same(ref.path, run / "merged") and _same(ref.run_dir, run)


def test_hub_ids_stay_hub_ids_and_bad_paths_name_the_flag(monkeypatch, tmp_path):
    import hubtune.core.modeling as modeling
    from hubtune.core.errors import ModelNotFoundError

    monkeypatch.setattr(modeling, "check_reachable", lambda what: None)
    assert modeling.resolve_model_ref("org/name").kind == "hub"
    with pytest.raises(ModelNotFoundError, match="does not exist.*fix --model"):
        modeling.resolve_model_ref(str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotFoundError, match="has no config.json.*run directory"):
        modeling.resolve_model_ref(str(tmp_path / "empty"))


def test_export_of_packaged_minilm_needs_output():
    from hubtune.core.errors import ConfigError
    from hubtune.publish.export import resolve_model_dir

    with pytest.raises(ConfigError, match="packaged model.*--output DIR"):
        resolve_model_dir("packaged:minilm")


def test_card_refuses_what_is_not_a_run_in_one_line(minilm_dir):
    from hubtune.publish.card import CardOptions, card
    from hubtune.core.errors import ModelLoadError

    with pytest.raises(ModelLoadError, match="is a packaged model, not a run directory"):
        card(CardOptions(run_dir="packaged:minilm"))


def test_cli_evaluate_a_run_directory_equals_its_model_folder(full_run):
    from typer.testing import CliRunner

    from hubtune.cli.main import app

    outs = []
    for ref in (str(full_run), str(full_run / "model")):
        res = CliRunner().invoke(app, ["evaluate", "--model", ref, "--dataset", str(TWEETS_TEST), "--limit", "40", "--json"])
        assert res.exit_code == 0, res.output
        outs.append(json.loads(res.stdout)["metrics"])
    assert outs[0] == outs[1] and outs[0]["num_examples"] == 40
