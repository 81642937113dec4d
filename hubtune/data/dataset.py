"""The data step: one dataset-spec syntax for every command.

Spec forms
    ``imdb:test``, ``glue:mrpc:validation``, ``stanfordnlp/imdb:train``  Hub datasets (name[:config]:split)
    ``data/tweets.csv``, ``x.tsv``, ``x.jsonl``, ``x.json``, ``x.parquet``  local files
    ``data/dir/``                                                       a directory of such files

Every loader returns a :class:`LoadedData`: a ``datasets.Dataset`` with the columns ``text``,
optionally ``text_pair``, and ``label`` (an integer id), plus the label names in id order.
"""

from __future__ import annotations

import codecs
import difflib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Literal, Sequence

from hubtune.core.endpoint import check_reachable, describe_endpoint, whole_sentences
from hubtune.core.errors import (
    ColumnNotFoundError,
    DataEncodingError,
    DataError,
    DatasetNotFoundError,
    EmptyDatasetError,
    LabelError,
)
from hubtune.data.labels import check_ids_name_classes, check_labels_present, infer_label_names, is_missing, to_ids

if TYPE_CHECKING:  # pragma: no cover
    import datasets

LOCAL_FORMATS = {".csv": "csv", ".tsv": "csv", ".jsonl": "json", ".json": "json", ".parquet": "parquet"}
TEXT_CANDIDATES = (
    "text", "sentence", "review", "content", "document", "tweet", "body", "comment",
    "utterance", "sentence1", "premise", "question", "text_a", "input",
)
PAIR_CANDIDATES = {"sentence1": "sentence2", "premise": "hypothesis", "text_a": "text_b", "question": "sentence", "text": "text_pair"}
LABEL_CANDIDATES = ("label", "labels", "sentiment", "class", "category", "target", "polarity", "emotion", "y")


@dataclass(frozen=True)
class DatasetSpec:
    """A parsed dataset spec."""

    raw: str
    kind: Literal["hub", "local"]
    path: str
    config: str | None = None
    split: str | None = None

    @property
    def display(self) -> str:
        return self.raw


@dataclass(frozen=True)
class ColumnMap:
    text: str
    label: str | None
    text_pair: str | None = None


@dataclass
class LoadedData:
    """Examples with normalised columns ``text`` [``text_pair``] ``label`` and the label names in id order."""

    dataset: "datasets.Dataset"
    label_names: list[str]
    columns: ColumnMap
    source: str

    def __len__(self) -> int:
        return len(self.dataset)

    @property
    def has_pair(self) -> bool:
        return "text_pair" in self.dataset.column_names


@dataclass
class TrainEvalData:
    train: LoadedData
    eval: LoadedData
    label_names: list[str]
    eval_source: str = "validation_split"
    sizes: dict[str, int] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------------
# Spec parsing
# --------------------------------------------------------------------------------------------------
def _looks_local(spec: str) -> bool:
    if spec.startswith(("/", "./", "../", "~")) or os.sep in spec and os.path.exists(os.path.expanduser(spec)):
        return True
    if os.path.exists(os.path.expanduser(spec)):
        return True
    return Path(spec).suffix.lower() in LOCAL_FORMATS


def parse_spec(spec: str, default_split: str | None = None) -> DatasetSpec:
    """Parse ``name[:config]:split`` (Hub) or a local file/directory path."""
    raw = spec.strip()
    if not raw:
        raise DataError("empty dataset spec; expected name[:config]:split or a local file, e.g. --dataset imdb:test")
    if _looks_local(raw):
        return DatasetSpec(raw=raw, kind="local", path=str(Path(os.path.expanduser(raw))), split=default_split)
    parts = raw.split(":")
    if len(parts) > 3 or any(not p for p in parts):
        raise DataError(
            f"dataset spec {raw!r} is malformed; expected name[:config]:split such as imdb:test or glue:mrpc:validation"
        )
    name = parts[0]
    if name.count("/") > 1 or name.startswith("/") or ".." in name:
        raise DataError(f"dataset id {name!r} is malformed; expected 'name' or 'org/name'")
    if len(parts) == 1:
        return DatasetSpec(raw=raw, kind="hub", path=name, split=default_split)
    if len(parts) == 2:
        return DatasetSpec(raw=raw, kind="hub", path=name, split=parts[1])
    return DatasetSpec(raw=raw, kind="hub", path=name, config=parts[1], split=parts[2])


