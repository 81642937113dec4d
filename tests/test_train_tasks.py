"""hubtune train for multi-label classification, regression and token classification (issue 23), full and LoRA.

Each run: a tiny random BERT on the synthetic data/tasks files, one epoch. The saved folder tells its task the
transformers way, and metrics.json's eval figures equal a recomputation made here from the saved files with
pipeline() (sequence tasks) or the model itself (token classification) and scikit-learn / scipy / seqeval.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from .conftest import REPO

EXAMPLES = {"multi-label-classification": REPO / "examples" / "multilabel.yaml",
            "regression": REPO / "examples" / "regression.yaml", "token-classification": REPO / "examples" / "ner.yaml"}
DATA = {
    "multi-label-classification": REPO / "data" / "tasks" / "multilabel.csv",
    "regression": REPO / "data" / "tasks" / "regression.csv",
    "token-classification": REPO / "data" / "tasks" / "ner.jsonl",
}
CASES = [("multi-label-classification", "full"), ("regression", "full"), ("token-classification", "full"),
         ("token-classification", "lora"), ("multi-label-classification", "lora")]


def _train(tiny_bert_dir: str, tmp_path: Path, task: str, mode: str):
    from hubtune.core.config import TrainConfig, resolve
    from hubtune.train import train

    # the recipe of docs/recipes.md (examples/*.yaml), on the tiny model for one epoch
    cfg = resolve(TrainConfig, EXAMPLES[task], {
        "base_model": tiny_bert_dir, "task": task, "mode": mode, "data.dataset": str(DATA[task]),
        "output_dir": str(tmp_path / "run"), "num_epochs": 1, "batch_size": 8, "learning_rate": 1e-3,
        "precision": "fp32", "logging_steps": 1,
    })
    return cfg, train(cfg, progress=False)


def _load(model_dir: Path, task: str, mode: str):
    from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification, AutoTokenizer

    cls = AutoModelForTokenClassification if task == "token-classification" else AutoModelForSequenceClassification
    if mode == "lora":
        from peft import PeftModel

        base_ref = json.loads((model_dir / "adapter_config.json").read_text())["base_model_name_or_path"]
        from transformers import AutoConfig

        model = PeftModel.from_pretrained(cls.from_pretrained(base_ref, config=AutoConfig.from_pretrained(model_dir)),
                                          model_dir).merge_and_unload()
    else:
        model = cls.from_pretrained(model_dir)
    return model.eval(), AutoTokenizer.from_pretrained(model_dir)


def _recompute(cfg, model_dir: Path, task: str, mode: str) -> dict:
    """The eval metrics from the saved files, computed independently of hubtune's evaluation code."""
    import torch
    from transformers import pipeline

    from hubtune.data.examples import load_task_train_eval
    from hubtune.tasks.registry import get_task

    ev = load_task_train_eval(cfg.data, get_task(task)).eval.dataset  # the same split, from the same seed
    model, tok = _load(model_dir, task, mode)
    names = [model.config.id2label[i] for i in range(model.config.num_labels)]
    if task == "token-classification":
        from seqeval.metrics import f1_score, precision_score, recall_score

        true, pred = [], []
        for words, tags in zip(ev["tokens"], ev["tags"]):
            enc = tok(words, is_split_into_words=True, return_tensors="pt")
            with torch.no_grad():
                ids = model(**enc).logits[0].argmax(-1).tolist()
            seen, t_row, p_row = set(), [], []
            for pos, w in enumerate(enc.word_ids(0)):
                if w is not None and w not in seen:
                    seen.add(w)
                    t_row.append(names[tags[w]])
                    p_row.append(names[ids[pos]])
            true.append(t_row)
            pred.append(p_row)
        return {"precision": precision_score(true, pred), "recall": recall_score(true, pred), "f1": f1_score(true, pred)}
    if task == "regression":
        from scipy.stats import pearsonr
        from sklearn.metrics import mean_absolute_error, mean_squared_error

        pipe = pipeline("text-classification", model=model, tokenizer=tok, device=-1)
        got = [r["score"] for r in pipe(list(ev["text"]), function_to_apply="none")]
        return {"mse": mean_squared_error(ev["label"], got), "mae": mean_absolute_error(ev["label"], got),
                "pearson": float(pearsonr(ev["label"], got)[0])}
    from sklearn.metrics import accuracy_score, f1_score as sk_f1

    pipe = pipeline("text-classification", model=model, tokenizer=tok, device=-1)
    rows = pipe(list(ev["text"]), function_to_apply="sigmoid", top_k=None)
    hot = np.array([[1 if {r["label"]: r["score"] for r in row}[n] >= 0.5 else 0 for n in names] for row in rows])
    y = np.asarray(ev["labels"]).astype(int)
    return {"f1_micro": sk_f1(y, hot, average="micro", zero_division=0),
            "f1_macro": sk_f1(y, hot, average="macro", zero_division=0), "subset_accuracy": accuracy_score(y, hot)}


