"""Issue 35, items 1 and 14: model folders missing pieces, given to every command that loads a model.

Each case breaks a copy of a good tiny model (or run directory) in one way - no config.json, no weights, no
tokenizer files, a tokenizer of another vocabulary, weights of another architecture, a corrupt config.json, an
empty safetensors file, a run directory without its published folder, a checkpoint without the head for the task,
a regression checkpoint read as a classifier, an NLI checkpoint given single texts - runs the real command, and
asserts (tests/_bad_input.py): an exit code other than 0 and 70 (the one the case names), exactly one stderr line,
no traceback, nothing written or deleted; then the command succeeds once the model (or the command) is fixed.
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path
from typing import Callable

import pytest

from hubtune.core.compat import transformers_major

from ._bad_input import assert_unchanged, cli, refused_cleanly, snapshot, succeeds
from ._tiny_runs import LABELS, make_full_run, make_lora_run, make_tiny_base, minilm_dir
from .conftest import TWEETS_TEST, TWEETS_TRAIN

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")
NLI_LABELS = ["ENTAILMENT", "NEUTRAL", "CONTRADICTION"]


# --------------------------------------------------------------------------------------------------
# Models: one good tiny model, and the pieces that break a copy of it
# --------------------------------------------------------------------------------------------------
def _bert(tmp: Path, *, vocab: int | None = None, seed: int = 0, bare: bool = False, **cfg_kw) -> Path:
    """A tiny BERT (sequence classifier, or ``bare`` encoder) with the MiniLM tokenizer, saved to ``tmp``."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification, BertModel

    tok = AutoTokenizer.from_pretrained(str(minilm_dir()))
    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=vocab or tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=128, **cfg_kw)
    model = BertModel(cfg) if bare else BertForSequenceClassification(cfg)
    if not bare:
        with torch.no_grad():
            model.classifier.weight.normal_(0, 1.0)
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    return tmp


