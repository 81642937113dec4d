"""``hubtune env``: what hubtune sees on this machine."""

from __future__ import annotations

import typer


def env(json_out: bool = typer.Option(False, "--json", help="Print the result as JSON.")) -> None:
    """Print libraries, torch and its CUDA, GPUs, ONNX Runtime providers, CPU flags and the fast path."""
    from hubtune.cli._common import print_json
    from hubtune.core.envinfo import describe

    info = describe()
    if json_out:
        print_json(info)
        return
    libs = ", ".join(f"{k} {v or '-'}" for k, v in info["libraries"].items())
    t, o, c, fp = info["torch"], info["onnxruntime"], info["cpu"], info["fast_path"]
    typer.echo(f"hubtune {info['hubtune']} on Python {info['python']}: {libs}")
    typer.echo(f"cpu: {c['model']}, {c['cores']} cores; " + ", ".join(f"{k}={'yes' if v else 'no'}" for k, v in c["flags"].items()))
    if t.get("installed"):
        typer.echo(f"torch {t['version']} (CUDA {t['cuda'] or 'none'}), cuda available: {t['cuda_available']}, AMX: {t['cpu_amx']}")
    for g in t.get("gpus", []):
        typer.echo(f"gpu {g['index']}: {g['name']}, {g['memory_gib']} GiB, compute {g['capability']}, bf16 {g['bf16']}")
    typer.echo(f"onnxruntime {o.get('version', '-')}: providers {', '.join(o.get('providers') or []) or 'none'}")
    typer.echo(f"fast path: backend {fp['backend']}, dtype {fp['dtype']}, device {fp['device']} ({fp['reason']})")