@pytest.mark.parametrize("task,mode", CASES)
def test_train_task(tiny_bert_dir, tmp_path, task, mode):
    from safetensors.torch import load_file

    cfg, res = _train(tiny_bert_dir, tmp_path, task, mode)
    model_dir = Path(res.model_dir)
    config = json.loads((model_dir / "config.json").read_text())
    if task == "token-classification":
        assert config["architectures"] == ["BertForTokenClassification"]
        assert set(config["label2id"]) == {"O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG"}
    else:
        assert config["architectures"] == ["BertForSequenceClassification"]
        assert config["problem_type"] == {"regression": "regression"}.get(task, "multi_label_classification")
        assert len(config["id2label"]) == (1 if task == "regression" else 3)

    base = load_file(str(Path(tiny_bert_dir) / "model.safetensors"))
    key = next(k for k in base if k.endswith("encoder.layer.0.attention.self.query.weight"))
    if mode == "full":  # the encoder itself was trained
        saved = load_file(str(model_dir / "model.safetensors"))
        assert not np.allclose(saved["bert." + key.removeprefix("bert.")].numpy(), base[key].numpy())
    else:  # LoRA: the adapter and the head saved, the base weights not; only they trained
        saved = load_file(str(model_dir / "adapter_model.safetensors"))
        assert any("lora_A" in k for k in saved) and any("classifier" in k for k in saved)
        assert not any(k.endswith("attention.self.query.weight") and "lora" not in k for k in saved)
        summary = json.loads((Path(res.output_dir) / "run_summary.json").read_text())
        assert summary["parameters"]["trainable_share"] < 0.2

    metrics = json.loads((Path(res.output_dir) / "metrics.json").read_text())["eval"]
    assert metrics["source"] == "reloaded" and metrics["task"] == task
    for k, v in _recompute(cfg, model_dir, task, mode).items():
        # batched, padded vs one by one: float noise (a tiny model's near-constant regression outputs amplify it in
        # pearson: 1.3e-4 seen under load)
        assert metrics[k] == pytest.approx(v, abs=1e-3 if k == "pearson" else 1e-4), k
    if mode == "full":  # the card and its model-index: the same figures, measured on the published files
        from hubtune.publish.card import CardOptions, card
        from hubtune.core.metrics import TASK_SUMMARY_KEYS

        res_card = card(CardOptions(run_dir=str(res.output_dir), repo_id="org/m"))
        index = {r["metric_name"]: r["metric_value"] for r in res_card.eval_results}
        assert {r["task_type"] for r in res_card.eval_results} == {"token-classification" if task == "token-classification"
                                                                   else "text-classification"}
        assert len(index) == len([k for k in TASK_SUMMARY_KEYS[task] if k in metrics])
        for k in TASK_SUMMARY_KEYS[task]:
            if k in metrics:
                assert res_card.metrics[k] == pytest.approx(metrics[k], abs=1e-6), k
        from hubtune.evaluate import EvalOptions, evaluate

        report = evaluate(EvalOptions(model=str(model_dir), dataset=str(DATA[task])))  # the folder tells its task
        assert report.metrics["task"] == task and report.num_examples == 48
        assert set(TASK_SUMMARY_KEYS[task][:3]) <= set(report.metrics)