# --------------------------------------------------------------------------------------------------
# Raw loading
# --------------------------------------------------------------------------------------------------
def local_files(path: Path) -> tuple[str, list[str], dict[str, Any]]:
    if not path.exists():
        raise DatasetNotFoundError(
            f"dataset file {path} does not exist; pass an existing file or directory, or a Hub id such as imdb:test"
        )
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in LOCAL_FORMATS)
        if not files:
            raise DatasetNotFoundError(
                f"directory {path} holds no data files; expected {', '.join(sorted(LOCAL_FORMATS))} files"
            )
        suffixes = {p.suffix.lower() for p in files}
        builders = {LOCAL_FORMATS[s] for s in suffixes}
        if len(builders) > 1 or suffixes == {".csv", ".tsv"}:
            raise DataError(
                f"directory {path} mixes formats ({', '.join(sorted(suffixes))}); expected files of one format"
            )
        suffix = suffixes.pop()
    else:
        suffix = path.suffix.lower()
        if suffix not in LOCAL_FORMATS:
            raise DataError(
                f"file {path} has an unknown format {suffix or '(no extension)'!r}; "
                f"expected one of {', '.join(sorted(LOCAL_FORMATS))}"
            )
        files = [path]
    kwargs: dict[str, Any] = {}
    if suffix == ".tsv":
        kwargs["sep"] = "\t"
    return LOCAL_FORMATS[suffix], [str(f) for f in files], kwargs


def check_encoding(files: Sequence[str], encoding: str) -> None:
    """Fail fast, naming the option, when a text file does not decode with ``encoding``."""
    for f in files:
        if f.endswith(".parquet"):
            continue
        decoder = codecs.getincrementaldecoder(encoding)()
        offset = 0
        with open(f, "rb") as fh:
            while chunk := fh.read(1 << 20):
                try:
                    decoder.decode(chunk)
                except UnicodeDecodeError as exc:
                    raise DataEncodingError(
                        f"file {f} is not valid {encoding} (byte {offset + exc.start}); "
                        "expected UTF-8 text: re-save it as UTF-8 or pass --encoding (e.g. --encoding latin-1)"
                    ) from None
                offset += len(chunk)
            try:
                decoder.decode(b"", final=True)
            except UnicodeDecodeError:
                raise DataEncodingError(
                    f"file {f} ends inside a multi-byte {encoding} character; re-save it or pass --encoding"
                ) from None


def check_json_lines(files: Sequence[str]) -> None:
    """A JSON Lines file (``.jsonl``, or a ``.json`` that is not one JSON document) must hold one JSON object on
    every non-blank line: the first bad line is named (pyarrow's reader names neither file nor line)."""
    import json

    for f in files:
        with open(f, "rb") as fh:
            head = fh.read(1024).lstrip()
        if not f.endswith(".jsonl") and head[:1] == b"[":
            continue  # one JSON array: the builder reads it whole and names its own errors
        with open(f, encoding="utf-8", errors="replace") as fh:
            for number, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except ValueError as exc:
                    if number == 1 and not f.endswith(".jsonl"):
                        break  # a .json holding one pretty-printed document
                    raise DataError(
                        f"{f}: line {number} is not valid JSON ({exc.msg.removesuffix(' at')} at column {exc.colno}); expected one JSON "
                        "object per line (JSON Lines): fix or remove that line"
                    ) from None
                if not isinstance(row, dict):
                    raise DataError(
                        f"{f}: line {number} holds a JSON {type(row).__name__}, not an object; expected one JSON "
                        'object per line, e.g. {"text": "...", "label": "..."}'
                    )


