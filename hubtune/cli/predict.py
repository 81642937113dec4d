"""``hubtune batch-predict`` and ``hubtune merge-predictions``."""

from __future__ import annotations

from typing import List, Optional

import typer

from hubtune.cli._common import apply_token, print_json, progress_option, resolve_progress, stderr, task_choices, token_option


def batch_predict(
    model: str = typer.Option(..., "--model", "-m", help="Model folder, run directory (hubtune train's output), Hub id ORG/NAME or packaged:minilm."),
    dataset: str = typer.Option(..., "--dataset", "-d", help="name[:config]:split or a local csv/tsv/jsonl/json/parquet file or directory."),
    output: str = typer.Option(..., "--output", "-o", help="preds.parquet, preds.jsonl or preds.csv."),
    backend: str = typer.Option("auto", "--backend", help="auto (the fastest path this machine has, measured and cached), torch, onnx (onnxruntime) or openvino (OpenVINO on the CPU)."),
    device: str = typer.Option("auto", "--device", help="cuda, cpu or auto (cuda when available)."),
    batch_size: int = typer.Option(256, "--batch-size", help="Rows per batch at most (see also --max-batch-tokens)."),
    max_batch_tokens: int = typer.Option(4096, "--max-batch-tokens", help="Tokens per batch at most (rows x padded length): bounds the memory (MiniLM at 512 tokens: about 1.4 GB on onnx, 0.9 GB on torch)."),
    dtype: str = typer.Option("auto", "--dtype", help="auto, fp32, bf16 (torch; openvino on a CPU with bf16 units), fp16 (torch on cuda) or int8 (onnx: onnx/model_quantized.onnx; openvino: weights compressed to int8 on load)."),
    min_agreement: float = typer.Option(0.995, "--min-agreement", help="Label agreement with fp32 that an automatically chosen bf16/fp16 needs (else fp32)."),
    keep_columns: Optional[str] = typer.Option(None, "--keep-columns", help="Input columns to copy to the output, comma-separated."),
    all_scores: bool = typer.Option(False, "--all-scores", help="Also write score_<label> for every class."),
    limit: Optional[int] = typer.Option(None, "--limit", help="Predict only the first N rows."),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run into the same --output."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output and its parts (kept until the new run's checks pass; the old output until the new one is complete)."),
    on_error: str = typer.Option("skip", "--on-error", help="skip: record bad rows in OUTPUT.errors.jsonl; fail: stop at the first."),
    num_shards: int = typer.Option(1, "--num-shards", help="Split the input into K contiguous row ranges (one per runner)."),
    shard_index: int = typer.Option(0, "--shard-index", help="Which range this runner predicts (0..K-1)."),
    text_column: Optional[str] = typer.Option(None, "--text-column"),
    text_pair_column: Optional[str] = typer.Option(None, "--text-pair-column"),
    label_column: Optional[str] = typer.Option(None, "--label-column", help="Labels to compute metrics against (auto-detected)."),
    onnx_file: Optional[str] = typer.Option(None, "--onnx-file", help="ONNX file in the model's onnx/ folder, e.g. model_quantized.onnx."),
    chunk_size: int = typer.Option(4096, "--chunk-size", help="Rows per chunk = per output shard (the resume granularity)."),
    max_length: Optional[int] = typer.Option(None, "--max-length", help="Truncate texts to N tokens (default: the model's limit)."),
    long_text: str = typer.Option("truncate", "--long-text", help="A text longer than --max-length: truncate (the rows cut are counted) or chunk (overlapping windows scored, their probabilities averaged)."),
    stride: Optional[int] = typer.Option(None, "--stride", help="--long-text chunk: tokens shared by neighbouring windows (default: a quarter of a window)."),
    revision: Optional[str] = typer.Option(None, "--revision", help="Hub revision of the model (and of a Hub dataset)."),
    encoding: str = typer.Option("utf-8", "--encoding", help="Encoding of local csv/tsv files."),
    threads: Optional[int] = typer.Option(None, "--threads", help="CPU threads (default: all cores)."),
    keep_parts: bool = typer.Option(False, "--keep-parts", help="Keep OUTPUT.parts/ after assembling OUTPUT."),
    engine: str = typer.Option("local", "--engine", help="local (this process) or ray (a Ray Data actor pool; pip install 'hubtune[ray]')."),
    address: Optional[str] = typer.Option(None, "--address", help="ray: cluster to use: auto (a running `ray start --head`) or ray://HOST:10001; default a local Ray."),
    num_workers: Optional[int] = typer.Option(None, "--num-workers", help="ray: model replicas (actors), default 1."),
    gpus_per_worker: float = typer.Option(0.0, "--gpus-per-worker", help="ray: GPUs per actor (0: CPU actors; 0.5: two per GPU)."),
    progress: Optional[bool] = progress_option(),
    token: Optional[str] = token_option(),
    trust_remote_code: bool = typer.Option(False, "--trust-remote-code"),
    metric: Optional[List[str]] = typer.Option(None, "--metric", help="With labels: an evaluate metric module beside the built-in metrics: Hub id (org/name) or local folder; args after ':'. Repeatable."),
    task: Optional[str] = typer.Option(None, "--task", help=f"One of {task_choices(predicts=True)} (default: the task the checkpoint has; one without that head is refused, exit 59)."),
    threshold: Optional[float] = typer.Option(None, "--threshold", help="multi-label: a label is predicted when its sigmoid is over it (default 0.5)."),
    normalize: Optional[bool] = typer.Option(None, "--normalize/--no-normalize", help="feature-extraction: unit-length embeddings (default: what the model's sentence-transformers config says; a bare encoder: not normalised)."),
    prompt_column: Optional[str] = typer.Option(None, "--prompt-column", help="generation: the prompt (or seq2seq source) column (default: detected: prompt, text, source, ...)."),
    messages_column: Optional[str] = typer.Option(None, "--messages-column", help="text-generation: a chat-messages column (a list of {role, content}) rendered with the model's chat template."),
    system_prompt: Optional[str] = typer.Option(None, "--system-prompt", help="text-generation: a system message put before each row's chat (needs a chat template)."),
    max_new_tokens: Optional[int] = typer.Option(None, "--max-new-tokens", help="generation: new tokens per row at most (default 64)."),
    temperature: Optional[float] = typer.Option(None, "--temperature", help="generation: > 0 samples (seeded per row: --seed), 0 or unset: greedy."),
    top_p: Optional[float] = typer.Option(None, "--top-p", help="generation: nucleus sampling."),
    top_k: Optional[int] = typer.Option(None, "--top-k", help="generation: top-k sampling."),
    seed: int = typer.Option(0, "--seed", help="generation: the run's seed; a row's sample depends only on it and the row id."),
    stop: Optional[List[str]] = typer.Option(None, "--stop", help="generation: stop a row at this string (not written). Repeatable."),
    num_return_sequences: Optional[int] = typer.Option(None, "--num-return-sequences", help="generation: texts per row (sampling; generated_text becomes a list)."),
    batching: str = typer.Option("auto", "--batching", help="generation: padded (length-sorted batches), continuous (transformers' continuous batching) or auto (measured)."),
    json_out: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Batch-predict a dataset with a classifier, an embedding model or a generative LM into parquet/jsonl/csv
    (streamed, resumable, shardable)."""
    from hubtune.predict import PredictOptions
    from hubtune.predict import batch_predict as run

    apply_token(token)
    result = run(
        PredictOptions(
            model=model,
            dataset=dataset,
            output=output,
            backend=backend.lower(),  # type: ignore[arg-type]
            device=None if device == "auto" else device,
            batch_size=batch_size,
            max_batch_tokens=max_batch_tokens,
            min_agreement=min_agreement,
            dtype=dtype.lower(),  # type: ignore[arg-type]
            keep_columns=[c.strip() for c in (keep_columns or "").split(",") if c.strip()],
            all_scores=all_scores,
            limit=limit,
            resume=resume,
            overwrite=overwrite,
            on_error=on_error.lower(),  # type: ignore[arg-type]
            num_shards=num_shards,
            shard_index=shard_index,
            text_column=text_column,
            text_pair_column=text_pair_column,
            label_column=label_column,
            onnx_file=onnx_file,
            chunk_size=chunk_size,
            max_length=max_length,
            long_text=long_text.lower(),  # type: ignore[arg-type]
            stride=stride,
            revision=revision,
            trust_remote_code=trust_remote_code,
            encoding=encoding,
            num_threads=threads,
            keep_parts=keep_parts,
            progress=resolve_progress(progress, json_out),
            engine=engine.lower(),  # type: ignore[arg-type]
            address=address,
            num_workers=num_workers,
            gpus_per_worker=gpus_per_worker,
            metric_modules=list(metric or []),
            task=task,
            threshold=threshold,
            normalize=normalize,
            prompt_column=prompt_column,
            messages_column=messages_column,
            system_prompt=system_prompt,
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            top_p=top_p,
            top_k=top_k,
            seed=seed,
            stop=list(stop or []),
            num_return_sequences=num_return_sequences,
            batching=batching.lower(),
        )
    )
    if result.choice:
        stderr(f"backend: {result.backend} {result.dtype} on {result.device} ({result.choice.get('reason', '')})")
    for notice in result.notices:
        stderr(f"notice: {notice}")
    if json_out:
        print_json(result)
        return
    extra = f", resumed after {result.resumed_rows}" if result.resumed_rows else ""
    typer.echo(
        f"predicted {result.rows} rows ({result.errors} errors{extra}) in {result.seconds:.1f}s "
        f"({result.rows_per_s:.1f} rows/s) with {result.backend} {result.dtype} on {result.device}"
        f"{f' (ray, {result.workers} workers)' if result.engine == 'ray' else ''} -> {result.output}"
    )
    if result.generation:
        g = result.generation
        typer.echo(f"generated {g['completion_tokens']} tokens from {g['prompt_tokens']} prompt tokens "
                   f"({g['tokens_per_s']:.1f} tokens/s)")
    if result.errors_path:
        typer.echo(f"errors: {result.errors_path}")
    if result.truncated_rows:
        typer.echo(f"truncated: {result.truncated_rows} rows lost tokens beyond --max-length (see --long-text chunk)")
    elif result.long_text.get("mode") == "chunk":
        typer.echo(f"long texts: {result.long_text.get('chunked_rows', 0)} rows scored over "
                   f"{result.long_text.get('windows', 0)} windows in all (stride {result.long_text.get('stride')})")
    if result.metrics is not None:
        typer.echo(
            f"accuracy {result.metrics['accuracy']:.4f}  f1_macro {result.metrics['f1_macro']:.4f}  -> {result.metrics_path}"
        )
        if result.metrics.get("metric_modules"):
            from hubtune.core.metric_modules import flat

            typer.echo("evaluate modules: " + "  ".join(f"{k} {v:.4f}" for k, v in flat(result.metrics["metric_modules"]).items()))


def merge_predictions(
    parts: List[str] = typer.Argument(..., help="Outputs of `batch-predict --num-shards K --shard-index i`."),
    output: str = typer.Option(..., "--output", "-o", help="preds.parquet, preds.jsonl or preds.csv."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output (once every part is checked and the new one is complete)."),
    progress: Optional[bool] = progress_option(),
    json_out: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Join sharded batch-predict outputs into one, ordered by row id (refuses overlaps, gaps, mixed models)."""
    from hubtune.predict import merge_predictions as run

    resolve_progress(progress, json_out)
    result = run(parts, output, overwrite=overwrite)
    if json_out:
        print_json(result)
        return
    typer.echo(f"merged {result.parts} parts: {result.rows} rows ({result.errors} errors) -> {result.output}")
