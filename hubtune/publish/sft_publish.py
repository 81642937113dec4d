"""Publishing SFT runs (:mod:`hubtune.train.sft`: a causal LM on prompt/completion or chat messages, or a seq2seq
model on source/target; full or LoRA): the steps ``train-and-push`` runs for them after training.

* :func:`merge_sft`: a LoRA adapter merged into its base (peft ``merge_and_unload``) into ``merged/``, gated on
  the greedy generations of the held-out prompts: the merged files, reloaded, must produce token-identical new
  tokens to the adapter on its base, or :class:`MergeParityError` (exit 12) and no ``merged/``.
* :func:`sft_metrics`: eval_loss, perplexity, exact_match, rouge_l of the published folder (a full run's
  ``metrics.json``, measured on ``model/`` reloaded; a merged run's measured again on ``merged/``).
* :func:`sft_card`: README.md (pipeline tag, base model, datasets, a widget with one held-out prompt, the
  model-index of those metrics, the usage); no ONNX export for an SFT run, and the card says so.
* :func:`sft_steps`: the three above and the golden prompts, whose local greedy generations
  (:func:`hubtune.publish.verify.sft_predict`) the fresh-process verification must reproduce.

Imports ``card`` (public helpers), ``config``, ``errors``, ``layout``, ``modeling``, ``rundir``, ``tasks``,
``train.sftdata`` (the recipe's data, model loading and metrics), ``verify``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

from hubtune.core.config import TrainConfig
from hubtune.core.errors import ConfigError, MergeParityError
from hubtune.core.layout import RunLayout
from hubtune.core.modeling import follow_umask, read_json, write_json
from hubtune.core.rundir import update_summary
from hubtune.tasks.registry import get_task
from hubtune.train.sftdata import (
    SftColumns, SftData, causal_features, completion_loss, generate, load_sft, load_sft_model, perplexity, prompt_ids,
    prompt_of, reference_of, seq2seq_features, text_metrics,
)

Say = Callable[[str], None]
METRICS = ("eval_loss", "perplexity", "exact_match", "rouge_l")
GATE_PROMPTS = 16  # held-out prompts the merge gate generates on


def sft_data(cfg: TrainConfig, layout: RunLayout) -> tuple[SftData, bool]:
    """The run's held-out rows as the recipe read them, and whether its prompts are chat messages."""
    info = read_json(layout.summary).get("sft") or {}
    cols = SftColumns(info.get("prompt_column"), info.get("completion_column"), info.get("messages_column"))
    if not (cols.messages or cols.prompt):
        raise ConfigError(f"{layout.root} is no SFT run (run_summary.json has no sft columns); expected a run of "
                          "hubtune.train.sft")
    return load_sft(cfg, cols), cols.messages is not None


def _limit(model: Any) -> int | None:
    return getattr(model.config, "n_positions", None) or getattr(model.config, "max_position_embeddings", None)


def greedy_ids(model: Any, tokenizer: Any, task: Any, prompts: list[Any], *, messages: bool, max_new_tokens: int,
               batch_size: int = 16) -> list[list[int]]:
    """The new token ids of greedy generations (the recipe's prompt ids and padding side, as its metrics)."""
    import torch

    device = next(model.parameters()).device
    tokenizer.padding_side = task.padding_side
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    ids = [prompt_ids(tokenizer, task, p, messages=messages) for p in prompts]
    limit = _limit(model)
    if limit and task.encoder_decoder:
        ids = [x[:limit] for x in ids]
    elif limit and limit > max_new_tokens:
        ids = [x[-(limit - max_new_tokens):] for x in ids]
    out: list[list[int]] = []
    model.eval()
    with torch.no_grad():
        for start in range(0, len(ids), batch_size):
            enc = tokenizer.pad({"input_ids": ids[start:start + batch_size]}, return_tensors="pt")
            enc = {k: v.to(device) for k, v in enc.items()}
            seqs = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, num_beams=1, pad_token_id=pad)
            width = enc["input_ids"].shape[1]
            out += [[int(t) for t in task.new_tokens(s, width).tolist()] for s in seqs]
    return out


def merge_adapter(peft_model: Any) -> Any:
    """peft ``merge_and_unload``: the LoRA deltas folded into the base weights."""
    return peft_model.merge_and_unload()


