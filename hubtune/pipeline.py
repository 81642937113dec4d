"""``train-and-push``: train -> gates -> merge (LoRA) -> export ONNX -> card -> push -> verify -> tag -> report.

The one module that chains the steps. Gates stop the run before anything is pushed; a revision is only
tagged once a fresh process has pulled it and reproduced the local predictions. ``resume`` reuses the
steps a previous run finished (train, merge, export), so a failure at push does not retrain.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from hubtune.config import PipelineConfig, TrainConfig, dump_yaml, load_yaml
from hubtune.errors import ConfigError, MetricGateError, VerificationError
from hubtune.layout import RunLayout
from hubtune.metrics import SUMMARY_KEYS
from hubtune.modeling import read_json, resolve_model_source, write_json

Say = Callable[[str], None]
BASE_MODEL_HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"
EXAMPLE_DATASET_ID = "hubtune-examples/tweets"


@dataclass
class PipelineOptions:
    config: PipelineConfig
    resume: bool = False
    overwrite: bool = False
    local_hub: str | None = None  # root folder of the embedded local Hub; None: HF_ENDPOINT / huggingface.co
    verify: bool = True
    progress: bool = True


@dataclass
class PipelineResult:
    run_dir: str
    repo_id: str
    published_dir: str
    url: str | None = None
    commit: str | None = None
    commit_url: str | None = None
    revision: str | None = None
    tag: str | None = None
    committed: bool = False
    verified: bool = False
    endpoint: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    variants: dict[str, Any] = field(default_factory=dict)
    steps: dict[str, str] = field(default_factory=dict)
    verification: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


# --------------------------------------------------------------------------------------------------
def _train_config(cfg: PipelineConfig) -> TrainConfig:
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    return TrainConfig(**{k: getattr(cfg, k) for k in names})


def _train_done(layout: RunLayout, tcfg: TrainConfig) -> bool:
    if not (layout.metrics.is_file() and layout.model_dir.is_dir() and layout.config.is_file()):
        return False
    return load_yaml(layout.config) == load_yaml_text(dump_yaml(tcfg))


def load_yaml_text(text: str) -> Any:
    import yaml

    return yaml.safe_load(text)


def check_metric_gates(metrics: dict[str, Any], minimums: dict[str, float], where: str) -> None:
    failed = []
    for name, minimum in minimums.items():
        if name not in metrics:
            raise ConfigError(
                f"--min-metric {name} names no measured metric; expected one of {', '.join(SUMMARY_KEYS)}"
            )
        if float(metrics[name]) < minimum:
            failed.append(f"{name} {float(metrics[name]):.4f} < {minimum}")
    if failed:
        raise MetricGateError(
            f"metric gate failed on {where}: {'; '.join(failed)}; nothing was pushed "
            "(improve the model or lower --min-metric)"
        )


def _validate(cfg: PipelineConfig) -> None:
    rid = cfg.publish.repo_id or ""
    parts = rid.split("/")
    if len(parts) != 2 or not all(parts):
        raise ConfigError(f"publish.repo_id is {rid!r}; expected ORG/NAME: pass --repo-id ORG/NAME")
    if cfg.task != "text-classification" or cfg.mode == "prefix":
        raise ConfigError(
            f"train-and-push publishes text classifiers (task text-classification, mode full/lora/ia3); found task "
            f"{cfg.task} mode {cfg.mode}: run `hubtune train` then `hubtune push RUN/model --repo-id ...` instead"
        )
    unknown = [m for m in cfg.gates.min_metrics if m not in SUMMARY_KEYS]
    if unknown:
        raise ConfigError(
            f"--min-metric {unknown[0]} is not a metric hubtune measures; expected one of {', '.join(SUMMARY_KEYS)}"
        )


def _portable(value: Any) -> Any:
    """Strip absolute local paths (to their last component) from a JSON-like value."""
    if isinstance(value, dict):
        return {k: _portable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_portable(v) for v in value]
    if isinstance(value, str) and os.path.isabs(value):
        return Path(value).name
    return value


def seed_local_hub(root: Path, say: Say) -> None:
    """Seed the embedded Hub with the packaged base model and the example dataset (idempotent)."""
    from hubtune.hub_server.importer import import_into_store

    base = resolve_model_source("packaged:minilm")
    res = import_into_store(root, base, BASE_MODEL_HUB_ID, repo_type="model")
    say(f"local hub: {BASE_MODEL_HUB_ID} {'imported' if res['committed'] else 'present'}")
    tweets = Path("data/tweets")
    if (tweets / "train.csv").is_file():
        import pandas as pd

        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "data").mkdir()
            for split in ("train", "test"):
                pd.read_csv(tweets / f"{split}.csv").to_parquet(Path(tmp) / "data" / f"{split}-00000-of-00001.parquet", index=False)
            shutil.copy(tweets / "README.md", Path(tmp) / "README.md")
            res = import_into_store(root, tmp, EXAMPLE_DATASET_ID, repo_type="dataset")
        say(f"local hub: dataset {EXAMPLE_DATASET_ID} {'imported' if res['committed'] else 'present'}")


def step_summary_markdown(result: PipelineResult) -> str:
    lines = [f"## hubtune train-and-push: `{result.repo_id}`", ""]
    status = "verified" if result.verified else "NOT verified"
    link = f"[{result.repo_id}]({result.url})" if result.url else result.repo_id
    lines.append(f"Published {link} at commit `{(result.commit or '')[:12]}` ({status})"
                 + (f", tagged `{result.tag}`" if result.tag else "") + ".")
    if result.commit_url:
        lines.append(f"Commit: {result.commit_url}")
    lines += ["", "| metric | value |", "| --- | --- |"]
    lines += [f"| {k} | {v:.4f} |" for k, v in result.metrics.items()]
    if result.variants:
        lines += ["", "| variant | size (MB) | rows/s (CPU) | accuracy |", "| --- | --- | --- | --- |"]
        for name, v in result.variants.items():
            thr = (v.get("throughput") or {}).get("rows_per_s")
            acc = (v.get("metrics") or {}).get("accuracy")
            lines.append(f"| {name} | {v.get('size_mb', '')} | {thr if thr is not None else ''} | "
                         f"{f'{acc:.4f}' if acc is not None else ''} |")
    lines += ["", "| step | status |", "| --- | --- |"] + [f"| {k} | {v} |" for k, v in result.steps.items()]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------------
def run_pipeline(opts: PipelineOptions, say: Say | None = None) -> PipelineResult:
    say = say or (lambda _m: None)
    cfg = opts.config
    _validate(cfg)
    t0 = time.perf_counter()
    hub_ctx: Any = nullcontext(None)
    if opts.local_hub:
        from hubtune.hub_server.embedded import embedded_hub

        Path(opts.local_hub).mkdir(parents=True, exist_ok=True)
        hub_ctx = embedded_hub(opts.local_hub)
    with hub_ctx as hub:
        if hub is not None:
            say(f"local hub serving {opts.local_hub} at {hub.url}")
            seed_local_hub(Path(opts.local_hub), say)
        result = _run(cfg, opts, say, hub)
    result.seconds = round(time.perf_counter() - t0, 1)
    return result


def _run(cfg: PipelineConfig, opts: PipelineOptions, say: Say, hub: Any) -> PipelineResult:
    from hubtune.card import CardOptions, card
    from hubtune.export import ExportOptions, export
    from hubtune.hub import PushOptions, push, tag_release
    from hubtune.merge import MergeOptions, merge
    from hubtune.rundir import eval_data, load_run, published_dir
    from hubtune.train import train
    from hubtune.verify import VerifyOptions, predict_labels, verify

    layout = RunLayout.of(cfg.output_dir)
    tcfg = _train_config(cfg)
    steps: dict[str, str] = {}

    # 1. train (or reuse) and the first metric gate, before any further work
    if opts.resume and _train_done(layout, tcfg):
        steps["train"] = "reused"
        say("train: reusing the finished run")
    else:
        say(f"train: {tcfg.mode} fine-tune of {tcfg.base_model}")
        train(tcfg, overwrite=opts.overwrite, resume=opts.resume, progress=opts.progress)
        steps["train"] = "done"
    train_eval = read_json(layout.metrics)["eval"]
    check_metric_gates(train_eval, cfg.gates.min_metrics, "the training evaluation")

    # 2. merge (LoRA) with its parity gate
    run = load_run(layout.root)
    if run.mode in ("lora", "ia3"):
        if opts.resume and (layout.merged_dir / "config.json").is_file():
            steps["merge"] = "reused"
        else:
            say("merge: merging the LoRA adapter (parity gate)")
            merge(MergeOptions(source=str(layout.root), tolerance=cfg.gates.merge_tolerance, overwrite=True), progress=say)
            steps["merge"] = "done"
    pub = published_dir(layout.root)

    # 3. ONNX export with its parity gates
    onnx_file = None
    if cfg.export.onnx:
        if opts.resume and (pub / "onnx" / "model.onnx").is_file():
            steps["export"] = "reused"
        else:
            say("export: ONNX through Optimum (parity gate)")
            export(
                ExportOptions(
                    source=str(layout.root), optimize=cfg.export.optimize, quantize=cfg.export.quantize,
                    tolerance=cfg.export.tolerance, max_accuracy_drop_pt=cfg.gates.max_accuracy_drop, overwrite=True,
                ),
                progress=say,
            )
            steps["export"] = "done"
        onnx_file = "model.onnx"

    # 4. card from the published files, then the metric gate on those exact files
    say("card: evaluating the published files and writing README.md")
    repo_id = str(cfg.publish.repo_id)
    card_res = card(
        CardOptions(run_dir=str(layout.root), repo_id=repo_id, license=cfg.publish.license,
                    language=[cfg.publish.language], tags=list(cfg.publish.tags)),
        progress=say,
    )
    steps["card"] = "done"
    published_metrics = {k: float(card_res.metrics[k]) for k in SUMMARY_KEYS if k in card_res.metrics}
    check_metric_gates(published_metrics or train_eval, cfg.gates.min_metrics, "the published files")
    summary = read_json(layout.summary)
    write_json(pub / "run_summary.json", _portable({k: v for k, v in summary.items() if k != "pipeline"}))

    # 5. golden examples: local predictions through the same code the verifier runs
    run = load_run(layout.root)
    ev = eval_data(run, run.summary.get("label_names") or [], max_samples=cfg.gates.golden_examples)
    texts = list(ev.data.dataset["text"]) if ev is not None else []
    if not texts:
        raise ConfigError("no golden examples: the run has no evaluation data; set data.eval_dataset")
    expected = predict_labels(str(pub), texts, onnx_file=onnx_file)
    write_json(layout.root / "golden.json", {"texts": texts, "expected": expected})

    # 6. push in one commit
    say(f"push: {pub.name}/ -> {repo_id}")
    pushed = push(PushOptions(folder=pub, repo_id=repo_id, private=cfg.publish.private,
                              revision=cfg.publish.revision, create_pr=cfg.publish.create_pr))
    steps["push"] = "done" if pushed.committed else "unchanged"
    result = PipelineResult(
        run_dir=str(layout.root), repo_id=repo_id, published_dir=str(pub), url=pushed.url, commit=pushed.commit_oid,
        commit_url=pushed.commit_url, revision=pushed.revision, committed=pushed.committed, endpoint=pushed.endpoint,
        metrics=published_metrics, variants=summary.get("variants") or {}, steps=steps,
    )

    # 7. verify in a fresh process, then tag
    if opts.verify:
        say(f"verify: pulling {repo_id}@{pushed.commit_oid[:12]} in a fresh process")
        vres = verify(VerifyOptions(repo_id=repo_id, revision=pushed.commit_oid, texts=texts, expected=expected,
                                    onnx_file=onnx_file, endpoint=pushed.endpoint, token=hub.token if hub else None))
        result.verification = dataclasses.asdict(vres)
        result.verified = vres.ok
        steps["verify"] = "passed" if vres.ok else "FAILED"
        _record(layout, result)
        if not vres.ok:
            bad = "; ".join(
                f"{b}: {c['agree']}/{c['total']} labels equal" for b, c in vres.checked.items() if c["agree"] != c["total"]
            )
            raise VerificationError(
                f"verification failed: the pulled revision {pushed.commit_oid[:12]} disagrees with the local folder "
                f"({bad}); "
                "it was not tagged: inspect the pushed files and re-run with --resume"
            )
    else:
        steps["verify"] = "skipped"
    if cfg.publish.tag and result.verified:
        tag_release(repo_id, pushed.commit_oid, cfg.publish.tag, endpoint=pushed.endpoint)
        result.tag = cfg.publish.tag
        steps["tag"] = "done"
    _record(layout, result)
    return result


def _record(layout: RunLayout, result: PipelineResult) -> None:
    summary = read_json(layout.summary) if layout.summary.is_file() else {}
    summary["pipeline"] = {k: v for k, v in dataclasses.asdict(result).items() if k not in ("variants",)}
    write_json(layout.summary, summary)


def resolve_pipeline_config(path: str | None, overrides: dict[str, Any]) -> PipelineConfig:
    from hubtune.config import resolve

    return resolve(PipelineConfig, path, overrides)


__all__ = ["PipelineOptions", "PipelineResult", "run_pipeline", "step_summary_markdown"]
