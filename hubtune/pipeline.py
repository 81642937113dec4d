"""``train-and-push``: train -> gates -> merge (LoRA) -> export ONNX -> card -> stage -> verify -> promote -> tag.

The one module that chains the steps. Gates stop the run before anything is pushed. The folder is then
staged: one commit (adds, updates, deletes: the repo mirrors the folder) on a pull request opened from the
target branch's head. A fresh process pulls that exact commit and must reproduce the local predictions; only
then does the branch move to it (merging the pull request: a fast-forward) and is the release tagged (a
template such as ``v{n}`` gives every release a new name). A failed verification leaves the branch and the
tags as they were. ``resume`` reuses the steps a previous run finished (train, merge, export) when the
config and the local data files are unchanged, so a failure at push does not retrain.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import tempfile
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from hubtune.core.config import PipelineConfig, TrainConfig, dump_yaml, load_yaml, resume_changes
from hubtune.core.errors import ConfigError, MetricGateError, PublishRefusedError, VariantRefusedError, VerificationError
from hubtune.core.layout import RunLayout
from hubtune.core.metrics import SUMMARY_KEYS
from hubtune.tasks.registry import get_task
from hubtune.core.modeling import read_json, resolve_model_source, write_json

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
    commit: str | None = None  # the released commit: the target branch's head once promoted
    commit_url: str | None = None
    revision: str | None = None
    tag: str | None = None
    committed: bool = False  # False: the target already equalled the folder, no commit made
    verified: bool = False
    endpoint: str | None = None
    staging_ref: str | None = None  # the pull request ("refs/pr/N") the commit was staged and verified on
    staged_commit: str | None = None
    pr_url: str | None = None
    message: str = ""  # one line: what happened to the Hub repo
    deleted: list[str] = field(default_factory=list)  # remote files gone from the folder, deleted by the commit
    metrics: dict[str, float] = field(default_factory=dict)
    variants: dict[str, Any] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)  # ONNX variant -> why its gate refused it (not published)
    steps: dict[str, str] = field(default_factory=dict)
    verification: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


# --------------------------------------------------------------------------------------------------
def _train_config(cfg: PipelineConfig) -> TrainConfig:
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    return TrainConfig(**{k: getattr(cfg, k) for k in names})


INPUTS_FILE = "pipeline_inputs.json"  # in the run dir: the data files' fingerprint the run was trained on


def data_fingerprint(tcfg: TrainConfig) -> dict[str, str]:
    """spec -> sha256 of the local data files a run reads (a Hub dataset spec maps to itself)."""
    out: dict[str, str] = {}
    for spec in (tcfg.data.dataset, tcfg.data.eval_dataset, getattr(tcfg.data, "test_dataset", None)):
        if not spec:
            continue
        path = Path(spec)
        files = sorted(f for f in path.rglob("*") if f.is_file()) if path.is_dir() else [path] if path.is_file() else []
        h = hashlib.sha256()
        for f in files:
            h.update(f.relative_to(path).as_posix().encode() + b"\0")
            with open(f, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
        out[spec] = h.hexdigest() if files else spec
    return out


def _train_done(layout: RunLayout, tcfg: TrainConfig) -> bool:
    """A finished run with this exact config, trained on these exact data files."""
    inputs = layout.root / INPUTS_FILE
    if not (layout.metrics.is_file() and layout.model_dir.is_dir() and layout.config.is_file() and inputs.is_file()):
        return False
    return load_yaml(layout.config) == load_yaml_text(dump_yaml(tcfg)) and read_json(inputs) == data_fingerprint(tcfg)


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
    from hubtune.core.publishable import check_branch, check_repo_id

    check_repo_id(cfg.publish.repo_id or "", "--repo-id (publish.repo_id)")  # before anything is trained
    if cfg.publish.revision is not None:
        check_branch(cfg.publish.revision, "--revision (publish.revision)")
    if cfg.mode == "adapter":
        raise PublishRefusedError(
            "train-and-push with mode adapter: a bottleneck adapter does not merge into the weights, so pipeline() "
            "cannot load the published repo alone and the fresh-process verification cannot pass; expected --mode "
            "lora (merged, verified) or full; to publish the adapter itself run `hubtune train --mode adapter`, "
            "`hubtune card RUN --repo-id ORG/NAME` (its usage section loads it with the adapters library), then "
            "`hubtune push RUN/model --repo-id ORG/NAME`"
        )
    spec = get_task(cfg.task)
    if (spec.language_model or spec.generates) and (cfg.gates.min_metrics or cfg.export.quantize or cfg.export.optimize
                                                    or cfg.export.openvino):
        raise ConfigError(
            f"train-and-push of a {cfg.task} model: --min-metric, export.quantize, export.optimize and export.openvino apply to "
            "classifiers (its gates are the ONNX logit parity and the fresh-process pipeline() check); drop them"
        )
    if spec.recipe == "head":  # a task that normalises its own data: its metrics, its gates
        allowed = list(spec.gate_metrics)
        bad = [m for m in cfg.gates.min_metrics if m not in allowed]
        if cfg.mode not in ("full", "lora") or bad:
            raise ConfigError(
                f"train-and-push of a {cfg.task} model with mode {cfg.mode}"
                f"{f' and --min-metric {bad[0]}' if bad else ''}; expected --mode full or lora, and --min-metric "
                f"one of {', '.join(allowed)} (a floor: larger is better)"
            )
        cfg.publish.validate()
        cfg.export.validate()
        return
    if not (spec.recipe == "classifier" or spec.language_model or spec.generates) or cfg.mode == "prefix":
        raise ConfigError(
            f"train-and-push publishes text classifiers (task text-classification, mode full/lora/ia3) and language "
            f"models (task fill-mask or text-generation, mode full; SFT runs full or lora); found task "
            f"{cfg.task} mode {cfg.mode}: run `hubtune train` then `hubtune push RUN/model --repo-id ...` instead"
        )
    unknown = [m for m in cfg.gates.min_metrics if m not in SUMMARY_KEYS]
    if unknown:
        raise ConfigError(
            f"--min-metric {unknown[0]} is not a metric hubtune measures; expected one of {', '.join(SUMMARY_KEYS)}"
        )
    cfg.publish.validate()
    cfg.export.validate()


def check_required_variants(refused: dict[str, str], kept: list[str], required: list[str]) -> None:
    """A variant the run requires and its gate refused (or that is missing) fails the run before the push."""
    for name in required:
        if name in refused or name not in kept:
            why = refused.get(name, "not built")
            raise VariantRefusedError(
                f"required variant {name} was refused by its gate ({why}); nothing was pushed; expected it to pass: "
                "loosen gates.max_accuracy_drop, or drop --require-variant / export.require_variants to publish without it"
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
    if result.message:
        lines.append(f"{result.message}.")
    if result.commit_url:
        lines.append(f"Commit: {result.commit_url}")
    if result.deleted:
        lines += ["", "Deleted from the repo (gone from the published folder): "
                  + ", ".join(f"`{p}`" for p in result.deleted)]
    if result.refused:
        lines += ["", "> [!WARNING]", "> ONNX variants refused by their gate, **not published**:"]
        lines += [f"> - `{name}`: {why}" for name, why in result.refused.items()]
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
    from hubtune.core.endpoint import describe_endpoint, hub_endpoint, is_public_hub, offline

    if offline() and not opts.local_hub:  # it could train, but never publish: refused before any work
        from hubtune.core.errors import HubUnreachableError

        raise HubUnreachableError(
            f"train-and-push publishes to {describe_endpoint()}, but HF_HUB_OFFLINE=1 is set: nothing was trained or "
            "pushed; expected online mode: unset HF_HUB_OFFLINE, or pass --local-hub DIR (the embedded local Hub)")
    t0 = time.perf_counter()
    hub_ctx: Any = nullcontext(None)
    cache_ctx: Any = nullcontext(None)
    if opts.local_hub:  # its downloads are cached in its root, apart from the user's cache of the real Hub
        from hubtune.hub_server.embedded import embedded_hub

        hub_ctx = embedded_hub(opts.local_hub)
    elif not is_public_hub() and not os.environ.get("HF_HUB_CACHE"):  # another Hub: a cache of its own too
        from hubtune.hub_server.embedded import endpoint_cache_dir, separate_cache

        cache_ctx = separate_cache(endpoint_cache_dir(hub_endpoint()))
    with cache_ctx, hub_ctx as hub:
        if hub is not None:
            say(f"local hub serving {opts.local_hub} at {hub.url}")
            seed_local_hub(Path(opts.local_hub), say)
        result = _run(cfg, opts, say, hub)
    result.seconds = round(time.perf_counter() - t0, 1)
    return result


def _run(cfg: PipelineConfig, opts: PipelineOptions, say: Say, hub: Any) -> PipelineResult:
    from hubtune.publish.hub import PushOptions, tag_release
    from hubtune.publish.staging import check_release_tag, promote, stage
    from hubtune.train import train
    from hubtune.publish.verify import VerifyOptions, verify

    layout = RunLayout.of(cfg.output_dir)
    tcfg = _train_config(cfg)
    steps: dict[str, str] = {}
    repo_id = str(cfg.publish.repo_id)
    if cfg.publish.tag:  # a fixed tag taken by another commit is refused before any work (and again at the push)
        check_release_tag(repo_id, cfg.publish.tag, cfg.publish.revision)

    # 1. train (or reuse) and the first metric gate, before any further work
    if opts.resume and _train_done(layout, tcfg):
        steps["train"] = "reused"
        say("train: reusing the finished run")
    else:
        # a finished run of another config or other data is not resumed: it is trained again from scratch
        stale = opts.resume and (layout.metrics.is_file() or (layout.started_config.is_file() and bool(
            resume_changes(load_yaml(layout.started_config), tcfg))))  # an interrupted run of another config
        if stale:
            say(f"train: the finished run in {layout.root} was trained on another config or other data: training again")
        say(f"train: {tcfg.mode} fine-tune of {tcfg.base_model}")
        train(tcfg, overwrite=opts.overwrite or stale, resume=opts.resume and not stale, progress=opts.progress,
              on_start=lambda i: say(f"train: trainable parameters {i['trainable']:,} of {i['total']:,} "
                                     f"({100 * i['share']:.2f}%)"))
        write_json(layout.root / INPUTS_FILE, data_fingerprint(tcfg))
        steps["train"] = "done"
    train_eval = read_json(layout.metrics)["eval"]
    check_metric_gates(train_eval, cfg.gates.min_metrics, "the training evaluation")

    spec = get_task(tcfg.task)
    gen_tokens = None  # an SFT run: its greedy generations are verified (sft_publish), at most this many tokens
    if spec.recipe == "head":  # multi-label, regression, token classification
        pub, onnx_file, refused, published_metrics, summary, texts, expected = _task_steps(cfg, opts, say, layout, steps,
                                                                                          repo_id)
    elif read_json(layout.summary).get("sft"):  # an SFT run: sft_publish's merge gate, card and golden prompts
        from hubtune.publish.sft_publish import sft_steps

        pub, published_metrics, texts, expected = sft_steps(cfg, layout, steps, repo_id, resume=opts.resume, say=say)
        onnx_file, refused, summary, gen_tokens = None, {}, read_json(layout.summary), cfg.max_new_tokens
        write_json(pub / "run_summary.json", _portable({k: v for k, v in summary.items() if k != "pipeline"}))
    elif spec.language_model:  # fill-mask / text-generation: nothing to merge; lm_publish's export and card
        pub, onnx_file, refused, published_metrics, summary, texts, expected = _lm_steps(cfg, opts, say, layout, steps, repo_id)
    else:
        pub, onnx_file, refused, published_metrics, summary, texts, expected = _classifier_steps(
            cfg, opts, say, layout, steps, repo_id, train_eval)

    # 6. stage: ONE commit mirroring the folder, on a pull request opened from the target branch's head
    say(f"stage: {pub.name}/ -> {repo_id} (a pull request from {cfg.publish.revision or 'main'}'s head)")
    staged = stage(PushOptions(folder=pub, repo_id=repo_id, private=cfg.publish.private, revision=cfg.publish.revision,
                               tag=cfg.publish.tag, keep_remote=tuple(cfg.publish.keep_remote)))
    pushed, ref, target = staged.push, staged.staging_ref, staged.target
    sha = pushed.commit_oid
    result = PipelineResult(
        run_dir=str(layout.root), repo_id=repo_id, published_dir=str(pub), url=pushed.url, commit=sha,
        commit_url=pushed.commit_url, revision=target, committed=pushed.committed, endpoint=pushed.endpoint,
        staging_ref=ref, staged_commit=sha if ref else None, pr_url=pushed.pr_url, deleted=pushed.deleted,
        metrics=published_metrics, variants=summary.get("variants") or {}, refused=refused, steps=steps,
    )
    if ref is None:
        steps["push"] = "unchanged"
        if staged.release:
            result.tag, result.verified = staged.release, True
            steps["verify"] = f"unchanged since {staged.release}"
            result.message = (f"nothing changed: {repo_id}@{target} already equals the folder at {sha[:12]}, "
                              f"released as {staged.release}; no commit, no new tag")
            say(result.message)
            _record(layout, result)
            return result
        say(f"push: nothing changed, {repo_id}@{target} already equals the folder at {sha[:12]}")
    else:
        steps["push"] = "staged"
        say(f"stage: commit {sha[:12]} on {ref} ({len(pushed.changed)} added or updated, {len(pushed.deleted)} deleted); "
            f"{target} stays at {staged.base[:12]} until it is verified")
    where = (f"the unverified commit stays at {ref} ({sha}); {target} and the tags are unchanged" if ref
             else f"{target} and the tags are unchanged at {sha}")

    # 7. verify that exact commit in a fresh process
    if opts.verify:
        say(f"verify: pulling {repo_id}@{sha[:12]} in a fresh process")
        try:
            vres = verify(VerifyOptions(repo_id=repo_id, revision=sha, texts=texts, expected=expected, task=cfg.task,
                                        onnx_file=onnx_file, endpoint=pushed.endpoint, token=hub.token if hub else None,
                                        max_new_tokens=gen_tokens))
        except VerificationError as exc:
            steps["verify"] = "FAILED"
            _record(layout, result)
            raise VerificationError(f"{exc}; {where}") from None
        result.verification = dataclasses.asdict(vres)
        result.verified = vres.ok
        steps["verify"] = "passed" if vres.ok else "FAILED"
        if not vres.ok:
            _record(layout, result)
            bad = "; ".join(
                f"{b}: {c['agree']}/{c['total']} labels equal" for b, c in vres.checked.items() if c["agree"] != c["total"]
            )
            raise VerificationError(
                f"verification failed: the pulled revision {sha[:12]} disagrees with the local folder ({bad}); "
                f"not promoted, not tagged: {where}; expected equal labels: inspect it there, then re-run with --resume"
            )
    else:
        steps["verify"] = "skipped"

    # 8. promote: merge the pull request, moving the target branch to the verified commit (a fast-forward)
    if ref is not None and cfg.publish.create_pr:
        steps["promote"] = "pull request left open"
        result.message = f"staged on {ref} ({pushed.pr_url}), left open for review (publish.create_pr); {target} unchanged"
        _record(layout, result)
        return result
    if ref is not None:
        say(f"promote: merging {ref} into {target}")
        try:
            head = promote(staged, comment=f"hubtune: verified {sha[:12]} in a fresh process"
                           if result.verified else "hubtune: published without verification (--no-verify)")
        except Exception:
            steps["promote"] = "FAILED"
            _record(layout, result)
            raise
        result.commit, steps["promote"] = head, "done"
        result.commit_url = f"{pushed.url}/commit/{head}"

    # 9. tag the release: a new name per release (publish.tag template), only on a verified commit
    if cfg.publish.tag and result.verified:
        result.tag = tag_release(repo_id, str(result.commit), cfg.publish.tag, endpoint=pushed.endpoint)
        steps["tag"] = "done"
    what = (f"{len(pushed.changed)} files added or updated, {len(pushed.deleted)} deleted" if ref
            else "no new commit")
    result.message = (f"{repo_id}@{target} at {str(result.commit)[:12]} ({what})"
                      + (f", released as {result.tag}" if result.tag else ", not tagged"))
    _record(layout, result)
    return result


def _classifier_steps(cfg: PipelineConfig, opts: PipelineOptions, say: Say, layout: RunLayout, steps: dict[str, str],
                      repo_id: str, train_eval: dict[str, Any]) -> tuple[Any, ...]:
    """Steps 2-5 for a text classifier: merge, export, card (+ gate on the published files), golden examples."""
    from hubtune.publish.card import CardOptions, card
    from hubtune.publish.merge import MergeOptions, merge
    from hubtune.core.rundir import eval_data, load_run, published_dir
    from hubtune.publish.verify import predict_labels

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

    # 3. ONNX export with its parity gates; a refused optional variant is reported, a required one fails here
    onnx_file, refused = _export_step(cfg, opts, say, layout, pub, steps)

    # 4. card from the published files, then the metric gate on those exact files
    say("card: evaluating the published files and writing README.md")
    card_res = card(
        CardOptions(run_dir=str(layout.root), repo_id=repo_id, license=cfg.publish.license,
                    language=[cfg.publish.language], tags=list(cfg.publish.tags), dataset_id=cfg.publish.dataset_id),
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
    return pub, onnx_file, refused, published_metrics, summary, texts, expected


def _export_step(cfg: PipelineConfig, opts: PipelineOptions, say: Say, layout: RunLayout, pub: Path,
                 steps: dict[str, str]) -> tuple[str | None, dict[str, str]]:
    """ONNX export with its parity gates (the task's, :mod:`hubtune.publish.export`): (the graph the verification
    checks or None, the refused optional variants); a refused required variant fails here, before any push."""
    from hubtune.publish.export import ExportOptions, export

    if not cfg.export.onnx:
        steps["export"] = "skipped"
        return None, {}
    if opts.resume and _export_done(layout, pub, cfg):
        steps["export"] = "reused"
        refused = {k: str(v.get("reason")) for k, v in read_json(layout.summary)["export"]["refused"].items()}
    else:
        say("export: ONNX (parity gate)")
        exported = export(
            ExportOptions(
                source=str(layout.root), optimize=cfg.export.optimize, quantize=cfg.export.quantize,
                tolerance=cfg.export.tolerance, max_accuracy_drop_pt=cfg.gates.max_accuracy_drop, overwrite=True,
                openvino=cfg.export.openvino,
            ),
            progress=say,
        )
        refused = {k: str(v.reason) for k, v in exported.refused.items()}
        steps["export"] = "done"
    check_required_variants(refused, list(read_json(layout.summary).get("variants") or {}), cfg.export.required())
    return "model.onnx", refused


def _task_steps(cfg: PipelineConfig, opts: PipelineOptions, say: Say, layout: RunLayout, steps: dict[str, str],
                repo_id: str) -> tuple[Any, ...]:
    """Steps 2-5 for a multi-label / regression / token-classification run: merge (LoRA, with its parity gate),
    the card from the published files (+ the metric gate on them), golden examples answered by pipeline()."""
    from hubtune.publish.card import CardOptions, card
    from hubtune.core.rundir import load_run, published_dir, task_eval_examples
    from hubtune.publish.merge import MergeOptions, merge
    from hubtune.publish.verify import task_predict

    task = cfg.task
    spec = get_task(task)
    run = load_run(layout.root)
    data, _, _ = task_eval_examples(run, task, list(run.summary.get("label_names") or []))
    if run.mode == "lora":
        if opts.resume and (layout.merged_dir / "config.json").is_file():
            steps["merge"] = "reused"
        else:
            say("merge: merging the LoRA adapter (parity gate)")
            merge(MergeOptions(source=str(layout.root), tolerance=cfg.gates.merge_tolerance, overwrite=True), progress=say)
            steps["merge"] = "done"
    pub = published_dir(layout.root)
    onnx_file, refused = _export_step(cfg, opts, say, layout, pub, steps)
    say("card: evaluating the published files and writing README.md")
    card_res = card(CardOptions(run_dir=str(layout.root), repo_id=repo_id, license=cfg.publish.license,
                                language=[cfg.publish.language], tags=list(cfg.publish.tags),
                                dataset_id=cfg.publish.dataset_id), progress=say)
    steps["card"] = "done"
    published_metrics = {k: float(v) for k, v in card_res.metrics.items()}
    check_metric_gates(published_metrics, cfg.gates.min_metrics, "the published files")
    summary = read_json(layout.summary)
    write_json(pub / "run_summary.json", _portable({k: v for k, v in summary.items() if k != "pipeline"}))
    ds = data.dataset.select(range(min(cfg.gates.golden_examples, len(data.dataset))))
    texts = spec.texts(ds)
    if not texts:
        raise ConfigError("no golden examples: the run has no evaluation data; set data.eval_dataset")
    expected = task_predict(str(pub), task, texts, onnx_file=onnx_file)
    write_json(layout.root / "golden.json", {"texts": texts, "expected": expected, "task": task})
    return pub, onnx_file, refused, published_metrics, summary, texts, expected


def _lm_steps(cfg: PipelineConfig, opts: PipelineOptions, say: Say, layout: RunLayout, steps: dict[str, str],
              repo_id: str) -> tuple[Any, ...]:
    """Steps 3-5 for a fill-mask / text-generation run: ONNX export with its logit-parity gate, the LM card
    (perplexity before and after), golden probes answered by ``pipeline()`` (and ONNX Runtime) locally."""
    from transformers import AutoTokenizer

    from hubtune.publish.lm_publish import lm_card, lm_export, probe_texts, run_eval_texts
    from hubtune.core.rundir import load_run
    from hubtune.publish.verify import lm_predict

    pub = layout.model_dir
    task = cfg.task
    onnx_file = None
    if cfg.export.onnx:
        reuse = opts.resume and (pub / "onnx" / "model.onnx").is_file() and bool((read_json(layout.summary).get("variants") or {}).get("onnx"))
        if reuse:
            steps["export"] = "reused"
        else:
            lm_export(layout.root, tolerance=cfg.export.tolerance, say=say)
            steps["export"] = "done"
        onnx_file = "model.onnx"
    say(f"card: {task} card with the perplexity before and after training")
    metrics = lm_card(layout.root, repo_id=repo_id, license=cfg.publish.license, language=[cfg.publish.language],
                      tags=list(cfg.publish.tags), dataset_id=cfg.publish.dataset_id)
    steps["card"] = "done"
    summary = read_json(layout.summary)
    write_json(pub / "run_summary.json", _portable({k: v for k, v in summary.items() if k != "pipeline"}))
    mask = AutoTokenizer.from_pretrained(str(pub)).mask_token if get_task(task).masked else None
    texts = probe_texts(task, run_eval_texts(load_run(layout.root)), mask, n=cfg.gates.golden_examples)
    if not texts:
        raise ConfigError("no golden examples: the run's eval texts have fewer than 3 words each; set data.eval_dataset")
    expected = lm_predict(str(pub), task, texts, onnx_file=onnx_file)
    write_json(layout.root / "golden.json", {"texts": texts, "expected": expected, "task": task})
    return pub, onnx_file, {}, {k: float(v) for k, v in metrics.items()}, summary, texts, expected


def _export_done(layout: RunLayout, pub: Path, cfg: PipelineConfig) -> bool:
    """``onnx/`` from an earlier export of this run with the variants and gates this config asks for."""
    summary = read_json(layout.summary) if layout.summary.is_file() else {}
    info = summary.get("export") or {}
    if not (pub / "onnx" / "model.onnx").is_file() or "refused" not in info:
        return False
    tried = set(summary.get("variants") or {}) | set(info["refused"])
    wanted = {"pytorch", "onnx"} | ({"onnx-int8"} if cfg.export.quantize else set())
    wanted |= {f"onnx-{cfg.export.optimize.upper()}"} if cfg.export.optimize else set()
    wanted |= {"openvino"} if cfg.export.openvino else set()  # export --openvino's IR beside onnx/
    return (tried == wanted and info.get("tolerance") == cfg.export.tolerance
            and info.get("max_accuracy_drop_pt") == cfg.gates.max_accuracy_drop)


def _record(layout: RunLayout, result: PipelineResult) -> None:
    summary = read_json(layout.summary) if layout.summary.is_file() else {}
    summary["pipeline"] = {k: v for k, v in dataclasses.asdict(result).items() if k not in ("variants",)}
    write_json(layout.summary, summary)


def resolve_pipeline_config(path: str | None, overrides: dict[str, Any]) -> PipelineConfig:
    from hubtune.core.config import resolve

    return resolve(PipelineConfig, path, overrides)


__all__ = ["PipelineOptions", "PipelineResult", "check_required_variants", "run_pipeline", "step_summary_markdown"]