def merge_sft(cfg: TrainConfig, layout: RunLayout, prompts: list[Any], *, messages: bool,
              say: Say | None = None) -> dict[str, Any]:
    """``model/`` (a LoRA adapter) merged into its base in ``merged/``, only when the merged files reloaded generate
    the adapter's greedy tokens on every prompt; returns the gate's record (also run_summary.json ``merge``)."""
    from peft import PeftModel
    from transformers import AutoTokenizer

    say = say or (lambda _m: None)
    task = get_task(cfg.task)
    base, _ = load_sft_model(cfg, task)
    model = PeftModel.from_pretrained(base, str(layout.model_dir)).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(layout.model_dir))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    gen = dict(messages=messages, max_new_tokens=cfg.max_new_tokens)
    say(f"merge: the adapter's greedy generations of {len(prompts)} held-out prompts")
    ref = greedy_ids(model, tokenizer, task, prompts, **gen)
    merged = merge_adapter(model)
    out = layout.merged_dir
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=layout.root))
    follow_umask(tmp)
    try:
        merged.save_pretrained(str(tmp), safe_serialization=True)
        tokenizer.save_pretrained(str(tmp))
        del merged, model
        say("merge: reloading the merged files and generating again (token-identical gate)")
        reloaded, rtok = load_sft_model(cfg, task, str(tmp))
        new = greedy_ids(reloaded, rtok, task, prompts, **gen)
        bad = [i for i in range(len(prompts)) if i >= len(new) or new[i] != ref[i]]
        if bad:
            raise MergeParityError(
                f"the merged model's greedy generations differ from the adapter's on {len(bad)} of {len(prompts)} "
                f"held-out prompts (first: prompt {bad[0]}, {len(ref[bad[0]])} tokens expected); nothing was written "
                "or pushed; expected token-identical generations: check the adapter (peft version, target modules)"
            )
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    record = {"output": out.name, "gate": "greedy generations token-identical", "prompts": len(prompts),
              "max_new_tokens": cfg.max_new_tokens, "identical": len(prompts)}
    update_summary(layout.root, "merge", record)
    return record


def sft_metrics(cfg: TrainConfig, layout: RunLayout, pub: Path, data: SftData, *, messages: bool) -> dict[str, float]:
    """The metrics of the published folder: ``metrics.json``'s when it is ``model/`` (measured there, reloaded),
    measured again on ``merged/`` otherwise (the same recipe functions)."""
    if pub.resolve() == layout.model_dir.resolve():
        ev = read_json(layout.metrics)["eval"]
        return {k: float(ev[k]) for k in METRICS}
    from transformers import DataCollatorForSeq2Seq

    task = get_task(cfg.task)
    model, tok = load_sft_model(cfg, task, str(pub))
    rows = list(data.eval)
    preds = generate(model, tok, task, [prompt_of(r) for r in rows], messages=messages,
                     max_new_tokens=cfg.max_new_tokens, batch_size=cfg.eval_batch_size, limit=_limit(model))
    tok.padding_side = "right"
    max_length = int(read_json(layout.summary).get("max_length") or cfg.max_length)
    seq2seq = task.encoder_decoder
    feats = (seq2seq_features(data.eval, tok, max_length, "eval") if seq2seq
             else causal_features(data.eval, tok, task, max_length, "eval"))
    collator = DataCollatorForSeq2Seq(tok, model=model if seq2seq else None, label_pad_token_id=-100)
    loss = completion_loss(model, feats, collator, cfg.eval_batch_size, shifted=not seq2seq)
    return {"eval_loss": loss, "perplexity": perplexity(loss), **text_metrics(preds, [reference_of(r) for r in rows])}


def widget_text(prompt: Any) -> str:
    """A prompt as the widget shows it: the text, or a chat's last message."""
    return str(prompt[-1]["content"]) if isinstance(prompt, list) else str(prompt)


