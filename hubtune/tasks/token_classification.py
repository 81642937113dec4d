"""token-classification: a tag per word (named entities), from a ``*ForTokenClassification`` head.

Training data: ``tokens`` (a list of words) and ``tags`` (a list of tag ids, as conll2003 has: strings such as
``B-PER``, or integers with the feature's names); each word's tag sits on its first sub-token (-100 on the others
and on special tokens: ignored by the loss and the metrics), through a fast tokenizer's ``word_ids()``. Metrics:
entity-level precision/recall/F1 (seqeval, conlleval's rules) and token accuracy. batch-predict writes
``entities``: {entity_group, score, word, start, end} per entity, grouped as
``pipeline("token-classification", aggregation_strategy="simple")`` groups them (its own code does the grouping)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

if TYPE_CHECKING:  # numpy is imported where it runs: listing the tasks stays light
    import numpy as np


from hubtune.core.metrics import TOKEN_KEYS
from hubtune.core.errors import ColumnNotFoundError, ConfigError, DataError, LabelError, ModelLoadError
from hubtune.tasks.base import TOKEN_CLASSIFICATION, Task

TOKEN_CANDIDATES = ("tokens", "words", "token")
TAG_CANDIDATES = ("ner_tags", "tags", "labels", "label", "pos_tags", "chunk_tags")


def check_fast(tokenizer: Any, source: str) -> None:
    if not getattr(tokenizer, "is_fast", False):
        raise ConfigError(
            f"the tokenizer of {source} is a slow (Python) tokenizer; token classification aligns tags to words "
            "through a fast tokenizer's word_ids(): expected a base model with a tokenizer.json (a fast tokenizer)"
        )


def align_tags(tokenizer: Any, batch: dict[str, list[Any]], max_length: int) -> Any:
    """Tokenize words (``batch["tokens"]``) and align ``batch["tags"]``: each word's tag on its first sub-token,
    -100 (ignored by the loss and the metrics) on the other sub-tokens and the special tokens."""
    enc = tokenizer(batch["tokens"], is_split_into_words=True, truncation=True, max_length=max_length)
    labels = []
    for i, tags in enumerate(batch["tags"]):
        prev, row = None, []
        for w in enc.word_ids(i):
            row.append(-100 if w is None or w == prev else int(tags[w]))
            prev = w
        labels.append(row)
    enc["labels"] = labels
    return enc


def encode_tokens(tokenizer: Any, ds: Any, max_length: int) -> Any:
    return ds.map(lambda b: align_tags(tokenizer, b, max_length), batched=True, remove_columns=ds.column_names,
                  desc="tokenize")


def token_logits(model: Any, tokenizer: Any, encoded: Any, batch_size: int = 32, device: str | None = None) -> list[np.ndarray]:
    """Per example, the logits at its labelled positions (each word's first sub-token), in input order
    (``device``: where the inputs go, default the model's; "cpu" for an ONNX graph)."""
    import numpy as np

    import torch
    from transformers import DataCollatorForTokenClassification

    collator = DataCollatorForTokenClassification(tokenizer)
    keys = [k for k in ("input_ids", "attention_mask", "token_type_ids", "labels") if k in encoded.column_names]
    dev = device or next(model.parameters()).device
    out: list[np.ndarray] = []
    with torch.inference_mode():
        for start in range(0, len(encoded), batch_size):
            rows = encoded.select(range(start, min(start + batch_size, len(encoded))))
            batch = collator([{k: r[k] for k in keys} for r in rows])
            labels = batch.pop("labels")
            logits = model(**{k: v.to(dev) for k, v in batch.items()}).logits.float().cpu()
            out += [lg[lab != -100].numpy() for lg, lab in zip(logits, labels)]
    return out


def true_word_tags(tokenizer: Any, ds: Any, max_length: int, label_names: list[str]) -> list[list[str]]:
    """The gold tags of the words that fit in ``max_length`` tokens (those the model labels)."""
    enc = encode_tokens(tokenizer, ds, max_length)
    return [[label_names[t] for t in row if t != -100] for row in enc["labels"]]


def token_columns(available: Sequence[str], dc: Any) -> Any:
    """The words column (``tokens``; ``--text-column``) and the tags column (``ner_tags``; ``--label-column``)."""
    from hubtune.data.dataset import ColumnMap

    cols = list(available)
    lower = {c.lower(): c for c in cols}

    def pick(override: str | None, candidates: Sequence[str], kind: str, flag: str) -> str:
        if override:
            if override not in cols:
                raise ColumnNotFoundError(f"{kind} column '{override}' not found; the dataset has columns: "
                                          f"{', '.join(cols)} (set it with {flag})")
            return override
        found = next((lower[c] for c in candidates if c in lower), None)
        if found is None:
            raise ColumnNotFoundError(
                f"no {kind} column found among: {', '.join(cols) or '(none)'}; expected one of {', '.join(candidates)} "
                f"(a list per row, as conll2003 has; set it with {flag})"
            )
        return found

    words = pick(dc.text_column, TOKEN_CANDIDATES, "words (tokens)", "--text-column")
    tags = pick(dc.label_column, TAG_CANDIDATES, "tags", "--label-column")
    return ColumnMap(text=words, label=tags)


def tag_order(tags: set[str]) -> list[str]:
    """``O`` first, then each entity type's ``B-`` then ``I-`` tag, types in name order (conll2003's style)."""
    def key(t: str) -> tuple[int, str, str]:
        if t == "O":
            return (0, "", "")
        prefix, _, kind = t.partition("-")
        return (1, kind or prefix, prefix if kind else "")
    return sorted(tags, key=key)


def ENTITY_TYPE() -> Any:  # noqa: N802 - a type, built when pyarrow is imported
    import pyarrow as pa

    return pa.list_(pa.struct([("entity_group", pa.string()), ("score", pa.float32()), ("word", pa.string()),
                               ("start", pa.int32()), ("end", pa.int32())]))


def grouper(head: Any) -> Any:
    """transformers' TokenClassificationPipeline, holding only what its grouping reads (the tokenizer and the
    model config's id2label): its ``gather_pre_entities`` and ``aggregate`` group the tokens, so the entities are
    the ones ``pipeline(aggregation_strategy="simple")`` answers."""
    if head._grouper is None:
        from types import SimpleNamespace

        from transformers import TokenClassificationPipeline

        pipe = TokenClassificationPipeline.__new__(TokenClassificationPipeline)
        pipe.tokenizer = head.tokenizer
        pipe.model = SimpleNamespace(config=SimpleNamespace(id2label=dict(enumerate(head.label_names))))
        head._grouper = pipe
    return head._grouper


def token_entities(head: Any, logits: np.ndarray, texts: list[str]) -> list[list[dict[str, Any]]]:
    """Entities per text from per-token logits ([rows, tokens, labels], padded): the texts are tokenized again
    with offsets (the same truncation as the model's input), the tokens scored by softmax and grouped by
    transformers' own pipeline code."""
    import numpy as np

    from transformers.pipelines.token_classification import AggregationStrategy

    if not texts:
        return []
    tok = head.tokenizer
    if not getattr(tok, "is_fast", False):
        raise ConfigError(
            f"token classification needs a fast (Rust) tokenizer for the character offsets of its entities, and this "
            f"model's is {type(tok).__name__}; expected a tokenizer.json beside the model: save the tokenizer with "
            "AutoTokenizer(..., use_fast=True)"
        )
    enc = tok(texts, truncation=True, max_length=head.max_length, return_special_tokens_mask=True,
              return_offsets_mapping=True, return_attention_mask=False)
    pipe = grouper(head)
    strategy = AggregationStrategy.SIMPLE
    out = []
    for i, text in enumerate(texts):
        ids = np.asarray(enc["input_ids"][i])
        row = np.asarray(logits[i][: len(ids)], dtype=np.float32)
        shifted = np.exp(row - row.max(axis=-1, keepdims=True))
        scores = shifted / shifted.sum(axis=-1, keepdims=True)
        pre = pipe.gather_pre_entities(text, ids, scores, enc["offset_mapping"][i],
                                       np.asarray(enc["special_tokens_mask"][i]), strategy)
        grouped = pipe.aggregate(pre, strategy)
        out.append([
            {"entity_group": str(e["entity_group"]), "score": float(e["score"]), "word": str(e["word"]),
             "start": int(e["start"]), "end": int(e["end"])}
            for e in grouped if e.get("entity_group") not in ("O",)
        ])
    return out


class TokenClassification(Task):
    name = TOKEN_CLASSIFICATION
    description = "a tag per word (named entities)"
    auto_class = "AutoModelForTokenClassification"
    recipe = "head"
    predicts = True
    reads_pairs = False
    one_text = "tags the tokens of one text"
    summary_keys = TOKEN_KEYS
    best_metric = ("f1", True)
    main_metric = "f1"
    main_metric_name = "entity F1"
    gate_metrics = summary_keys
    list_column = "entities"
    agrees = "the same tag on every word of a text"
    optimum_task = "token-classification"
    pipeline_tag = "token-classification"
    card_name = "Token Classification"
    usage = ('pipe = pipeline("token-classification", model="{repo}", aggregation_strategy="simple")\n'
             'pipe("Anna Berg works for Acme Corp in Oslo.")  # entities with start/end offsets')


    # --- data ---
    def normalise(self, ds: Any, dc: Any, source: str, names: list[str] | None) -> Any:
        from datasets import Dataset

        from hubtune.data.dataset import LoadedData
        from hubtune.data.examples import check_rows

        check_rows(ds, source)
        cols = token_columns(ds.column_names, dc)
        assert cols.label is not None
        words, tags = ds[cols.text], ds[cols.label]
        for i, (w, t) in enumerate(zip(words, tags)):
            if not isinstance(w, (list, tuple)) or not isinstance(t, (list, tuple)):
                raise DataError(
                    f"{source}: row {i + 1} of '{cols.text}'/'{cols.label}' is not a list of words and a list of tags "
                    f"(found {type(w).__name__}/{type(t).__name__}); expected a list per row for task token-classification "
                    "(JSONL or a Hub dataset such as conll2003; --text-column / --label-column)"
                )
            if len(w) != len(t) or not w:
                raise DataError(
                    f"{source}: row {i + 1} has {len(w)} words and {len(t)} tags; expected one tag per word (and at least "
                    "one word) in every row: fix that row"
                )
        feature = ds.features.get(cols.label)
        inner = getattr(feature, "feature", feature)
        own = list(getattr(inner, "names", None) or []) or None
        as_str = [[own[v] if own and isinstance(v, int) else str(v) for v in t] for t in tags]
        if names is None:
            names = own or tag_order({v for t in as_str for v in t})
        index = {n: i for i, n in enumerate(names)}
        unseen = sorted({v for t in as_str for v in t if v not in index})
        if unseen:
            raise LabelError(
                f"{source} has tags the training data does not: {', '.join(map(repr, unseen[:5]))}; expected tags among "
                f"{', '.join(names)} (train on data that has them, or fix --label-column)"
            )
        out = Dataset.from_dict({"tokens": [[str(x) for x in w] for w in words],
                                 "tags": [[index[v] for v in t] for t in as_str]})
        return LoadedData(dataset=out, label_names=list(names), columns=cols, source=source)

    def unlabeled(self, texts: list[str]) -> Any:
        from datasets import Dataset

        words = [t.split() for t in texts if t.split()]  # the tags are placeholders, never scored
        return Dataset.from_dict({"tokens": words, "tags": [[0] * len(w) for w in words]})

    def texts(self, ds: Any) -> list[str]:
        return [" ".join(t) for t in ds["tokens"]]

    # --- outputs and metrics ---
    def outputs(self, model: Any, tokenizer: Any, ds: Any, max_length: int, *, batch_size: int = 64,
                device: str | None = None) -> Any:
        return token_logits(model, tokenizer, encode_tokens(tokenizer, ds, max_length), batch_size, device=device)

    def flat(self, outputs: Any) -> np.ndarray:
        import numpy as np

        return np.concatenate(outputs) if outputs else np.zeros((0, 1), dtype=np.float32)

    def padded(self, outputs: Any) -> np.ndarray:
        """[examples, words, labels], zeros after each example's words: an example agrees when every word's tag
        does (its entities)."""
        import numpy as np

        if not outputs:
            return np.zeros((0, 1, 1), np.float32)
        width, labels = max(len(o) for o in outputs), outputs[0].shape[-1]
        out = np.zeros((len(outputs), max(width, 1), labels), np.float32)
        for i, o in enumerate(outputs):
            out[i, : len(o)] = o
        return out

    def metrics(self, outputs: Any, ds: Any, label_names: list[str], *, tokenizer: Any = None,
                max_length: int = 512, threshold: float = 0.5) -> dict[str, Any]:
        from hubtune.core.metrics import token_metrics

        if tokenizer is None:
            raise ModelLoadError("token metrics need the tokenizer that aligned the tags; expected tokenizer=")
        true = true_word_tags(tokenizer, ds, max_length, label_names)
        pred = [[label_names[int(j)] for j in lg.argmax(-1)] for lg in outputs]
        out = token_metrics(true, pred)
        out["task"] = self.name
        return out

    # --- training ---
    def tokenize(self, ds: Any, tokenizer: Any, max_length: int) -> Any:
        return ds.map(lambda b: align_tags(tokenizer, b, max_length), batched=True, remove_columns=ds.column_names,
                      desc="tokenize")

    def collator(self, tokenizer: Any) -> Any:
        from transformers import DataCollatorForTokenClassification

        return DataCollatorForTokenClassification(tokenizer)

    def check_tokenizer(self, tokenizer: Any, source: str) -> None:
        check_fast(tokenizer, source)

    def eval_metrics(self, logits: Any, labels: Any, label_names: list[str]) -> dict[str, Any]:
        from hubtune.core.metrics import token_metrics

        mask = labels != -100
        true = [[label_names[t] for t in row[m]] for row, m in zip(labels, mask)]
        pred_tags = [[label_names[int(j)] for j in lg[m].argmax(-1)] for lg, m in zip(logits, mask)]
        return token_metrics(true, pred_tags)

    # --- batch-predict ---
    def columns(self, head: Any, logits: Any, texts: list[str]) -> dict[str, Any]:
        import pyarrow as pa

        return {"entities": pa.array(token_entities(head, logits, texts), type=ENTITY_TYPE())}

    # --- verification ---
    def pipeline_answers(self, model_ref: str, texts: list[str], revision: str | None, threshold: float) -> dict[str, Any]:
        from transformers import pipeline

        pipe = pipeline("token-classification", model=model_ref, revision=revision, device=-1,
                        aggregation_strategy="simple")
        ents = [pipe(t) for t in texts]
        return {"pytorch": [" ".join(f"{e['entity_group']}:{e['start']}-{e['end']}" for e in row) for row in ents],
                "pytorch_scores": [[float(e["score"]) for e in row] for row in ents]}

    def logits_answer(self, logits: Any, mask: Any, names: list[str], threshold: float) -> tuple[list[str], list[Any]]:
        return [" ".join(names[int(j)] for j in row[m].argmax(-1)) for row, m in zip(logits, mask)], []