def open_dataset(
    spec: DatasetSpec | str,
    *,
    encoding: str = "utf-8",
    streaming: bool = False,
    revision: str | None = None,
    default_split: str = "train",
) -> "datasets.Dataset | datasets.IterableDataset":
    """Open a spec as a ``datasets`` (Iterable)Dataset with its original columns; streamed local files as a
    :class:`hubtune.data.stream.LocalStream` (pyarrow alone: no ``datasets``, pandas or torch import)."""
    if isinstance(spec, str):
        spec = parse_spec(spec)
    if spec.kind == "local":
        builder, files, kwargs = local_files(Path(spec.path))
        text_encoding = encoding
        if builder == "csv":
            check_encoding(files, encoding)
            kwargs.update(encoding=encoding, keep_default_na=False, na_values=[""])
        elif builder == "json":
            text_encoding = "utf-8" if encoding.lower().replace("_", "-") in ("utf-8", "utf8") else encoding
            check_encoding(files, text_encoding)
            check_json_lines(files)
        if all(_blank_file(f) for f in files):
            raise EmptyDatasetError(f"dataset {spec.path} has no rows (the file is empty); expected at least one example")
        if streaming:
            from hubtune.data.stream import open_local_stream

            stream = open_local_stream(builder, files, kwargs, text_encoding)
            if stream is not None:
                return stream
        import datasets

        datasets.logging.set_verbosity(datasets.logging.CRITICAL)  # a failed read is reported once, by hubtune
        try:
            return datasets.load_dataset(builder, data_files=files, split="train", streaming=streaming, **kwargs)
        except DataError:
            raise
        except Exception as exc:  # the builders raise many types for unreadable files
            if "corresponds to no data" in str(exc) or isinstance(exc, StopIteration):
                raise EmptyDatasetError(
                    f"dataset {spec.path} has no rows; expected at least one example"
                ) from None
            if builder == "csv" and "tokenizing" in str(exc):
                from hubtune.data.stream import csv_error

                raise csv_error(files, kwargs.get("sep", ","), encoding, exc) from None
            raise DataError(
                f"could not read {spec.path} as {builder} ({type(exc).__name__}: {_short(exc)}); "
                "expected a well-formed file of that format"
            ) from exc
    import datasets

    datasets.logging.set_verbosity(datasets.logging.CRITICAL)
    split = spec.split or default_split
    check_reachable(f"dataset {spec.path!r}")
    path = spec.path if "/" in spec.path else canonical_dataset_id(spec.path)
    try:
        return datasets.load_dataset(path, spec.config, split=split, streaming=streaming, revision=revision)
    except Exception as exc:
        raise _hub_dataset_error(spec, split, exc) from exc


def canonical_dataset_id(name: str) -> str:
    """A canonical (single-name) Hub id such as ``imdb`` -> the org repo the Hub serves it from (stanfordnlp/imdb).

    The Hub answers a canonical id with the full one; current huggingface_hub addresses files by
    ``namespace/name`` only. Offline or not found, the name goes on as is and the load reports it.
    """
    from huggingface_hub import HfApi

    try:
        full = HfApi().dataset_info(name).id
    except Exception:  # noqa: BLE001 - the load that follows reports what is wrong
        return name
    return full if isinstance(full, str) and "/" in full else name


def _blank_file(path: str) -> bool:
    """Empty, or only whitespace (looked at when small)."""
    size = os.path.getsize(path)
    if size > 65536:
        return False
    with open(path, "rb") as fh:
        return not fh.read().strip()


