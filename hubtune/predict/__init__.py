"""The batch-predict step: a classifier over a (streamed) dataset into a resumable, sharded result.

Modules, lowest first (a module imports only modules above it in this list; neither engine imports the other):

``options``   :class:`PredictOptions`, :class:`PredictResult`, :class:`MergeResult`, option checks
``source``    where the model comes from (folder, run directory, Hub id) and its identity (weights sha256, revision)
``dataset``   where the rows come from: the streamed input, its columns, row count and fingerprint
``runners``   the model behind one interface (tokenizer, label_names, max_length, device, feeds -> logits):
              PyTorch or ONNX Runtime; :func:`make_runner`
``batching``  chunks of rows: validation, tokenization (in a prefetch thread), length-sorted batches -> logits
``shards``    the files of one chunk (predictions, row errors, labels for the metrics), written atomically
``output``    the manifest (resume checks), the assembly of OUTPUT and its sidecars
``merge``     ``merge-predictions``: the outputs of sharded runs joined into one, every part checked first
``local``     engine ``local``: the whole run in this process (``--num-shards`` splits it over processes)
``ray``       engine ``ray``: the same chunks on a pool of Ray actors (``pip install 'hubtune[ray]'``)

This module is the public API: :func:`batch_predict` dispatches on ``opts.engine`` (Ray is imported only for
``--engine ray``), and the names used elsewhere are re-exported here.
"""

from __future__ import annotations

import json
from typing import Any

from hubtune.core.errors import ConfigError
from hubtune.predict.batching import Chunk, run_chunk
from hubtune.predict.dataset import count_rows, dataset_fingerprint, label_feature, open_input
from hubtune.predict.local import THROTTLE_ENV, batch_predict_local
from hubtune.predict.options import (
    BACKENDS,
    DTYPES,
    ENGINES,
    OUTPUT_FORMATS,
    MergeResult,
    PredictOptions,
    PredictResult,
    check_options,
    generation_flags,
    make_result,
)
from hubtune.predict.merge import merge_predictions, read_meta
from hubtune.predict.output import (
    MANIFEST_VERSION,
    assemble,
    new_manifest,
    sidecar,
)
from hubtune.predict.runners import OnnxRunner, Runner, TorchRunner, make_runner
from hubtune.predict.shards import write_shard
from hubtune.predict.source import WEIGHT_GLOBS, model_identity, resolve_model_dir


def generation_task(opts: PredictOptions) -> tuple[Any, Any, Any]:
    """(the generation task, model folder, Hub commit) when this run generates text (``--task`` names a generation
    task, or none is given and the checkpoint's architecture is a causal LM or an encoder-decoder LM); else Nones."""
    from hubtune.tasks.base import checkpoint_task
    from hubtune.tasks.registry import find_task

    asked = find_task(opts.task)
    if opts.task is not None and (asked is None or not asked.generates):
        return None, None, None
    model_dir, commit = resolve_model_dir(opts.model, revision=opts.revision, backend="torch")
    if asked is None:
        try:
            cfg = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None, None, None
        asked = find_task(checkpoint_task(cfg, model_dir).task)
        if asked is None or not asked.generates:
            return None, None, None
    return asked, model_dir, commit


def batch_predict(opts: PredictOptions) -> PredictResult:
    """Predict every row of ``opts.dataset`` into ``opts.output`` (resumable; see :mod:`hubtune.predict.output`
    for the files). ``opts.engine == "ray"`` runs the same runners and shard files on a pool of Ray actors."""
    if opts.metric_modules:  # loaded before any row is read: a bad --metric fails first
        from hubtune.core.metric_modules import load_metric_modules

        load_metric_modules(opts.metric_modules)
    check_options(opts)
    task, model_dir, commit = generation_task(opts)
    if task is not None:
        from hubtune.predict.generate import batch_generate

        return batch_generate(opts, task, model_dir, commit)
    flags = generation_flags(opts)
    if flags or opts.backend == "vllm":
        raise ConfigError(
            f"{', '.join(flags) or '--backend vllm'} generate text, and model {opts.model}'s task is "
            f"{opts.task or 'a classifier'}; expected a text-generation or text2text-generation model (or --task): "
            f"drop {', '.join(flags) or '--backend vllm'}")
    if opts.engine == "ray":
        from hubtune.predict.ray import batch_predict_ray

        return batch_predict_ray(opts)
    return batch_predict_local(opts)


__all__ = [
    "PredictOptions",
    "PredictResult",
    "MergeResult",
    "batch_predict",
    "merge_predictions",
    "read_meta",
    "resolve_model_dir",
    "model_identity",
    "run_chunk",
    "make_runner",
    "write_shard",
    "assemble",
]
