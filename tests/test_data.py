import json

import pytest

from hubtune.core.config import DataConfig
from hubtune.data.dataset import load_labeled, load_train_eval, parse_spec, resolve_columns
from hubtune.core.errors import (
    ColumnNotFoundError,
    DataEncodingError,
    DataError,
    DatasetNotFoundError,
    EmptyDatasetError,
    LabelError,
)

from .conftest import TWEETS_TRAIN


@pytest.mark.parametrize(
    "spec, kind, path, config, split",
    [
        ("imdb:test", "hub", "imdb", None, "test"),
        ("glue:mrpc:validation", "hub", "glue", "mrpc", "validation"),
        ("stanfordnlp/imdb:train", "hub", "stanfordnlp/imdb", None, "train"),
        ("org/data", "hub", "org/data", None, None),
        ("data/x.csv", "local", "data/x.csv", None, None),
        ("x.tsv", "local", "x.tsv", None, None),
        ("x.jsonl", "local", "x.jsonl", None, None),
        ("x.json", "local", "x.json", None, None),
        ("x.parquet", "local", "x.parquet", None, None),
        ("./some/dir", "local", "some/dir", None, None),
    ],
)
def test_parse_spec(spec, kind, path, config, split):
    s = parse_spec(spec)
    assert (s.kind, s.path, s.config, s.split) == (kind, path, config, split)


@pytest.mark.parametrize("bad", ["", "a:b:c:d", "a::b", "a/b/c:train"])
def test_parse_spec_rejects(bad):
    with pytest.raises(DataError):
        parse_spec(bad)


def test_parse_spec_existing_directory(tmp_path):
    assert parse_spec(str(tmp_path)).kind == "local"


ROWS = [
    {"review": "great film", "sentiment": "pos"},
    {"review": "awful", "sentiment": "neg"},
    {"review": "loved it", "sentiment": "pos"},
    {"review": "boring", "sentiment": "neg"},
]


def _write(tmp_path, fmt, rows=ROWS):
    import pandas as pd

    df = pd.DataFrame(rows)
    p = tmp_path / f"d.{fmt}"
    if fmt == "csv":
        df.to_csv(p, index=False)
    elif fmt == "tsv":
        df.to_csv(p, index=False, sep="\t")
    elif fmt == "jsonl":
        df.to_json(p, orient="records", lines=True)
    elif fmt == "json":
        p.write_text(json.dumps(rows))
    elif fmt == "parquet":
        df.to_parquet(p)
    return p


@pytest.mark.parametrize("fmt", ["csv", "tsv", "jsonl", "json", "parquet"])
def test_local_formats_autodetect_columns_and_labels(tmp_path, fmt):
    data = load_labeled(str(_write(tmp_path, fmt)))
    assert data.columns.text == "review" and data.columns.label == "sentiment"
    assert data.label_names == ["neg", "pos"]  # stable sorted order
    assert data.dataset["text"] == [r["review"] for r in ROWS]
    assert data.dataset["label"] == [1, 0, 1, 0]


def test_directory_of_files(tmp_path):
    (tmp_path / "d").mkdir()
    _write(tmp_path / "d", "csv")
    data = load_labeled(str(tmp_path / "d"))
    assert len(data) == 4


def test_missing_column_lists_and_suggests(tmp_path):
    p = _write(tmp_path, "csv")
    with pytest.raises(ColumnNotFoundError, match=r"'reviews' not found.*review, sentiment.*did you mean 'review'.*--text-column"):
        load_labeled(str(p), text_column="reviews")


def test_empty_dataset(tmp_path):
    p = tmp_path / "e.csv"
    p.write_text("text,label\n")
    with pytest.raises((EmptyDatasetError, DataError)):
        load_labeled(str(p))


def test_nan_labels(tmp_path):
    p = tmp_path / "n.csv"
    p.write_text("text,label\na,pos\nb,\nc,neg\n")
    with pytest.raises(LabelError, match=r"1 row\(s\) have no label .* data row\(s\) 2 "):
        load_labeled(str(p))


def test_not_utf8_names_encoding_option(tmp_path):
    p = tmp_path / "l.csv"
    p.write_bytes("text,label\ncaf\xe9 ok,pos\nbad,neg\n".encode("latin-1"))
    with pytest.raises(DataEncodingError, match="--encoding"):
        load_labeled(str(p))
    assert load_labeled(str(p), encoding="latin-1").dataset["text"][0] == "caf\xe9 ok"