def _short(exc: BaseException, limit: int = 200) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _hub_dataset_error(spec: DatasetSpec, split: str, exc: Exception) -> DataError:
    from datasets.exceptions import DatasetNotFoundError as HFDatasetNotFound

    text = whole_sentences(str(exc))
    if isinstance(exc, HFDatasetNotFound) or "doesn't exist" in text or "not found" in text.lower():
        return DatasetNotFoundError(
            f"dataset {spec.path!r} was not found on {describe_endpoint()}; expected an existing dataset repo: "
            "check the id, HF_ENDPOINT and HF_TOKEN, or pass a local file to --dataset"
        )
    if "Unknown split" in text or ("split" in text.lower() and split in text):
        return DataError(f"dataset {spec.path!r} has no split {split!r} ({text}); pick one in the spec, e.g. {spec.path}:test")
    if "config" in text.lower() and spec.config:
        return DataError(f"dataset {spec.path!r} has no config {spec.config!r} ({text}); fix name:config:split in --dataset")
    return DataError(
        f"could not load dataset {spec.raw!r} from {describe_endpoint()} ({type(exc).__name__}: {text}); "
        "check the spec and HF_ENDPOINT"
    )


# --------------------------------------------------------------------------------------------------
# Columns and labels
# --------------------------------------------------------------------------------------------------
def _missing_column(kind: str, wanted: str, available: Sequence[str], flag: str) -> ColumnNotFoundError:
    close = difflib.get_close_matches(wanted, list(available), n=1, cutoff=0.4)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return ColumnNotFoundError(
        f"{kind} column '{wanted}' not found; the dataset has columns: {', '.join(available) or '(none)'}{hint} "
        f"(set it with {flag})"
    )


def resolve_columns(
    available: Sequence[str],
    *,
    text_column: str | None = None,
    text_pair_column: str | None = None,
    label_column: str | None = None,
    require_label: bool = True,
) -> ColumnMap:
    """Pick the text/pair/label columns: the override when given, else the first known name."""
    cols = list(available)
    lower = {c.lower(): c for c in cols}
    if text_column:
        if text_column not in cols:
            raise _missing_column("text", text_column, cols, "--text-column")
        text = text_column
    else:
        text = next((lower[c] for c in TEXT_CANDIDATES if c in lower), None)
        if text is None:
            raise ColumnNotFoundError(
                f"no text column found among: {', '.join(cols) or '(none)'}; expected one of "
                f"{', '.join(TEXT_CANDIDATES[:6])}, ... (set it with --text-column)"
            )
    if text_pair_column:
        if text_pair_column not in cols:
            raise _missing_column("text pair", text_pair_column, cols, "--text-pair-column")
        pair = text_pair_column
    else:
        cand = PAIR_CANDIDATES.get(text.lower())
        pair = lower.get(cand) if cand and text.lower() != "text" else None
        if text.lower() == "text" and "text_pair" in lower:
            pair = lower["text_pair"]
    label: str | None
    if label_column:
        if label_column not in cols:
            raise _missing_column("label", label_column, cols, "--label-column")
        label = label_column
    else:
        label = next((lower[c] for c in LABEL_CANDIDATES if c in lower), None)
        if label is None and require_label:
            raise ColumnNotFoundError(
                f"no label column found among: {', '.join(cols) or '(none)'}; expected one of "
                f"{', '.join(LABEL_CANDIDATES[:6])}, ... (set it with --label-column)"
            )
    return ColumnMap(text=text, label=label, text_pair=pair)


def check_texts(texts: Sequence[Any], column: str, source: str) -> None:
    """Refuse rows whose text is empty or not a string (named by the first such row)."""
    bad = [i for i, t in enumerate(texts) if not isinstance(t, str) or not t.strip()]
    if bad:
        raise DataError(
            f"{source}: {len(bad)} rows have an empty or non-string '{column}' (first at row {bad[0]}); "
            "expected text in every row: clean the data or pick another --text-column"
        )


