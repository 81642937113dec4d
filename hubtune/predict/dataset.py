"""Where the rows come from: the input dataset opened streaming (:mod:`hubtune.data.dataset` specs), its columns
resolved and checked (``--keep-columns``), its rows counted (for ``--num-shards``) and fingerprinted (what a
resume and ``merge-predictions`` compare)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from hubtune.core.errors import ColumnNotFoundError, ConfigError, EmptyDatasetError
from hubtune.predict.options import PredictOptions


def label_feature(ds: Any, label_column: str | None) -> Any:
    """The ``datasets`` feature of the label column (a ClassLabel carries names), or None."""
    try:
        feats = getattr(ds, "features", None)
        return feats.get(label_column) if feats and label_column else None
    except Exception:  # noqa: BLE001 - streaming datasets may not know their features
        return None


def first_columns(ds: Any) -> list[str]:
    cols = getattr(ds, "column_names", None)
    if cols:
        return list(cols)
    for row in ds.take(1):
        return list(row.keys())
    return []


def open_input(opts: PredictOptions) -> tuple[Any, Any, Any, list[str]]:
    """(spec, streamed dataset, resolved columns, kept columns) of ``opts.dataset``; validates --keep-columns."""
    from hubtune.data.dataset import open_dataset, parse_spec, resolve_columns

    spec = parse_spec(opts.dataset)
    ds = open_dataset(spec, streaming=True, encoding=opts.encoding, default_split="test", revision=opts.revision if spec.kind == "hub" else None)
    available = first_columns(ds)
    if not available:
        raise EmptyDatasetError(f"dataset {opts.dataset} has no rows; expected at least one row to predict")
    cols = resolve_columns(
        available,
        text_column=opts.text_column,
        text_pair_column=opts.text_pair_column,
        label_column=opts.label_column,
        require_label=False,
    )
    keep = [c.strip() for c in opts.keep_columns if c and c.strip()]
    for c in keep:
        if c not in available:
            raise ColumnNotFoundError(
                f"--keep-columns names '{c}', which is not in the dataset; it has columns: {', '.join(available)} "
                "(fix --keep-columns)"
            )
        if c in ("row_id", "label", "score"):
            raise ConfigError(f"--keep-columns '{c}' clashes with an output column (row_id, label, score); drop it")
    return spec, ds, cols, keep


def count_rows(ds: Any, spec: Any, text_col: str) -> int:
    """Rows in a streamed dataset: split metadata or parquet footers when available, else one counting pass."""
    info = getattr(ds, "info", None)
    splits = getattr(info, "splits", None) if info is not None else None
    if splits and spec.kind == "hub":
        split = spec.split or "train"
        if split in splits and splits[split].num_examples:
            return int(splits[split].num_examples)
    if spec.kind == "local":
        from hubtune.data.dataset import local_files

        builder, files, _ = local_files(Path(spec.path))
        if builder == "parquet":
            import pyarrow.parquet as pq

            return sum(pq.ParquetFile(f).metadata.num_rows for f in files)
    n = 0
    for batch in ds.select_columns([text_col]).iter(batch_size=8192):
        n += len(batch[text_col])
    return n


def _hub_revision(repo_id: str, revision: str | None) -> str | None:
    """The commit sha a Hub dataset's revision resolves to, or None when the Hub cannot be asked."""
    try:
        from huggingface_hub import HfApi

        return HfApi().dataset_info(repo_id, revision=revision).sha
    except Exception:  # noqa: BLE001 - offline / cached: the split metadata stands in
        return None


def dataset_fingerprint(spec: Any, ds: Any, revision: str | None) -> str:
    """Identity of the data: every byte of the local files (hashed while streaming), or the Hub dataset's resolved
    revision (the commit sha; the split metadata when the Hub cannot be asked), plus the first rows."""
    h = hashlib.sha256()
    h.update(json.dumps({"kind": spec.kind, "path": spec.path, "config": spec.config, "split": spec.split, "rev": revision}).encode())
    if spec.kind == "local":
        from hubtune.data.dataset import local_files

        _, files, _ = local_files(Path(spec.path))
        for f in files:
            size = os.path.getsize(f)
            h.update(f"{os.path.basename(f)}:{size}".encode())
            with open(f, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 22), b""):
                    h.update(block)
    else:
        sha = _hub_revision(spec.path, revision)
        if sha:
            h.update(f"sha:{sha}".encode())
        info = getattr(ds, "info", None)
        if info is not None:
            h.update(repr(getattr(info, "splits", None)).encode())
            h.update(repr(getattr(info, "download_checksums", None)).encode())
    for row in ds.take(64):
        h.update(repr(sorted(row.items())).encode())
    return h.hexdigest()