def test_list_labels_with_the_default_task_name_the_multilabel_task(tmp_path):
    from hubtune.data.dataset import load_labeled
    from hubtune.core.errors import LabelError

    f = tmp_path / "ml.jsonl"
    f.write_text("\n".join(json.dumps({"text": f"t{i}", "label": ["a", "b"][: 1 + i % 2]}) for i in range(6)) + "\n")
    with pytest.raises(LabelError, match="--task multi-label-classification"):
        load_labeled(str(f))


def test_fractional_labels_with_the_default_task_name_regression(tmp_path):
    from hubtune.data.dataset import load_labeled
    from hubtune.core.errors import LabelError

    f = tmp_path / "reg.csv"
    f.write_text("text,label\n" + "".join(f"row {i},{i / 4}\n" for i in range(6)))
    with pytest.raises(LabelError, match="--task regression"):
        load_labeled(str(f))


def test_multilabel_delimited_and_regression_data(tmp_path):
    from hubtune.core.config import DataConfig
    from hubtune.core.errors import LabelError
    from hubtune.data.examples import load_task_train_eval
    from hubtune.tasks.registry import get_task

    f = tmp_path / "ml.csv"
    f.write_text("text,labels\n" + "".join(f"row {i},{'x|y' if i % 2 else 'y'}\n" for i in range(10)))
    data = load_task_train_eval(DataConfig(dataset=str(f), label_delimiter="|"), get_task("multi-label-classification"))
    assert data.label_names == ["x", "y"]
    rows = {r["text"]: r["labels"] for part in (data.train.dataset, data.eval.dataset) for r in part}
    assert rows["row 1"] == [1.0, 1.0] and rows["row 2"] == [0.0, 1.0]
    g = tmp_path / "reg.csv"
    g.write_text("text,label\n" + "".join(f"row {i},{'high' if i == 3 else i / 2}\n" for i in range(8)))
    with pytest.raises(LabelError, match="row 4.*'high'.*task regression"):
        load_task_train_eval(DataConfig(dataset=str(g)), get_task("regression"))


def test_verify_compares_labels_exactly_and_scores_within_tolerance():
    from hubtune.publish.verify import SCORE_TOLERANCE, same_output

    assert same_output("PER:0-9 LOC:20-24", "PER:0-9 LOC:20-24") and not same_output("PER:0-9", "PER:0-8")
    assert same_output([0.5, 0.25], [0.5 + SCORE_TOLERANCE / 2, 0.25])
    assert not same_output([0.5, 0.25], [0.5 + 3 * SCORE_TOLERANCE, 0.25]) and not same_output([0.5], [0.5, 0.1])