@pytest.fixture(scope="module")
def parts(tmp_path_factory) -> dict[str, Path]:
    """The good model, a good run of each kind, and the pieces the cases break a copy with."""
    import torch
    from tokenizers import ByteLevelBPETokenizer
    from transformers import DistilBertConfig, DistilBertForSequenceClassification, GPT2TokenizerFast

    root = tmp_path_factory.mktemp("bad_models")
    good = make_tiny_base(root / "good")
    out = {"good": good}
    out["full_run"] = make_full_run(root / "full_run", good)
    out["lora_run"] = make_lora_run(root / "lora_run", good)
    out["small_vocab"] = _bert(root / "small_vocab", vocab=1000, num_labels=3, id2label=dict(enumerate(LABELS)),
                               label2id={n: i for i, n in enumerate(LABELS)})
    out["bare"] = _bert(root / "bare", bare=True)
    out["regression"] = _bert(root / "regression", num_labels=1, problem_type="regression")
    out["nli"] = _bert(root / "nli", num_labels=3, id2label=dict(enumerate(NLI_LABELS)),
                       label2id={n: i for i, n in enumerate(NLI_LABELS)})
    # a byte-level BPE of 400 tokens: a tokenizer of another model
    with open(TWEETS_TRAIN, encoding="utf-8", newline="") as fh:
        texts = [r["text"] for r in csv.DictReader(fh)][:300]
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(texts, vocab_size=400, min_frequency=2, special_tokens=["<|endoftext|>"], show_progress=False)
    tok = GPT2TokenizerFast(tokenizer_object=bpe._tokenizer, eos_token="<|endoftext|>", bos_token="<|endoftext|>",
                            unk_token="<|endoftext|>", pad_token="<|endoftext|>", model_max_length=128)
    tok.save_pretrained(root / "bpe400")
    out["bpe400"] = root / "bpe400"
    # weights of another architecture (DistilBERT) under the BERT config
    torch.manual_seed(0)
    distil = DistilBertForSequenceClassification(DistilBertConfig(vocab_size=30522, dim=32, n_layers=2, n_heads=2,
                                                                  hidden_dim=64, num_labels=3))
    distil.save_pretrained(root / "distil")
    out["distil"] = root / "distil"
    # data: 12 tweets; NLI pairs (premise, hypothesis) with NLI labels, and the same rows as single texts
    rows = list(csv.DictReader(open(TWEETS_TEST, encoding="utf-8", newline="")))[:12]
    with open(root / "tweets12.csv", "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["text", "label"])
        w.writerows([r["text"], r["label"]] for r in rows)
    out["tweets12"] = root / "tweets12.csv"
    with open(root / "nli_pairs.csv", "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["text", "text_pair", "label"])
        w.writerows([r["text"], f"the customer is {r['label']}", NLI_LABELS[i % 3]] for i, r in enumerate(rows))
    out["nli_pairs"] = root / "nli_pairs.csv"
    with open(root / "nli_single.csv", "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["text", "label"])
        w.writerows([r["text"], NLI_LABELS[i % 3]] for i, r in enumerate(rows))
    out["nli_single"] = root / "nli_single.csv"
    return out


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, symlinks=True)
    return dst


def _remove(folder: Path, *names: str) -> Callable[[], None]:
    """Move ``names`` out of ``folder`` (kept aside); the returned function puts them back."""
    aside = folder.parent / f".{folder.name}.aside"
    aside.mkdir()
    moved = [n for n in names if (folder / n).exists()]
    for n in moved:
        shutil.move(str(folder / n), str(aside / n))

    def fix() -> None:
        for n in moved:
            shutil.move(str(aside / n), str(folder / n))
        aside.rmdir()

    return fix


def _replace(folder: Path, new: dict[str, bytes | Path]) -> Callable[[], None]:
    """Replace files of ``folder`` (bytes, or a file to copy; a file absent before is added); undo on fix."""
    old = {n: (folder / n).read_bytes() if (folder / n).exists() else None for n in new}
    for n, v in new.items():
        (folder / n).write_bytes(v if isinstance(v, bytes) else Path(v).read_bytes())

    def fix() -> None:
        for n, v in old.items():
            if v is None:
                (folder / n).unlink()
            else:
                (folder / n).write_bytes(v)

    return fix


def _swap_tokenizer(folder: Path, other: Path) -> Callable[[], None]:
    fix_rm = _remove(folder, *TOKENIZER_FILES)
    added = [p.name for p in other.iterdir() if p.is_file()]
    for n in added:
        shutil.copy(other / n, folder / n)

    def fix() -> None:
        for n in added:
            (folder / n).unlink()
        fix_rm()

    return fix


# defect -> (break a model folder: returns its fix, the exit code, a word the line must hold)
DEFECTS: dict[str, tuple[Callable[[Path, dict], Callable[[], None]], int, str]] = {
    "no-config": (lambda m, p: _remove(m, "config.json"), 5, "config.json"),
    "no-weights": (lambda m, p: _remove(m, "model.safetensors"), 5, "model.safetensors"),
    "no-tokenizer": (lambda m, p: _remove(m, *TOKENIZER_FILES), 60, "tokenizer.json"),
    "small-tokenizer": (lambda m, p: _swap_tokenizer(m, p["bpe400"]), 60, "400"),
    "big-tokenizer": (lambda m, p: _replace(m, {"config.json": p["small_vocab"] / "config.json",
                                                 "model.safetensors": p["small_vocab"] / "model.safetensors"}),
                      60, "1000"),
    # transformers 5 loads what matches and reports the rest missing (a head newly initialised: 59); transformers
    # 4.57 (the Optimum lane) refuses the state dict as corrupted (5)
    "other-architecture": (lambda m, p: _replace(m, {"model.safetensors": p["distil"] / "model.safetensors"}),
                           *((59, "newly initialised") if transformers_major() >= 5 else (5, "corrupted"))),
    "corrupt-config": (lambda m, p: _replace(m, {"config.json": b'{"model_type": "bert", "hidden_size": '}), 5,
                       "config.json"),
    "empty-safetensors": (lambda m, p: _replace(m, {"model.safetensors": b""}), 5, "model.safetensors"),
    "no-head": (lambda m, p: _replace(m, {"config.json": p["bare"] / "config.json",
                                          "model.safetensors": p["bare"] / "model.safetensors"}), 59, "head"),
}


def _args(command: str, model: Path, tmp: Path, p: dict) -> list[str]:
    """The command line of ``command`` on ``model`` (a model folder; card and merge: a run directory)."""
    if command == "batch-predict-torch":
        return ["batch-predict", "-m", str(model), "-d", str(p["tweets12"]), "-o", str(tmp / "p.parquet"),
                "--backend", "torch", "--dtype", "fp32", "--no-progress"]
    if command == "batch-predict-onnx":
        return ["batch-predict", "-m", str(model), "-d", str(p["tweets12"]), "-o", str(tmp / "p.parquet"),
                "--backend", "onnx", "--dtype", "fp32", "--no-progress"]
    if command == "evaluate":
        return ["evaluate", "-m", str(model), "-d", str(p["tweets12"]), "--no-progress"]
    if command == "train":
        return ["train", "--base-model", str(model), "--dataset", str(TWEETS_TRAIN), "-o", str(tmp / "out" / "run"),
                "--limit", "32", "--eval-dataset", str(p["tweets12"]), "--batch-size", "16", "--max-length", "32",
                "--set", "max_steps=1", "--no-progress"]
    if command == "export":
        return ["export", str(model), "-o", str(tmp / "out" / "onnx"), "--eval-dataset", str(p["tweets12"]),
                "--max-examples", "8", "--bench-rows", "8", "--json"]
    if command == "merge":
        return ["merge", str(model), "-o", str(tmp / "out" / "merged"), "--eval-dataset", str(p["tweets12"]),
                "--max-examples", "8", "--json"]
    if command == "card":
        return ["card", str(model), "-o", str(tmp / "out" / "README.md"), "--eval-dataset", str(p["tweets12"]),
                "--json"]
    raise AssertionError(command)


def _model_for(command: str, p: dict, tmp: Path) -> tuple[Path, Path]:
    """(what the command is given, the model folder inside it to break) - a copy the case may break."""
    if command == "merge":
        run = _copy(p["lora_run"], tmp / "run")
        return run, run / "model"
    if command == "card":
        run = _copy(p["full_run"], tmp / "run")
        return run, run / "model"
    m = _copy(p["good"], tmp / "m")
    return m, m


# (command, defect): every command on every defect that is a defect for it. A bare encoder is a good base model
# to train from, and merge's folder is a LoRA adapter (its own cases below). The retry (fixed model) runs where it
# is cheap: the refusal is asserted in every case.
CASES = [
    *[(c, d) for c in ("batch-predict-torch", "evaluate") for d in DEFECTS],
    *[("batch-predict-onnx", d) for d in ("no-tokenizer", "small-tokenizer", "big-tokenizer", "corrupt-config",
                                          "no-head", "no-config")],
    *[("train", d) for d in ("no-tokenizer", "small-tokenizer", "big-tokenizer", "corrupt-config", "empty-safetensors",
                             "no-weights")],
    *[("export", d) for d in ("no-tokenizer", "small-tokenizer", "big-tokenizer", "corrupt-config", "empty-safetensors")],
    *[("card", d) for d in ("no-tokenizer", "small-tokenizer", "big-tokenizer", "corrupt-config")],
]
RETRY = {"batch-predict-torch", "evaluate"}  # and every command that retrains or re-evaluates, once (no-tokenizer)


@pytest.mark.parametrize("command,defect", CASES, ids=[f"{c}:{d}" for c, d in CASES])
def test_model_missing_a_piece_is_refused_in_one_line(parts, tmp_path, command, defect):
    given, folder = _model_for(command, parts, tmp_path)
    breaker, code, needle = DEFECTS[defect]
    fix = breaker(folder, parts)
    args = _args(command, given, tmp_path, parts)
    if defect == "no-head" and command.startswith("batch-predict"):  # a bare encoder's own task: embeddings
        args += ["--task", "text-classification"]
    refused_cleanly(args, [tmp_path], needle, code=code)
    if command in RETRY or (command in ("train", "card") and defect == "no-tokenizer"):
        fix()
        succeeds(args)


@pytest.mark.parametrize("defect", ["no-tokenizer", "small-tokenizer", "corrupt-adapter-config", "no-adapter-weights"])
def test_merge_of_an_adapter_missing_a_piece_is_refused(parts, tmp_path, defect):
    run, folder = _model_for("merge", parts, tmp_path)
    if defect == "no-tokenizer":
        fix, code, needle = _remove(folder, *TOKENIZER_FILES), 60, "tokenizer.json"
    elif defect == "small-tokenizer":
        fix, code, needle = _swap_tokenizer(folder, parts["bpe400"]), 60, "400"
    elif defect == "corrupt-adapter-config":
        fix, code, needle = _replace(folder, {"adapter_config.json": b'{"peft_type": '}), 5, "adapter_config.json"
    else:
        fix, code, needle = _remove(folder, "adapter_model.safetensors"), 5, "adapter"
    args = _args("merge", run, tmp_path, parts)
    refused_cleanly(args, [tmp_path], needle, code=code)
    if defect == "no-tokenizer":
        fix()
        succeeds(args)


@pytest.mark.parametrize("command", ["batch-predict-torch", "evaluate", "export", "card"])
def test_run_directory_without_its_published_folder(parts, tmp_path, command):
    run = _copy(parts["full_run"], tmp_path / "run")
    shutil.move(str(run / "model"), str(tmp_path / "model.aside"))
    args = _args(command, run, tmp_path, parts)
    refused_cleanly(args, [tmp_path], "model/", code=5)
    shutil.move(str(tmp_path / "model.aside"), str(run / "model"))
    if command in RETRY:
        succeeds(args)


# --------------------------------------------------------------------------------------------------
# Item 14: checkpoints whose answers would be silently wrong for the task or the input
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_regression_checkpoint_as_text_classification_is_refused(parts, tmp_path, backend):
    m = _copy(parts["regression"], tmp_path / "m")
    args = _args(f"batch-predict-{backend}", m, tmp_path, parts)
    line = refused_cleanly(args + ["--task", "text-classification"], [tmp_path], "--task regression", code=59)
    assert "one output" in line
    if backend == "torch":
        import pandas as pd

        succeeds(args + ["--task", "regression"])
        out = pd.read_parquet(tmp_path / "p.parquet")
        assert "label" not in out.columns and out["score"].nunique() > 1  # values, not one label at 1.0


@pytest.mark.parametrize("command", ["batch-predict-torch", pytest.param("batch-predict-onnx", marks=pytest.mark.slow),
                                     "evaluate"])
def test_nli_checkpoint_given_single_texts_is_refused(parts, tmp_path, command):
    m = _copy(parts["nli"], tmp_path / "m")
    args = _args(command, m, tmp_path, parts)
    single = [a if a != str(parts["tweets12"]) else str(parts["nli_single"]) for a in args]
    refused_cleanly(single, [tmp_path], "text pairs", "--text-pair-column", code=59)
    if command != "batch-predict-onnx":
        pairs = [a if a != str(parts["tweets12"]) else str(parts["nli_pairs"]) for a in args]
        succeeds(pairs + ["--text-pair-column", "text_pair"])


def test_nli_label_names_in_any_case_or_the_config_say_pairs():
    from hubtune.tasks.base import checkpoint_task

    base = {"architectures": ["BertForSequenceClassification"], "num_labels": 3}
    for names in (["entailment", "neutral", "contradiction"], ["CONTRADICTION", "NEUTRAL", "ENTAILMENT"],
                  ["Entailment", "Not_Entailment"]):
        cfg = {**base, "id2label": {str(i): n for i, n in enumerate(names)}}
        assert checkpoint_task(cfg).pairs, names
    assert checkpoint_task({**base, "finetuning_task": "mnli"}).pairs
    assert not checkpoint_task({**base, "id2label": {"0": "negative", "1": "neutral", "2": "positive"}}).pairs


def test_single_label_checkpoint_with_one_output_is_refused_as_text_classification():
    from hubtune.core.errors import ModelTaskError
    from hubtune.tasks.loading import resolve_task

    cfg = {"architectures": ["BertForSequenceClassification"], "num_labels": 1}
    with pytest.raises(ModelTaskError, match="--task regression"):
        resolve_task(cfg, "text-classification", source="m")
    with pytest.raises(ModelTaskError, match="--task regression"):
        resolve_task(cfg, "multi-label-classification", source="m")
    assert resolve_task(cfg, None, source="m")[0] == "regression"


# --------------------------------------------------------------------------------------------------
# Item 1 as reported: a folder of config.json + weights predicts, and trains, with a 5-token vocabulary
# --------------------------------------------------------------------------------------------------
def test_folder_without_tokenizer_files_names_them_and_the_fix(parts, tmp_path):
    m = tmp_path / "m"
    m.mkdir()
    for n in ("config.json", "model.safetensors"):
        shutil.copy(parts["good"] / n, m / n)
    line = refused_cleanly(_args("batch-predict-torch", m, tmp_path, parts), [tmp_path], code=60)
    for word in ("no tokenizer files", "tokenizer.json", "vocab.txt", "save_pretrained"):
        assert word in line, line


def test_train_from_a_folder_without_tokenizer_writes_nothing(parts, tmp_path):
    m = tmp_path / "m"
    m.mkdir()
    for n in ("config.json", "model.safetensors"):
        shutil.copy(parts["good"] / n, m / n)
    refused_cleanly(_args("train", m, tmp_path, parts), [tmp_path], "tokenizer", code=60)
    assert not (tmp_path / "out").exists()


def test_tokenizer_fit_rules():
    """Ids beyond the embedding matrix are always refused; a vocabulary under half the rows is another model's;
    the usual padding of the matrix to a multiple of 64 or 128 is fine."""
    from types import SimpleNamespace

    from hubtune.core.errors import TokenizerError
    from hubtune.core.modeling import check_tokenizer_fits

    class Tok:
        def __init__(self, n):
            self.n = n

        def __len__(self):
            return self.n

    for n, rows in ((30522, 30522), (50257, 50304), (32100, 32128), (151665, 151936)):
        check_tokenizer_fits(Tok(n), SimpleNamespace(vocab_size=rows), "m")
    for n, rows in ((30523, 30522), (5, 30522), (400, 30522)):
        with pytest.raises(TokenizerError):
            check_tokenizer_fits(Tok(n), SimpleNamespace(vocab_size=rows), "m")


def test_tokenizer_fit_counts_the_ids_text_gets():
    """A special token past the rows that the tokenizer never inserts (a Qwen2 tokenizer's unused eos) fits; a pad
    token or an added word past the rows does not: every batch, or the word's every use, would read past them."""
    from types import SimpleNamespace

    from transformers import AutoTokenizer

    from hubtune.core.errors import TokenizerError
    from hubtune.core.modeling import check_tokenizer_fits

    rows = SimpleNamespace(vocab_size=30522)
    tok = AutoTokenizer.from_pretrained(str(minilm_dir()))
    tok.add_special_tokens({"additional_special_tokens": ["<unused>"]})
    check_tokenizer_fits(tok, rows, "m")
    for change in ({"pad_token": "<pad2>"}, ["newword"]):
        tok = AutoTokenizer.from_pretrained(str(minilm_dir()))
        tok.add_special_tokens(change) if isinstance(change, dict) else tok.add_tokens(change)
        with pytest.raises(TokenizerError, match="ids 30522 would index past"):
            check_tokenizer_fits(tok, rows, "m")



@pytest.mark.slow  # starts the embedded local Hub (imports MiniLM and the tweets): about a minute
def test_train_and_push_from_a_folder_without_tokenizer_is_refused(parts, tmp_path):
    m = tmp_path / "m"
    m.mkdir()
    for n in ("config.json", "model.safetensors"):
        shutil.copy(parts["good"] / n, m / n)
    hub = tmp_path / "hub"
    args = ["train-and-push", "--repo-id", "me/notok", "--base-model", str(m), "--dataset", str(TWEETS_TRAIN),
            "--local-hub", str(hub), "-o", str(tmp_path / "run"), "--set", "data.max_samples=32", "--json"]
    watch = [m, tmp_path / "run"]
    before = snapshot(*watch)
    res = cli(*args)
    # its step lines ([hubtune] local hub serving ..., train: ...) come first on stderr: the error is the last line
    assert res.returncode == 60, res.stderr[-2000:]
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("error: ") and "tokenizer.json" in lines[-1] and "Traceback" not in res.stderr
    assert sum(line.startswith("error") for line in lines) == 1
    assert_unchanged(before, *watch)