def sft_card(cfg: TrainConfig, layout: RunLayout, pub: Path, metrics: dict[str, float], prompt: Any, *, repo_id: str,
             license: str = "apache-2.0", language: list[str] | None = None, tags: list[str] | None = None,
             dataset_id: str | None = None, merge: dict[str, Any] | None = None) -> str:
    """README.md in ``pub`` for an SFT run; returns its text."""
    from huggingface_hub import EvalResult, ModelCard, ModelCardData

    from hubtune import __version__
    from hubtune.publish.card import check_public, hub_base_model, public_spec

    task = get_task(cfg.task)
    summary = read_json(layout.summary)
    dc = cfg.data
    base_id, base_display = hub_base_model(cfg.base_model)
    data_name = dataset_id or (public_spec(dc.dataset) or "").split(":")[0]
    eval_spec = public_spec(dc.eval_dataset) or f"{public_spec(dc.dataset)} (validation_split={dc.validation_split})"
    results = [EvalResult(task_type=task.pipeline_tag, task_name=task.card_name, dataset_type=data_name,
                          dataset_name=data_name, dataset_split="validation", metric_type=k, metric_name=k,
                          metric_value=float(metrics[k])) for k in METRICS]
    name = repo_id.split("/")[-1]
    data = ModelCardData(language=language or ["en"], license=license, library_name="transformers",
                         pipeline_tag=task.pipeline_tag, tags=list(dict.fromkeys([task.pipeline_tag, "sft", "hubtune",
                                                                                  *(tags or [])])),
                         base_model=base_id, datasets=[dataset_id] if dataset_id else None, metrics=list(METRICS),
                         model_name=name, eval_results=results, widget=[{"text": widget_text(prompt)}])
    sft = summary.get("sft") or {}
    what = ("a merged LoRA adapter (peft merge_and_unload; its merge gate: greedy generations of "
            f"{merge['prompts']} held-out prompts token-identical to the adapter's on its base; the metrics "
            "below are measured on the merged files)" if merge else
            "full fine-tuning (the metrics below are measured on the published files, reloaded)")
    rows = "\n".join(f"| {k} | {metrics[k]:.4f} |" for k in METRICS)
    before = summary.get("eval") or {}
    body = f"""
# {name}

{name} is {base_display or 'a model'} fine-tuned with supervised fine-tuning (SFT) by hubtune: {what}.
Task: `{task.pipeline_tag}`; data format: {sft.get('format', 'prompt-completion')}; trained on
`{public_spec(dc.dataset)}` ({(summary.get('sizes') or {}).get('train', '?')} examples), evaluated on `{eval_spec}`
({(summary.get('sizes') or {}).get('eval', '?')} examples).

## Evaluation

Greedy generations (at most {cfg.max_new_tokens} new tokens) of the held-out prompts against their references;
the loss is the mean over the completion tokens.

| metric | value |
| --- | --- |
{rows}
{f"| perplexity before training | {before['perplexity_before']:.4f} |" if 'perplexity_before' in before else ''}

## Usage

```python
{task.generation_usage(repo_id, prompt, cfg.max_new_tokens)}
```

The published revision was pulled in a fresh process before release and reproduced the local greedy generations
of the held-out prompts.

## ONNX

Not exported: SFT runs are published as safetensors only (no ONNX graph, no ONNX parity gate).

## Training

{cfg.mode} fine-tuning, {cfg.num_epochs} epochs, learning rate {cfg.learning_rate}, batch size {cfg.batch_size},
max length {summary.get('max_length', cfg.max_length)}; hubtune {__version__}.
"""
    text = str(ModelCard(f"---\n{data.to_yaml()}\n---\n{body}"))
    check_public(text, layout.root, pub)
    out = pub / "README.md"
    tmp = out.with_name(".README.md.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, out)
    update_summary(layout.root, "card", {"path": f"{pub.name}/README.md", "metrics": metrics, "task": cfg.task})
    return text


def sft_steps(cfg: Any, layout: RunLayout, steps: dict[str, str], repo_id: str, *, resume: bool,
              say: Say) -> tuple[Path, dict[str, float], list[Any], dict[str, list[str]]]:
    """Steps 2-5 of ``train-and-push`` for an SFT run: merge (LoRA, its gate), no ONNX, card, golden prompts and
    their local generations; returns (published folder, its metrics, golden prompts, expected generations)."""
    from hubtune.core.modeling import is_adapter_dir, published_dir
    from hubtune.publish.verify import sft_predict

    data, messages = sft_data(cfg, layout)
    prompts = [prompt_of(r) for r in data.eval]
    if not prompts:
        raise ConfigError("no golden examples: the run has no held-out prompts; set data.eval_dataset")
    merge = None
    if is_adapter_dir(layout.model_dir):
        if resume and (layout.merged_dir / "config.json").is_file() and read_json(layout.summary).get("merge"):
            steps["merge"] = "reused"
        else:
            say("merge: merging the LoRA adapter (greedy-generation gate)")
            merge_sft(cfg, layout, prompts[:GATE_PROMPTS], messages=messages, say=say)
            steps["merge"] = "done"
        merge = read_json(layout.summary).get("merge")
    pub = published_dir(layout.root)
    steps["export"] = "skipped (SFT: no ONNX)"
    say(f"card: measuring {pub.name}/ and writing README.md")
    metrics = sft_metrics(cfg, layout, pub, data, messages=messages)
    sft_card(cfg, layout, pub, metrics, prompts[0], repo_id=repo_id, license=cfg.publish.license,
             language=[cfg.publish.language], tags=list(cfg.publish.tags), dataset_id=cfg.publish.dataset_id, merge=merge)
    steps["card"] = "done"
    golden = prompts[: cfg.gates.golden_examples]
    expected = sft_predict(str(pub), cfg.task, golden, max_new_tokens=cfg.max_new_tokens)
    write_json(layout.root / "golden.json", {"texts": golden, "expected": expected, "task": cfg.task,
                                             "max_new_tokens": cfg.max_new_tokens})
    return pub, metrics, golden, expected