@pytest.mark.slow
def test_train_and_push_token_classification_lora_is_verified(tmp_path):
    """The NER recipe on the packaged MiniLM, LoRA, through train-and-push on the embedded Hub: merged, exported to
    ONNX (tags per word gated), carded, pushed and verified in a fresh process with
    pipeline("token-classification", aggregation_strategy="simple") and ONNX Runtime over the pushed onnx/."""
    from .conftest import run_cli

    out = tmp_path / "run"
    res = run_cli("train-and-push", "--config", str(EXAMPLES["token-classification"]), "--set", "mode=lora",
                  "--set", "learning_rate=0.003", "--set", "num_epochs=8", "-o", str(out), "--local-hub",
                  str(tmp_path / "hub"), "--repo-id", "org/ner", "--no-progress", "--json", timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    doc = json.loads(res.stdout[res.stdout.index("{"):])
    assert doc["verified"] is True and doc["steps"]["merge"] == "done", doc
    golden = json.loads((out / "golden.json").read_text())
    assert any(golden["expected"]["pytorch"]), golden  # entities found, so the comparison has something to compare
    assert doc["steps"]["export"] == "done" and any(golden["expected"]["onnx"]), doc  # the ONNX graph's tags too
    assert doc["verification"]["checked"]["onnx"]["agree"] == doc["verification"]["checked"]["onnx"]["total"]
    config = json.loads((out / "merged" / "config.json").read_text())
    assert config["architectures"] == ["BertForTokenClassification"]
    card_text = (out / "merged" / "README.md").read_text()
    assert "type: token-classification" in card_text and "F1 (entities, seqeval)" in card_text
    assert "`onnx/model.onnx`" in card_text  # the card lists the published graph with its agreement


def test_conll_style_int_tags_with_classlabel_names(tmp_path):
    """conll2003's layout: integer tags whose names are the feature's ClassLabel (kept by a parquet file)."""
    from datasets import ClassLabel, Dataset, Features, Sequence, Value

    from hubtune.core.config import DataConfig
    from hubtune.data.examples import load_task_train_eval
    from hubtune.tasks.registry import get_task

    names = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    feats = Features({"tokens": Sequence(Value("string")), "ner_tags": Sequence(ClassLabel(names=names))})
    rows = {"tokens": [["Anna", "Berg", "in", "Oslo"]] * 6, "ner_tags": [[1, 2, 0, 3]] * 6}
    Dataset.from_dict(rows, features=feats).to_parquet(str(tmp_path / "conll.parquet"))
    data = load_task_train_eval(DataConfig(dataset=str(tmp_path / "conll.parquet")), get_task("token-classification"))
    assert data.label_names == names  # the dataset's order, not re-sorted
    assert data.train.dataset[0]["tags"] == [1, 2, 0, 3]


def test_task_options_checked_before_any_work():
    from hubtune.core.config import TrainConfig, resolve
    from hubtune.core.errors import ConfigError
    from hubtune.train.taskrun import best_metric

    def cfg(**kw):
        return resolve(TrainConfig, None, {"base_model": "b", "data.dataset": "d.csv", **kw})

    assert best_metric(cfg(task="regression")) == ("mse", False)  # the classifier default maps to the task's
    assert best_metric(cfg(task="regression", metric_for_best_model="pearson")) == ("pearson", True)
    assert best_metric(cfg(task="token-classification")) == ("f1", True)
    assert best_metric(cfg(task="multi-label-classification")) == ("f1_macro", True)
    with pytest.raises(ConfigError, match="task regression measures"):
        best_metric(cfg(task="regression", metric_for_best_model="accuracy"))
    with pytest.raises(ConfigError, match="expected --mode full or lora"):
        cfg(task="token-classification", mode="ia3").validate()


def test_train_and_push_refuses_a_lower_is_better_gate(tmp_path):
    from .conftest import run_cli

    res = run_cli("train-and-push", "--base-model", "b", "--dataset", str(DATA["regression"]), "--set", "task=regression",
                  "--repo-id", "org/m", "--min-metric", "mse=0.5", "-o", str(tmp_path / "run"))
    assert res.returncode == 2, res.stderr[-2000:]
    assert "--min-metric mse" in res.stderr and "pearson" in res.stderr


@pytest.mark.parametrize("task", ["token-classification", "multi-label-classification"])
def test_hubtune_merge_of_a_task_lora_run_gates_on_the_task_outputs(tiny_bert_dir, tmp_path, task):
    """`hubtune merge RUN` on a LoRA run of a task with its own data: the gate runs the task's held-out examples
    (tokens and tags, multi-hot labels) through the task's outputs; before, it read them as single-label data and
    refused the run (no text column among tokens, ner_tags)."""
    from .conftest import run_cli

    cfg, _ = _train(tiny_bert_dir, tmp_path, task, "lora")
    res = run_cli("merge", str(tmp_path / "run"), "--json")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["parity"]["passed"] and out["parity"]["max_abs_diff"] <= 1e-4
    assert out["parity"]["texts_source"] == "the validation examples that chose the checkpoint"
    merged = tmp_path / "run" / "merged"
    model, _tok = _load(merged, task, "full")
    assert model.config.num_labels == len(out["label_names"]) >= 3