def normalise(
    ds: "datasets.Dataset",
    *,
    source: str,
    text_column: str | None = None,
    text_pair_column: str | None = None,
    label_column: str | None = None,
    label_names: list[str] | None = None,
    require_label: bool = True,
) -> LoadedData:
    """Rename to ``text``/``text_pair``/``label`` (ids) and validate. ``label_names`` fixes the id order."""
    if len(ds) == 0:
        raise EmptyDatasetError(f"dataset {source} has no rows; expected at least one example (check the spec or --limit)")
    cols = resolve_columns(
        ds.column_names,
        text_column=text_column,
        text_pair_column=text_pair_column,
        label_column=label_column,
        require_label=require_label,
    )
    texts = ds[cols.text]
    check_texts(texts, cols.text, source)
    keep = {cols.text: "text"}
    if cols.text_pair:
        keep[cols.text_pair] = "text_pair"
    label_ids: list[int] | None = None
    names = list(label_names) if label_names else []
    if cols.label is not None:
        raw = ds[cols.label]
        missing = [i for i, v in enumerate(raw) if is_missing(v)]
        if missing:
            raise LabelError(
                f"{source}: {len(missing)} rows have no label in '{cols.label}' (NaN/None/empty, first at row {missing[0]}); "
                "expected a label in every row: drop those rows or pick another --label-column"
            )
        nested = next((v for v in raw if isinstance(v, (list, tuple, dict))), None)
        if nested is not None:
            raise LabelError(
                f"{source}: label column '{cols.label}' holds {type(nested).__name__}s (e.g. {nested!r:.60}), several "
                "labels per row: that is multi-label classification; expected one label per row (a name or an "
                "integer id) for this task: train it with --task multi-label-classification, or pick another "
                "--label-column"
            )
        frac = next((v for v in raw if isinstance(v, float) and not v.is_integer()), None)
        if frac is not None and not names:  # 0.75 is no class name: a score to regress on
            raise LabelError(f"{source}: label column '{cols.label}' holds fractional numbers (e.g. {frac!r}), not classes; "
                             "expected class names or integer ids: train it with --task regression, or pick another --label-column")
        feature = ds.features.get(cols.label)
        if names:
            check_ids_name_classes(raw, feature, names, source)
        else:
            names = infer_label_names(raw, feature)
        label_ids = to_ids(raw, feature, names, source, "train on data that has them, or fix --label-column")
    out = ds.select_columns(list(keep)).rename_columns(keep)
    if label_ids is not None:
        out = _without_bars(lambda: out.add_column("label", label_ids))
    return LoadedData(dataset=out, label_names=names, columns=cols, source=source)


def _without_bars(step: Any) -> Any:
    """An internal datasets step (``add_column`` rewrites a shuffled dataset's indices) without its own bar."""
    import datasets

    was_on = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        return step()
    finally:
        if was_on:
            datasets.enable_progress_bars()


# --------------------------------------------------------------------------------------------------
# Public loaders
# --------------------------------------------------------------------------------------------------
def _check_source_labels(ds: "datasets.Dataset", source: str, text_column: str | None, text_pair_column: str | None,
                         label_column: str | None, require_label: bool = True) -> None:
    """Before any shuffle or --limit: rows without a label, named by their place in the source."""
    if len(ds) == 0:
        return
    cols = resolve_columns(ds.column_names, text_column=text_column, text_pair_column=text_pair_column,
                           label_column=label_column, require_label=require_label)
    for column in filter(None, (cols.text, cols.text_pair)):
        bad = [i for i, t in enumerate(ds[column]) if not isinstance(t, str) or not t.strip()]
        if bad:
            shown = ", ".join(str(i + 1) for i in bad[:10]) + (f" and {len(bad) - 10} more" if len(bad) > 10 else "")
            raise DataError(
                f"{source}: {len(bad)} row(s) have an empty or non-string '{column}' at data row(s) {shown} (counted "
                "from 1, after any header); expected text in every row: clean the data or pick another --text-column"
            )
    check_labels_present(ds, cols.label, source)


def limit_rows(ds: "datasets.Dataset", n: int | None, seed: int) -> "datasets.Dataset":
    """``ds`` shuffled by ``seed``, at most ``n`` rows of it (all when ``n`` is None)."""
    ds = ds.shuffle(seed=seed)
    if n is not None and n < len(ds):
        ds = ds.select(range(n))
    return ds


