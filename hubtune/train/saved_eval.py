"""The check that ends a text-classifier run: :func:`evaluate_saved` reloads the files in ``model/`` into a fresh
model, fails the run when it predicts differently from the trained one, and measures it on the eval (and test)
split. Used by :func:`hubtune.train.common.finish_classifier`.

Imports no module of the train package.
"""

from __future__ import annotations

from typing import Any

from hubtune.core.config import TrainConfig
from hubtune.core.errors import TrainingError
from hubtune.core.layout import RunLayout
from hubtune.core.modeling import DEFAULT_MAX_LENGTH, predict_logits
from hubtune.data.dataset import TrainEvalData
from hubtune.tasks.loading import load_classifier


RELOAD_TOLERANCE = 1e-4  # max |logit diff| between the trained model and its saved files, reloaded


def evaluate_saved(cfg: TrainConfig, layout: RunLayout, model: Any, data: TrainEvalData,
                   max_length: int) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Metrics of the files in ``model/``, reloaded into a fresh model object, on the eval split (and the test
    split when the config names one). Fails when the reloaded model predicts differently from the trained one."""
    from hubtune.data.dataset import load_labeled
    from hubtune.core.metrics import classification_metrics, softmax
    from hubtune.core.parity import compare_logits

    limit = min(max_length, DEFAULT_MAX_LENGTH)
    reloaded = load_classifier(str(layout.model_dir), device=str(next(model.parameters()).device))
    reloaded.max_length = limit

    def logits_of(m: Any, ds: Any) -> Any:
        pairs = ds["text_pair"] if "text_pair" in ds.column_names else None
        return predict_logits(m, reloaded.tokenizer, ds["text"], pairs, batch_size=64, max_length=limit)

    def metrics_of(logits: Any, ds: Any) -> dict[str, Any]:
        probs = softmax(logits)
        out = classification_metrics(ds["label"], probs.argmax(-1), reloaded.label_names, probs)
        if cfg.metrics:  # evaluate modules (--metric) on the same predictions
            from hubtune.core.metric_modules import module_metrics

            out["metric_modules"] = module_metrics(cfg.metrics, ds["label"], probs.argmax(-1), probs)
        out["source"] = "reloaded"
        return out

    ds = data.eval.dataset
    saved = logits_of(reloaded.model, ds)
    # the Trainer's mixed-precision autocast wrapper off: both sides answer in fp32, as the saved files will
    from accelerate.utils import extract_model_from_parallel

    model = extract_model_from_parallel(model, keep_fp32_wrapper=False)
    trained = logits_of(model.eval(), ds)
    parity = compare_logits(trained, saved, tolerance=RELOAD_TOLERANCE, min_label_agreement=1.0, texts_source="the eval split")
    if not parity.passed:
        raise TrainingError(
            f"the model reloaded from {layout.model_dir.name}/ disagrees with the trained one ({parity.describe()}); "
            "expected identical predictions: some trained weights were not saved (report it with HUBTUNE_DEBUG=1, "
            "or train with --mode full)"
        )
    eval_metrics = metrics_of(saved, ds)
    test_metrics = None
    if cfg.data.test_dataset:
        dc = cfg.data
        test = load_labeled(dc.test_dataset, label_names=reloaded.label_names, max_samples=dc.test_max_samples,
                            seed=dc.seed, encoding=dc.encoding, text_column=dc.text_column,
                            text_pair_column=dc.text_pair_column, label_column=dc.label_column)
        test_metrics = metrics_of(logits_of(reloaded.model, test.dataset), test.dataset)
    del reloaded
    return eval_metrics, test_metrics
