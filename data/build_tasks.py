"""Build the tiny SYNTHETIC example data of the task recipes (docs/recipes.md), offline and deterministically.

    python data/build_tasks.py [--out data/tasks] [--seed 3]

Every row is made up from the templates and word lists below (no real texts, no real people):

``multilabel.csv``  ``text,labels``: 48 short news-like lines, each about one to three of the topics sports,
                    politics, tech, labels joined by "," (task multi-label-classification, the default
                    ``--label-delimiter``)
``regression.csv``  ``text,label``: 48 review-like lines with a made-up rating from 1.0 to 5.0 (task regression)
``ner.jsonl``       ``{"tokens": [...], "ner_tags": [...]}``: 48 sentences with B-/I- tags PER, LOC, ORG, as
                    conll2003 has them (task token-classification)

The files are small and committed beside this script; rebuild them with it.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
from pathlib import Path

HERE = Path(__file__).resolve().parent
TOPICS = {
    "sports": ["the match went to extra time", "the striker scored twice", "the coach praised the defence",
               "the league title race is close"],
    "politics": ["parliament passed the budget", "the minister resigned", "voters head to the polls",
                 "the senate debated the bill"],
    "tech": ["the new phone ships next week", "the software update fixed the bug", "the chip maker raised prices",
             "the startup released an app"],
}
REVIEW = [(1.0, "terrible, broke after a day"), (2.0, "poor quality, not worth it"), (3.0, "okay but nothing special"),
          (4.0, "good value, works well"), (5.0, "excellent, absolutely love it")]
ITEMS = ["kettle", "lamp", "backpack", "headset", "blender", "chair", "keyboard", "umbrella"]
PEOPLE = [["Anna", "Berg"], ["Tom"], ["Maria", "Lopez"], ["Kenji"], ["Lea", "Novak"], ["Omar"]]
PLACES = [["Oslo"], ["New", "York"], ["Lima"], ["Cape", "Town"], ["Porto"], ["Kyoto"]]
ORGS = [["Acme", "Corp"], ["Globex"], ["Initech"], ["Blue", "River", "Bank"], ["Umbra"]]


def multilabel(rng: random.Random, n: int) -> list[dict[str, str]]:
    names = sorted(TOPICS)
    rows = []
    for i in range(n):
        k = 1 + i % 3
        topics = sorted(rng.sample(names, k))
        text = "; ".join(rng.choice(TOPICS[t]) for t in topics)
        rows.append({"text": text, "labels": ",".join(topics)})
    return rows


def regression(rng: random.Random, n: int) -> list[dict[str, str]]:
    rows = []
    for i in range(n):
        score, phrase = REVIEW[i % len(REVIEW)]
        rows.append({"text": f"this {rng.choice(ITEMS)} is {phrase}", "label": f"{score + rng.choice([-0.25, 0.0, 0.25]):.2f}"})
    return rows


def ner(rng: random.Random, n: int) -> list[dict[str, list[str]]]:
    def span(words: list[str], kind: str) -> list[tuple[str, str]]:
        return [(w, ("B-" if j == 0 else "I-") + kind) for j, w in enumerate(words)]

    rows = []
    for _ in range(n):
        parts = [*span(rng.choice(PEOPLE), "PER"), ("works", "O"), ("for", "O"), *span(rng.choice(ORGS), "ORG"),
                 ("in", "O"), *span(rng.choice(PLACES), "LOC"), (".", "O")]
        if rng.random() < 0.5:
            parts = [("Yesterday", "O"), (",", "O"), *parts]
        rows.append({"tokens": [w for w, _ in parts], "ner_tags": [t for _, t in parts]})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(HERE / "tasks"))
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--n", type=int, default=48)
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(a.seed)
    for name, rows in (("multilabel.csv", multilabel(rng, a.n)), ("regression.csv", regression(rng, a.n))):
        with open(out / name, "w", encoding="utf-8", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    with open(out / "ner.jsonl", "w", encoding="utf-8") as fh:
        for row in ner(rng, a.n):
            fh.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
