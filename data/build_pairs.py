"""Build an MRPC-style sentence-pair dataset from data/tweets, offline and deterministically.

    python data/build_pairs.py [--out data/pairs] [--n-train 2000] [--n-test 500] [--seed 7]

Each row pairs a tweet (``sentence1``) with another tweet (``sentence2``) of the same split and is labeled
``same`` when both carry the same sentiment, else ``different``; half the rows of each split are ``same``.
Columns ``sentence1,sentence2,label``, as in GLUE MRPC, so ``hubtune train`` picks the pair columns
without flags. The output is derived data: rebuild it, do not commit it (``data/pairs/`` is small but
regenerable).
"""

from __future__ import annotations

import argparse
import csv
import random
from pathlib import Path

HERE = Path(__file__).resolve().parent


def read_rows(path: Path) -> list[tuple[str, str]]:
    with open(path, encoding="utf-8", newline="") as fh:
        return [(r["text"], r["label"]) for r in csv.DictReader(fh)]


def build_pairs(rows: list[tuple[str, str]], n: int, seed: int) -> list[dict[str, str]]:
    """``n`` pairs, alternating same/different sentiment, partners drawn with ``random.Random(seed)``."""
    rng = random.Random(seed)
    by_label: dict[str, list[int]] = {}
    for i, (_, lab) in enumerate(rows):
        by_label.setdefault(lab, []).append(i)
    labels = sorted(by_label)
    out = []
    order = list(range(len(rows)))
    rng.shuffle(order)
    for k in range(n):
        i = order[k % len(order)]
        text, lab = rows[i]
        if k % 2 == 0:
            j = rng.choice([x for x in by_label[lab] if x != i] or by_label[lab])
        else:
            other = rng.choice([x for x in labels if x != lab])
            j = rng.choice(by_label[other])
        out.append({"sentence1": text, "sentence2": rows[j][0], "label": "same" if rows[j][1] == lab else "different"})
    return out


def write_csv(path: Path, pairs: list[dict[str, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["sentence1", "sentence2", "label"])
        w.writeheader()
        w.writerows(pairs)


def build(out: Path, n_train: int = 2000, n_test: int = 500, seed: int = 7, src: Path = HERE / "tweets") -> tuple[Path, Path]:
    train = build_pairs(read_rows(src / "train.csv"), n_train, seed)
    test = build_pairs(read_rows(src / "test.csv"), n_test, seed + 1)
    write_csv(out / "train.csv", train)
    write_csv(out / "test.csv", test)
    return out / "train.csv", out / "test.csv"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=HERE / "pairs")
    ap.add_argument("--n-train", type=int, default=2000)
    ap.add_argument("--n-test", type=int, default=500)
    ap.add_argument("--seed", type=int, default=7)
    a = ap.parse_args()
    tr, te = build(a.out, a.n_train, a.n_test, a.seed)
    print(f"wrote {tr} ({a.n_train} rows) and {te} ({a.n_test} rows)")


if __name__ == "__main__":
    main()
