"""Local files streamed with pyarrow alone: what a streaming ``datasets`` load of a local csv / tsv / jsonl / JSON
array / parquet file answers (``column_names``, ``features``, ``select_columns``, ``skip``, ``take``,
``iter(batch_size)``, rows), without importing ``datasets`` (which imports pandas, and torch where torch is
installed: seconds of start-up before batch-predict's first batch).

Values are what Arrow reads: a CSV's empty cell is None, numbers are numbers (CSV types are inferred from the
first block of a file; dates and times stay text), a JSON line's values as JSON has them. A parquet file written
by ``datasets`` keeps its ClassLabel names (``features[col].names``). A malformed CSV is a DataError naming the
file, the line and the fix.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

from hubtune.core.errors import DataError

BLOCK_BYTES = 1 << 22  # CSV / JSON Lines bytes parsed at once (CSV types are inferred from the first block)
JSON_ROWS = 4096  # JSON Lines rows per Arrow batch


@dataclass(frozen=True)
class NamedLabels:
    """A label column's class names (what ``datasets.ClassLabel.names`` gives the label mapping)."""

    names: list[str]


def _short(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def unreadable(path: str, builder: str, exc: BaseException) -> DataError:
    """A file pyarrow cannot read as ``builder``: one line naming it, what pyarrow said and what is expected."""
    return DataError(
        f"could not read {path} as {builder} ({type(exc).__name__}: {_short(str(exc))}): the file is corrupt or not a "
        f"{builder} file; expected a well-formed {builder} file: re-export it, or pass the right file with --dataset"
    )


def csv_problem(path: str, delimiter: str, encoding: str) -> str | None:
    """Where a CSV stops being one: 'line N has K fields, the header has H' for the first such record, or None."""
    with open(path, encoding=encoding, errors="replace", newline="") as fh:
        reader = csv.reader(fh, delimiter=delimiter)
        header = next(reader, None)
        if header is None:
            return None
        for record in reader:
            if record and len(record) != len(header):
                return f"line {reader.line_num} has {len(record)} fields, the header has {len(header)}"
    return None


def csv_error(files: Sequence[str] | str, delimiter: str, encoding: str, exc: BaseException) -> DataError:
    """The DataError of a CSV pyarrow (or pandas) could not read, the place found by :func:`csv_problem` (in the
    first of ``files`` that has one)."""
    files = [files] if isinstance(files, str) else list(files)
    path, where = files[0], None
    for f in files:
        if where := csv_problem(f, delimiter, encoding):
            path = f
            break
    name = "TSV" if delimiter == "\t" else "CSV"
    sep = "a tab" if delimiter == "\t" else "a comma"
    if where:
        return DataError(
            f"{path}: {where}; expected the same number of fields on every line ({name}): quote a field that holds "
            f"{sep} (\"hello, world\"), or save the data as JSON Lines and pass --dataset x.jsonl"
        )
    return DataError(
        f"could not read {path} as {name} ({_short(str(exc))}); expected a well-formed {name} file: fix the line "
        "named, quote fields that hold separators or line breaks, or save the data as JSON Lines (--dataset x.jsonl)"
    )


def _hf_features(schema: Any) -> dict[str, Any]:
    """The ClassLabel names a ``datasets``-written parquet file records in its schema metadata."""
    raw = (schema.metadata or {}).get(b"huggingface")
    if not raw:
        return {}
    try:
        feats = json.loads(raw).get("info", {}).get("features", {})
    except (ValueError, AttributeError):
        return {}
    return {k: NamedLabels(list(v["names"])) for k, v in feats.items()
            if isinstance(v, dict) and v.get("_type") == "ClassLabel" and isinstance(v.get("names"), list)}


class LocalStream:
    """The rows of local files, read lazily in file order (see the module docstring)."""

    def __init__(self, builder: str, files: Sequence[str], *, encoding: str = "utf-8", delimiter: str = ",",
                 columns: Sequence[str] | None = None, skip: int = 0, take: int | None = None) -> None:
        self.builder, self.files, self.encoding, self.delimiter = builder, list(files), encoding, delimiter
        self._columns = list(columns) if columns is not None else None
        self._skip, self._take = skip, take
        self._schema: Any = None
        self.info = None  # no split metadata: count_rows counts (parquet: its footers)

    # ---- what datasets' IterableDataset answers ------------------------------------------------------------------
    def _copy(self, **kw: Any) -> "LocalStream":
        args = {"columns": self._columns, "skip": self._skip, "take": self._take, **kw}
        new = LocalStream(self.builder, self.files, encoding=self.encoding, delimiter=self.delimiter, **args)
        new._schema = self._schema
        return new

    def select_columns(self, columns: Sequence[str]) -> "LocalStream":
        return self._copy(columns=list(columns))

    def skip(self, n: int) -> "LocalStream":
        take = None if self._take is None else max(0, self._take - n)
        return self._copy(skip=self._skip + n, take=take)

    def take(self, n: int) -> "LocalStream":
        return self._copy(take=n if self._take is None else min(n, self._take))

    @property
    def column_names(self) -> list[str]:
        """The columns, [] when the files hold no row (as a streamed ``datasets`` load of a header-only CSV)."""
        first = next(self._tables(64), None)
        if first is None:
            return []
        return list(self._columns) if self._columns is not None else list(first.column_names)

    @property
    def features(self) -> dict[str, Any]:
        if self.builder != "parquet":
            return {}
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            return _hf_features(pq.ParquetFile(self.files[0]).schema_arrow)
        except (pa.ArrowException, OSError) as exc:
            raise unreadable(self.files[0], self.builder, exc) from None

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for table in self._tables(1024):
            yield from table.to_pylist()

    def iter(self, batch_size: int) -> Iterator[dict[str, list[Any]]]:
        """Dicts of column lists, ``batch_size`` rows each (the last one fewer)."""
        buf: dict[str, list[Any]] = {}
        held = 0
        for table in self._tables(batch_size):
            part = table.to_pydict()
            for name in part:
                if name not in buf:
                    buf[name] = [None] * held
            for name, values in buf.items():
                values.extend(part.get(name) or [None] * table.num_rows)
            held += table.num_rows
            while held >= batch_size:
                yield {k: v[:batch_size] for k, v in buf.items()}
                buf = {k: v[batch_size:] for k, v in buf.items()}
                held -= batch_size
        if held:
            yield buf

    # ---- reading ----------------------------------------------------------------------------------------------
    def _tables(self, rows: int) -> Iterator[Any]:
        """Arrow tables of the selected columns, after ``skip`` rows and at most ``take``."""
        to_skip, left = self._skip, self._take
        if left is not None and left <= 0:
            return
        for table in self._read(rows):
            if to_skip:
                if table.num_rows <= to_skip:
                    to_skip -= table.num_rows
                    continue
                table, to_skip = table.slice(to_skip), 0
            if left is not None:
                table = table.slice(0, left)
                left -= table.num_rows
            if table.num_rows:
                yield table
            if left is not None and left <= 0:
                return

    def _read(self, rows: int) -> Iterator[Any]:
        import pyarrow as pa

        for path in self.files:
            reader = {"csv": self._csv, "json": self._json, "parquet": self._parquet}[self.builder]
            try:
                for table in reader(path, rows):
                    yield self._select(table)
            except (pa.ArrowException, OSError) as exc:  # a corrupt or truncated file (pyarrow's own errors)
                raise unreadable(path, self.builder, exc) from None

    def _select(self, table: Any) -> Any:
        if self._columns is None:
            return table
        if isinstance(table, _Rows):
            return _Rows({c: table.cols.get(c, [None] * table.num_rows) for c in self._columns}, table.num_rows)
        import pyarrow as pa

        cols = [table.column(c) if c in table.column_names else pa.nulls(table.num_rows) for c in self._columns]
        return pa.Table.from_arrays(cols, names=self._columns)

    def _parquet(self, path: str, rows: int) -> Iterator[Any]:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pf = pq.ParquetFile(path)
        names = pf.schema_arrow.names
        wanted = None if self._columns is None else [c for c in self._columns if c in names]
        for batch in pf.iter_batches(batch_size=max(rows, 1024), columns=wanted):
            yield pa.Table.from_batches([batch])

    def _csv(self, path: str, rows: int) -> Iterator[Any]:
        import pyarrow as pa
        import pyarrow.csv as pcsv

        def open_reader(types: dict[str, Any]) -> Any:
            return pcsv.open_csv(
                path,
                read_options=pcsv.ReadOptions(encoding=self.encoding, block_size=BLOCK_BYTES),
                parse_options=pcsv.ParseOptions(delimiter=self.delimiter, newlines_in_values=True),
                convert_options=pcsv.ConvertOptions(null_values=[""], strings_can_be_null=True,
                                                    quoted_strings_can_be_null=True, column_types=types),
            )

        try:
            reader = open_reader({})
            temporal = {f.name: pa.string() for f in reader.schema
                        if pa.types.is_temporal(f.type)}  # dates read as the text they are (as pandas reads them)
            if temporal:
                reader = open_reader(temporal)
            for batch in reader:
                yield pa.Table.from_batches([batch])
        except pa.ArrowInvalid as exc:
            if "Empty CSV file" in str(exc):
                return
            raise csv_error(path, self.delimiter, self.encoding, exc) from None

    def _json(self, path: str, rows: int) -> Iterator[Any]:
        import pyarrow as pa
        import pyarrow.json as paj

        with open(path, "rb") as fh:
            head = fh.read(1024).lstrip()
        if head[:1] == b"[":  # one JSON array of objects
            with open(path, encoding=self.encoding) as fh:
                data = json.load(fh)
            if not all(isinstance(r, dict) for r in data):
                raise DataError(f"{path} is a JSON array whose items are not all objects; expected "
                                '[{"text": "...", "label": "..."}, ...] or JSON Lines')
            for i in range(0, len(data), JSON_ROWS):
                yield _rows_table(pa, data[i: i + JSON_ROWS])
            return
        for block in _line_blocks(path, self.encoding):
            try:
                yield paj.read_json(io.BytesIO(block), read_options=paj.ReadOptions(block_size=len(block) + 1))
            except pa.ArrowInvalid:  # a column of mixed types (Arrow infers one per column): Python reads it
                lines = [json.loads(line) for line in block.decode("utf-8").splitlines() if line.strip()]
                yield _rows_table(pa, lines)


def _line_blocks(path: str, encoding: str) -> Iterator[bytes]:
    """``path``'s bytes (as UTF-8) in blocks of whole lines, about BLOCK_BYTES each."""
    utf8 = encoding.lower().replace("_", "-") in ("utf-8", "utf8")
    with open(path, "rb") if utf8 else io.BytesIO(Path(path).read_text(encoding=encoding).encode()) as fh:
        rest = b""
        while chunk := fh.read(BLOCK_BYTES):
            chunk = rest + chunk
            cut = chunk.rfind(b"\n") + 1
            if cut == 0:
                rest = chunk
                continue
            block, rest = chunk[:cut], chunk[cut:]
            if block.strip():
                yield block
        if rest.strip():
            yield rest + b"\n"


class _Rows:
    """Rows whose columns Arrow cannot hold as one type each (JSON ``1`` beside ``"pos"``): Python's values, with
    the few table methods the stream uses."""

    def __init__(self, cols: dict[str, list[Any]], num_rows: int) -> None:
        self.cols, self.num_rows = cols, num_rows

    @property
    def column_names(self) -> list[str]:
        return list(self.cols)

    def column(self, name: str) -> list[Any]:
        return self.cols[name]

    def slice(self, start: int, length: int | None = None) -> "_Rows":
        end = None if length is None else start + length
        return _Rows({k: v[start:end] for k, v in self.cols.items()}, len(range(self.num_rows)[start:end]))

    def to_pydict(self) -> dict[str, list[Any]]:
        return self.cols

    def to_pylist(self) -> list[dict[str, Any]]:
        return [dict(zip(self.cols, values)) for values in zip(*self.cols.values())] if self.cols else \
            [{} for _ in range(self.num_rows)]


def _rows_table(pa: Any, rows: list[dict[str, Any]]) -> Any:
    """JSON rows as an Arrow table (keys in order of first appearance, a missing key None), or as :class:`_Rows`
    when a column mixes types."""
    names = list(dict.fromkeys(k for r in rows for k in r))
    cols = {name: [r.get(name) for r in rows] for name in names}
    try:
        return pa.Table.from_arrays([pa.array(v) for v in cols.values()], names=names)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return _Rows(cols, len(rows))


def open_local_stream(builder: str, files: Sequence[str], kwargs: dict[str, Any], encoding: str) -> LocalStream | None:
    """The stream of local files in a format read here; None for a .json holding one document (not rows), which
    ``datasets`` reads."""
    if builder == "json":
        for f in files:
            with open(f, "rb") as fh:
                head = fh.read(1024).lstrip()
            if f.endswith(".json") and head[:1] == b"{" and not _json_lines(f):
                return None
    return LocalStream(builder, files, encoding=encoding, delimiter=kwargs.get("sep", ","))


def _json_lines(path: str) -> bool:
    """Whether the first non-blank line of ``path`` is a whole JSON value."""
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            if line.strip():
                try:
                    json.loads(line)
                    return True
                except ValueError:
                    return False
    return True