def test_unknown_format_and_missing_file(tmp_path):
    p = tmp_path / "x.xlsx"
    p.write_text("nope")
    with pytest.raises(DataError, match="unknown format"):
        load_labeled(str(p))
    with pytest.raises(DatasetNotFoundError):
        load_labeled(str(tmp_path / "missing.csv"))


def test_unreadable_file(tmp_path):
    p = tmp_path / "bad.parquet"
    p.write_text("this is not parquet")
    with pytest.raises(DataError, match="could not read"):
        load_labeled(str(p))


def test_unknown_hub_dataset_is_clear(local_hub):
    with pytest.raises(DatasetNotFoundError, match="no-such-org/no-such-dataset.*was not found"):
        load_labeled("no-such-org/no-such-dataset:test")


def test_hub_dataset_by_id(local_hub, tmp_path):
    """name:split through datasets.load_dataset against the local Hub."""
    import pandas as pd

    folder = tmp_path / "ds"
    (folder / "data").mkdir(parents=True)
    pd.DataFrame(ROWS).to_parquet(folder / "data" / "test-00000-of-00001.parquet")
    local_hub.api().create_repo("org/reviews", repo_type="dataset")
    local_hub.api().upload_folder(folder_path=str(folder), repo_id="org/reviews", repo_type="dataset")
    data = load_labeled("org/reviews:test")
    assert data.dataset["text"] == [r["review"] for r in ROWS] and data.label_names == ["neg", "pos"]
    with pytest.raises(DataError, match="no split 'nope'"):
        load_labeled("org/reviews:nope")


def test_eval_label_unseen_in_train(tmp_path):
    train = _write(tmp_path, "csv")
    ev = tmp_path / "ev.csv"
    ev.write_text("review,sentiment\nmeh,neutral\nok,pos\n")
    with pytest.raises(LabelError, match="'neutral'"):
        load_train_eval(DataConfig(dataset=str(train), eval_dataset=str(ev)))


def test_int_labels_with_model_names(tmp_path):
    p = tmp_path / "i.csv"
    p.write_text("text,label\na,0\nb,1\n")
    data = load_labeled(str(p), label_names=["neg", "pos"])
    assert data.dataset["label"] == [0, 1]


def test_split_carving_is_deterministic_and_limited():
    cfg = DataConfig(dataset=str(TWEETS_TRAIN), max_samples=200, validation_split=0.25, seed=3)
    a, b = load_train_eval(cfg), load_train_eval(cfg)
    assert (len(a.train), len(a.eval)) == (150, 50)
    assert a.eval.dataset["text"] == b.eval.dataset["text"]
    assert not set(a.train.dataset["text"]) & set(a.eval.dataset["text"])
    assert a.label_names == ["negative", "neutral", "positive"]
    other = load_train_eval(DataConfig(dataset=str(TWEETS_TRAIN), max_samples=200, validation_split=0.25, seed=4))
    assert other.eval.dataset["text"] != a.eval.dataset["text"]


def test_pair_columns_detected():
    cols = resolve_columns(["sentence1", "sentence2", "label"])
    assert (cols.text, cols.text_pair, cols.label) == ("sentence1", "sentence2", "label")


# --- issue 15 ---------------------------------------------------------------------------------------------
def _csv(path, text: str):
    path.write_text(text, encoding="utf-8")
    return path


def test_labels_read_as_missing_are_refused_with_their_rows(tmp_path):
    from hubtune.data.dataset import load_labeled

    p = _csv(tmp_path / "m.csv", "text,label\na,x\nb,NaN\nc,y\nd,null\ne,x\n")
    with pytest.raises(LabelError, match=r"2 row\(s\) have no label .* data row\(s\) 2, 4 "):
        load_labeled(str(p), max_samples=3)  # named before any shuffle or limit


def test_bare_ids_against_named_classes(tmp_path):
    from hubtune.data.dataset import load_labeled
    from hubtune.core.errors import LabelMismatchError

    names = ["negative", "neutral", "positive"]
    p = _csv(tmp_path / "b.csv", "text,label\na,0\nb,1\nc,1\n")
    with pytest.raises(LabelMismatchError, match="label ids 0, 1 without names.*negative, neutral, positive"):
        load_labeled(str(p), label_names=names)
    full = _csv(tmp_path / "f.csv", "text,label\na,0\nb,1\nc,2\n")  # every class's id: by position
    assert load_labeled(str(full), label_names=names).dataset["label"] == [0, 1, 2]
    assert load_labeled(str(p), label_names=["LABEL_0", "LABEL_1", "LABEL_2"]).dataset["label"] == [0, 1, 1]
