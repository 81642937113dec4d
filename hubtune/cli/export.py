"""``hubtune export``: imports only typer and the stdlib at import time."""

from __future__ import annotations

from typing import Optional

import typer

from hubtune.cli._common import progress_option, token_option


def export(
    model_dir: str = typer.Argument(..., help="A model folder, a run directory (uses merged/ for LoRA, model/ for full), a Hub id or packaged:minilm (these two need --output)."),
    output: Optional[str] = typer.Option(None, "--output", "-o", help="ONNX folder [default: MODEL_DIR/onnx]."),
    optimize: Optional[str] = typer.Option(None, "--optimize", help="Also an ORT-optimized variant: O1, O2 or O3."),
    quantize: Optional[str] = typer.Option(None, "--quantize", help="Also an int8 variant: int8 (dynamic int8, or weight-only int8 where dynamic changes labels; refused when neither faster nor smaller than fp32)."),
    eval_dataset: Optional[str] = typer.Option(
        None, "--eval-dataset", help="Labeled examples for the gates [default: the run's held-out examples]; an embedding model needs only texts [default: built-in reference texts]."
    ),
    tolerance: float = typer.Option(1e-4, "--tolerance", help="fp32 gate: max |logit diff| vs PyTorch, times the logits' scale above 1: <= tolerance x max(1, max |logit|)."),
    max_accuracy_drop: float = typer.Option(
        0.5, "--max-accuracy-drop", help="Variant gate: accuracy points an optimized/int8 variant may lose."
    ),
    min_cosine: float = typer.Option(
        0.99, "--min-cosine", help="Embedding models, variant gate: mean cosine of an optimized/int8 variant's embeddings with PyTorch's."
    ),
    min_neighbour_overlap: float = typer.Option(
        0.8, "--min-neighbour-overlap", help="Embedding models, variant gate: overlap of each text's top-10 neighbours with PyTorch's."
    ),
    max_examples: int = typer.Option(1000, "--max-examples", help="Examples used by the gates."),
    bench_rows: int = typer.Option(128, "--bench-rows", help="Rows for the CPU throughput measure."),
    opset: Optional[int] = typer.Option(None, "--opset", help="ONNX opset [default: 18, as Optimum]."),
    exporter: str = typer.Option(
        "auto", "--exporter", help="auto (Optimum's exporter where optimum-onnx is installed, else torch.onnx), optimum or torch."
    ),
    openvino: bool = typer.Option(
        False, "--openvino", help="Also OpenVINO's IR of the fp32 graph in MODEL_DIR/openvino (optimum-intel's layout), through the same gate."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing ONNX (and OpenVINO) folder."),
    progress: Optional[bool] = progress_option(),
    token: Optional[str] = token_option(),
    json_out: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Export to ONNX (+ optional O1-O3 / int8 variants) in MODEL_DIR/onnx (+ OpenVINO's IR in MODEL_DIR/openvino), each checked against PyTorch."""
    from hubtune.cli._common import apply_token, print_json, resolve_progress, stderr
    from hubtune.publish.export import ExportOptions, export as run_export

    show = resolve_progress(progress, json_out)
    apply_token(token)
    res = run_export(
        ExportOptions(
            source=model_dir,
            output=output,
            optimize=optimize,
            quantize=quantize,
            eval_dataset=eval_dataset,
            tolerance=tolerance,
            max_accuracy_drop_pt=max_accuracy_drop,
            min_variant_cosine=min_cosine,
            min_neighbour_overlap=min_neighbour_overlap,
            max_examples=max_examples,
            bench_rows=bench_rows,
            opset=opset,
            exporter=exporter,
            overwrite=overwrite,
            openvino=openvino,
        ),
        progress=(lambda m: stderr(f"[export] {m}")) if show else None,
    )
    if json_out:
        print_json(res)
        return
    typer.echo(
        f"ONNX written to {res.output_dir} by {res.exporter} (checked on {res.num_examples} examples from {res.eval_source})"
    )
    from hubtune.publish.variant_claims import INT8_KINDS, size_phrase, speed_phrase

    typer.echo(f"{'variant':<12} {'file':<28} {'MB':>8} {'rows/s':>8} {'vs fp32':>8} {'max diff':>10} {'agree':>7} {'acc':>7}")
    for v in list(res.variants.values()) + list(res.refused.values()):
        p = v.parity
        acc = v.metrics.get("accuracy") if v.metrics else None
        ratio = (v.claims or {}).get("speed_ratio")
        typer.echo(
            f"{v.name:<12} {(v.file or 'REFUSED'):<28} {v.size_mb:>8.2f} "
            f"{(v.throughput or {}).get('rows_per_s') or '-':>8} {(f'{ratio:.2f}x' if ratio else '-'):>8} "
            f"{(f'{p.max_abs_diff:.2e}' if p else '-'):>10} {(f'{p.label_agreement:.1%}' if p else '-'):>7} "
            f"{(f'{acc:.4f}' if acc is not None else '-'):>7}"
        )
    for v in list(res.variants.values()) + list(res.refused.values()):  # what each int8 file is, as measured
        if v.claims and v.claims.get("kind") in INT8_KINDS:
            typer.echo(f"{v.name}: {INT8_KINDS[v.claims['kind']]}; {size_phrase(v.claims)}; {speed_phrase(v.claims)}"
                       + (" (REFUSED)" if v.file is None else ""))
    for v in res.refused.values():
        stderr(f"warning: {v.name} refused and removed: {v.reason}")
