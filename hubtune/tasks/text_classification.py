"""text-classification: one label per text (or text pair) from a sequence-classification head (softmax).

Trained by the classifier recipes (``hubtune.train.classifier`` on the Trainer, ``hubtune.train.accel`` on a plain
Accelerate loop), with every PEFT mode, ULMFiT options, class weights and ``--metric`` modules; batch-predict
writes ``label`` and ``score`` (``score_<label>`` with ``--all-scores``), and the built-in classification metrics
(accuracy, F1, per class, ROC AUC) when the input has labels."""

from __future__ import annotations

from typing import Any

from hubtune.core.errors import ConfigError
from hubtune.core.metrics import SUMMARY_KEYS
from hubtune.tasks.base import PROBLEM_TYPES, TEXT_CLASSIFICATION, CheckpointTask, Task, check_engine, check_trained


class SequenceTask(Task):
    """What the three readings of one sequence-classification head share (single-label, multi-label,
    regression): the head, its problem_type, text pairs, the batch padding of a sequence head."""

    auto_class = "AutoModelForSequenceClassification"
    one_sequence = True
    predicts = True
    reads_pairs = True

    def served_by(self, found: CheckpointTask) -> bool:
        from hubtune.tasks.base import has_head

        return has_head(found, self.name)


class TextClassification(SequenceTask):
    name = TEXT_CLASSIFICATION
    description = "one label per text (softmax)"
    problem_type = PROBLEM_TYPES[TEXT_CLASSIFICATION]
    recipe = "classifier"
    train_modes = ("full", "lora", "ia3", "prefix", "adapter")
    engines = ("trainer", "accelerate")
    ulmfit = True
    metric_modules = True
    class_weights = True
    single_label = True  # batch-predict writes label/score and the classification metrics itself
    summary_keys = SUMMARY_KEYS
    best_metric = ("accuracy", True)
    main_metric = "accuracy"
    gate_metrics = SUMMARY_KEYS
    card_name = "Text Classification"

    def head_kwargs(self, label_names: list[str]) -> dict[str, Any]:
        out = super().head_kwargs(label_names)
        out.pop("problem_type", None)  # transformers infers single-label from integer labels
        return out

    def check_config(self, cfg: Any) -> None:
        check_trained(self)
        check_engine(self, cfg)

    def load_labeled(self, spec: str, dc: Any, label_names: list[str] | None, *,
                     max_samples: int | None = None) -> Any:
        from hubtune.data.dataset import load_labeled

        return load_labeled(spec, text_column=dc.text_column, text_pair_column=dc.text_pair_column,
                            label_column=dc.label_column, label_names=label_names, max_samples=max_samples,
                            seed=dc.seed, encoding=dc.encoding)

    def evaluate(self, loaded: Any, data: Any, *, batch_size: int = 64, metric_modules: Any = ()) -> dict[str, Any]:
        from hubtune.core.modeling import evaluate_loaded

        return evaluate_loaded(loaded, data, batch_size=batch_size, metric_modules=metric_modules)

    def check_predict_options(self, long_text: str, pair_column: str | None, threshold: float | None) -> None:
        super().check_predict_options("truncate", pair_column, threshold)  # --long-text chunk is this task's

    def pipeline_answers(self, model_ref: str, texts: list[str], revision: str | None, threshold: float) -> dict[str, Any]:
        return {"pytorch": [r["label"] for r in sequence_pipeline(model_ref, revision)(texts, batch_size=16)]}

    def logits_answer(self, logits: Any, mask: Any, names: list[str], threshold: float) -> tuple[list[str], list[Any]]:
        return [names[int(j)] for j in logits.argmax(-1)], []


def sequence_pipeline(model_ref: str, revision: str | None) -> Any:
    """``pipeline("text-classification")`` of a published sequence head, on the CPU, truncating long texts."""
    from transformers import pipeline

    return pipeline("text-classification", model=model_ref, revision=revision, device=-1, truncation=True)