def load_labeled(
    spec: str,
    *,
    text_column: str | None = None,
    text_pair_column: str | None = None,
    label_column: str | None = None,
    label_names: list[str] | None = None,
    max_samples: int | None = None,
    seed: int = 42,
    encoding: str = "utf-8",
    default_split: str = "test",
    require_label: bool = True,
    revision: str | None = None,
) -> LoadedData:
    """Load one spec, normalised. With ``label_names`` (e.g. a model's), labels map onto those ids."""
    parsed = parse_spec(spec)
    ds = open_dataset(parsed, encoding=encoding, default_split=default_split, revision=revision)
    _check_source_labels(ds, spec, text_column, text_pair_column, label_column, require_label)
    if max_samples is not None:
        ds = limit_rows(ds, max_samples, seed)
    return normalise(
        ds,
        source=spec,
        text_column=text_column,
        text_pair_column=text_pair_column,
        label_column=label_column,
        label_names=label_names,
        require_label=require_label,
    )


def load_train_eval(cfg: Any) -> TrainEvalData:
    """Train and eval examples for a :class:`hubtune.core.config.DataConfig`.

    Shuffling is deterministic by ``cfg.seed``; a validation split is carved out (stratified) when
    ``cfg.eval_dataset`` is not given.
    """
    ds = open_dataset(parse_spec(cfg.dataset), encoding=cfg.encoding, default_split="train")
    if len(ds) == 0:
        raise EmptyDatasetError(f"dataset {cfg.dataset} has no rows; expected at least one example")
    _check_source_labels(ds, cfg.dataset, cfg.text_column, cfg.text_pair_column, cfg.label_column)
    ds = limit_rows(ds, cfg.max_samples, cfg.seed)
    train = normalise(
        ds,
        source=cfg.dataset,
        text_column=cfg.text_column,
        text_pair_column=cfg.text_pair_column,
        label_column=cfg.label_column,
    )
    if len(train.label_names) < 2:
        raise LabelError(
            f"{cfg.dataset} has {len(train.label_names)} distinct label(s) ({', '.join(train.label_names)}); "
            "expected at least 2 classes to train a classifier (check --label-column or --limit)"
        )
    if cfg.eval_dataset:
        ev_raw = open_dataset(parse_spec(cfg.eval_dataset), encoding=cfg.encoding, default_split="validation")
        _check_source_labels(ev_raw, cfg.eval_dataset, cfg.text_column, cfg.text_pair_column, cfg.label_column)
        ev_raw = limit_rows(ev_raw, cfg.eval_max_samples, cfg.seed)
        ev = normalise(
            ev_raw,
            source=cfg.eval_dataset,
            text_column=cfg.text_column,
            text_pair_column=cfg.text_pair_column,
            label_column=cfg.label_column,
            label_names=train.label_names,
        )
        eval_source = cfg.eval_dataset
    else:
        full = train.dataset
        if len(full) < 4:
            raise EmptyDatasetError(
                f"dataset {cfg.dataset} has {len(full)} rows, too few to carve a validation split; "
                "expected at least 4 rows or pass --eval-dataset"
            )
        from datasets import ClassLabel

        full = full.cast_column("label", ClassLabel(names=train.label_names))
        try:
            parts = full.train_test_split(test_size=cfg.validation_split, seed=cfg.seed, stratify_by_column="label")
        except ValueError:  # a class too small to stratify
            parts = full.train_test_split(test_size=cfg.validation_split, seed=cfg.seed)
        train = LoadedData(parts["train"], train.label_names, train.columns, cfg.dataset)
        ev = LoadedData(parts["test"], train.label_names, train.columns, f"{cfg.dataset} (validation_split={cfg.validation_split})")
        if cfg.eval_max_samples is not None and cfg.eval_max_samples < len(ev):
            ev.dataset = ev.dataset.select(range(cfg.eval_max_samples))
        eval_source = "validation_split"
    if len(ev) == 0:
        raise EmptyDatasetError(f"evaluation data {ev.source} has no rows; expected at least one example")
    sizes = {"train": len(train), "eval": len(ev)}
    return TrainEvalData(train=train, eval=ev, label_names=train.label_names, eval_source=eval_source, sizes=sizes)


def iter_texts(data: LoadedData) -> Iterable[str]:
    return iter(data.dataset["text"])

