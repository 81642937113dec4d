"""The verify step: pull a pushed revision in a fresh process with an empty cache and check its predictions.

``verify`` runs ``python -m hubtune.publish.verify`` with only HF_ENDPOINT/HF_TOKEN and a new, empty HF_HOME; the
child loads the repo with ``transformers.pipeline`` (and ONNX Runtime from ``onnx/`` when published) and
predicts the golden examples (an SFT model: its greedy generations of the held-out prompts, ``sft_predict``). Predictions must equal those of the local folder, computed by the same code.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hubtune.core.errors import VerificationError
from hubtune.tasks.registry import find_task, get_task


@dataclass
class VerifyOptions:
    repo_id: str
    revision: str
    texts: list[str]
    expected: dict[str, list[str]]  # backend -> labels of the local folder ("pytorch", "onnx")
    onnx_file: str | None = None  # e.g. "model.onnx" inside onnx/; None: PyTorch only
    endpoint: str | None = None
    token: str | None = None
    timeout_s: int = 900
    task: str = "text-classification"  # or fill-mask / text-generation: outputs from lm_predict
    max_new_tokens: int | None = None  # set: an SFT model's greedy generations of each prompt (sft_predict)


@dataclass
class VerifyResult:
    ok: bool
    repo_id: str
    revision: str
    checked: dict[str, dict[str, Any]] = field(default_factory=dict)
    seconds: float = 0.0


def onnx_beside_weights(model_ref: str, onnx_file: str, revision: str | None) -> Path:
    """``onnx/ONNX_FILE`` of a folder or of the same Hub snapshot ``pipeline()`` loaded, refused
    (:class:`~hubtune.core.errors.StaleOnnxError`) when its ``export_info.json`` names other weights."""
    from huggingface_hub import hf_hub_download

    from hubtune.core.onnx_tools import INFO_FILE, check_matches_weights
    from hubtune.core.parity import weight_files

    local = Path(model_ref)
    if local.is_dir():
        path, weights_dir = local / "onnx" / onnx_file, local
    else:
        path = Path(hf_hub_download(model_ref, f"onnx/{onnx_file}", revision=revision))
        weights_dir = path.parent.parent  # the same snapshot: onnx/ beside the weights pipeline() loaded
        try:
            hf_hub_download(model_ref, f"onnx/{INFO_FILE}", revision=revision)
        except Exception:  # noqa: BLE001 - an export without export_info.json: nothing to check against
            pass
    if weight_files(weights_dir):
        check_matches_weights(path, weights_dir)  # an onnx/ exported from other weights is refused
    return path


def predict_labels(model_ref: str, texts: list[str], *, revision: str | None = None, onnx_file: str | None = None) -> dict[str, list[str]]:
    """Labels from ``pipeline()`` (and from ONNX Runtime over ``onnx/``) of a single-label classifier."""
    return task_predict(model_ref, "text-classification", texts, revision=revision, onnx_file=onnx_file)


SCORE_TOLERANCE = 1e-4  # scores of the pulled model against the local folder's


def task_predict(model_ref: str, task: str, texts: list[str], *, revision: str | None = None,
                 threshold: float = 0.5, onnx_file: str | None = None) -> dict[str, list[Any]]:
    """What ``pipeline()`` answers for a classifier of ``task`` (the task reads it): ``pytorch`` the labels
    (single-label: the top label; multi-label: those with a sigmoid score >= ``threshold``, joined by ","; regression: none; token
    classification: each entity as ``GROUP:start-end``, aggregation_strategy="simple"), ``pytorch_scores``
    the scores (every label's sigmoid; the value; each entity's score), compared within SCORE_TOLERANCE; with
    ``onnx_file`` also ONNX Runtime's over ``onnx/`` and, where published, OpenVINO's over ``openvino/``
    (:func:`onnx_task_answers`)."""
    from hubtune.core.security import check_model_config

    check_model_config(model_ref, revision=revision)
    out = get_task(task).pipeline_answers(model_ref, texts, revision, threshold)
    if onnx_file:
        out.update(onnx_task_answers(model_ref, task, texts, onnx_file, revision=revision, threshold=threshold))
    return out


def onnx_task_answers(model_ref: str, task: str, texts: list[str], onnx_file: str, *, revision: str | None = None,
                      threshold: float = 0.5) -> dict[str, list[Any]]:
    """ONNX Runtime's answers over ``onnx/ONNX_FILE`` (refused when it was exported from other weights):
    ``onnx`` the labels over ``threshold`` (multi-label), none (regression), or the tag of every token
    (token classification, special tokens left out); ``onnx_scores`` the sigmoid scores / the value; the same as
    ``openvino`` / ``openvino_scores`` from ``openvino/`` where the model has one."""
    import numpy as np
    from transformers import AutoConfig, AutoTokenizer

    from hubtune.core.onnx_tools import OrtClassifier

    spec = get_task(task)
    path = onnx_beside_weights(model_ref, onnx_file, revision)
    config = AutoConfig.from_pretrained(model_ref, revision=revision)
    tok = AutoTokenizer.from_pretrained(model_ref, revision=revision)
    names = [config.id2label[i] for i in range(len(config.id2label))]
    out: dict[str, list[Any]] = {}
    models = [("onnx", OrtClassifier(path, config))]
    ir = openvino_beside_weights(model_ref, revision)
    if ir is not None:  # openvino/ (export --openvino): OpenVINO's IR compiled at fp32 answers the same
        from hubtune.core.ov_session import OvSession

        models.append(("openvino", OrtClassifier(OvSession(ir, precision="fp32"), config)))
    for key, model in models:
        labels: list[Any] = []
        scores: list[Any] = []
        for i in range(0, len(texts), 16):
            enc = tok(texts[i : i + 16], padding=True, truncation=True, return_tensors="pt", return_special_tokens_mask=True)
            special = enc.pop("special_tokens_mask").numpy()
            logits = np.asarray(model(**enc).logits, dtype=np.float64)
            mask = enc["attention_mask"].numpy().astype(bool) & ~special.astype(bool)  # the tokens that are words
            got, got_scores = spec.logits_answer(logits, mask, names, threshold)
            labels += got
            scores += got_scores
        out[key] = labels
        if scores:
            out[f"{key}_scores"] = scores
    return out


def openvino_beside_weights(model_ref: str, revision: str | None) -> Path | None:
    """``openvino/openvino_model.xml`` of a folder or of the same Hub snapshot (with its ``.bin`` and
    ``export_info.json``), refused when exported from other weights; None where there is no ``openvino/``."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    from hubtune.core.onnx_tools import INFO_FILE, check_matches_weights
    from hubtune.core.ov_session import OV_BIN, OV_DIR, OV_XML
    from hubtune.core.parity import weight_files

    local = Path(model_ref)
    if local.is_dir():
        path = local / OV_DIR / OV_XML
        if not path.is_file():
            return None
    else:
        try:
            path = Path(hf_hub_download(model_ref, f"{OV_DIR}/{OV_XML}", revision=revision))
        except EntryNotFoundError:
            return None
        for name in (OV_BIN, INFO_FILE):
            hf_hub_download(model_ref, f"{OV_DIR}/{name}", revision=revision)
    if weight_files(path.parent.parent):
        check_matches_weights(path, path.parent.parent)  # an openvino/ exported from other weights is refused
    return path


def same_output(a: Any, b: Any) -> bool:
    """Equal labels; scores (lists of numbers) within SCORE_TOLERANCE."""
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(abs(float(x) - float(y)) <= SCORE_TOLERANCE for x, y in zip(a, b))
    return bool(a == b)
GEN_TOKENS = 8  # text-generation: greedy continuation length compared between the local and the pulled model


def lm_predict(model_ref: str, task: str, texts: list[str], *, revision: str | None = None,
               onnx_file: str | None = None) -> dict[str, list[str]]:
    """What a language model answers, deterministically: ``pipeline("fill-mask")``'s top token for each masked
    text, or ``pipeline("text-generation")``'s greedy continuation of each prompt; with ``onnx_file`` also ONNX
    Runtime's top token (fill-mask: at the mask; text-generation: the next token) from ``onnx/``."""
    import numpy as np
    from transformers import AutoTokenizer, pipeline

    from hubtune.core.security import check_model_config

    check_model_config(model_ref, revision=revision)
    spec = get_task(task)
    pipe = pipeline(task, model=model_ref, revision=revision, device=-1)
    out = {"pytorch": spec.pipeline_texts(pipe, texts, GEN_TOKENS)}
    if onnx_file:
        from hubtune.core.onnx_tools import feeds_for, session

        path = onnx_beside_weights(model_ref, onnx_file, revision)
        sess = session(path)
        tok = AutoTokenizer.from_pretrained(model_ref, revision=revision)
        tokens = []
        for t in texts:
            enc = dict(tok([t], return_tensors="np"))
            feeds = feeds_for(sess, enc)
            if "position_ids" in {i.name for i in sess.get_inputs()}:  # Optimum's decoder graphs take them
                feeds["position_ids"] = np.arange(enc["input_ids"].shape[1], dtype=np.int64)[None, :]
            logits = sess.run(None, feeds)[0][0]
            ids = enc["input_ids"][0]
            pos = spec.answer_position(ids, tok)
            tokens.append(tok.decode([int(logits[pos].argmax())]).strip())
        out["onnx"] = tokens
    return out


def sft_predict(model_ref: str, task: str, prompts: list[Any], *, revision: str | None = None,
                max_new_tokens: int = GEN_TOKENS) -> dict[str, list[str]]:
    """An SFT model's greedy generation of each held-out prompt (a text or chat messages), new tokens only: the
    task's ``greedy_generations`` (``pipeline("text-generation")``, or ``AutoModelForSeq2SeqLM.generate``)."""
    from hubtune.core.security import check_model_config

    check_model_config(model_ref, revision=revision)
    return {"pytorch": get_task(task).greedy_generations(model_ref, prompts, revision, max_new_tokens)}


# how this machine reaches the Hub (a proxy, a private CA): the verifying process must reach it the same way
NETWORK_ENV = tuple(k for name in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "NO_PROXY") for k in (name, name.lower()))
NETWORK_ENV += ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR", "CURL_CA_BUNDLE")


def _child_env(endpoint: str | None, token: str | None, home: str) -> dict[str, str]:
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "VIRTUAL_ENV", "PYTHONPATH", "SYSTEMROOT") + NETWORK_ENV
    env = {k: v for k, v in os.environ.items() if k in keep}
    env.update({"HF_HOME": home, "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_XET": "1",
                "TOKENIZERS_PARALLELISM": "false", "HF_HUB_DISABLE_PROGRESS_BARS": "1"})
    ep = endpoint or os.environ.get("HF_ENDPOINT")
    if ep:
        env["HF_ENDPOINT"] = ep
    tok = token or os.environ.get("HF_TOKEN")
    if tok:
        env["HF_TOKEN"] = tok  # passed in the environment only, never on the command line or disk
    return env


def verify(opts: VerifyOptions) -> VerifyResult:
    """Pull ``repo_id@revision`` in a fresh process and compare its labels with ``opts.expected``."""
    t0 = time.perf_counter()
    request = {"repo_id": opts.repo_id, "revision": opts.revision, "texts": opts.texts, "onnx_file": opts.onnx_file,
               "task": opts.task, "max_new_tokens": opts.max_new_tokens}
    with tempfile.TemporaryDirectory(prefix="hubtune-verify-") as home:
        try:
            proc = subprocess.run(
                [sys.executable, "-m", "hubtune.publish.verify"], input=json.dumps(request), capture_output=True,
                text=True, env=_child_env(opts.endpoint, opts.token, home), timeout=opts.timeout_s, check=False,
            )
        except subprocess.TimeoutExpired:
            raise VerificationError(
                f"verification of {opts.repo_id}@{opts.revision[:12]} did not finish in {opts.timeout_s}s; "
                "expected the pushed model to load and predict (check the endpoint, or re-run with --resume)"
            ) from None
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise VerificationError(
            f"the pushed revision {opts.repo_id}@{opts.revision[:12]} failed to load in a fresh process ({last[:300]}); "
            "expected pipeline() to load it: check the published files, then re-run with --resume"
        )
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    checked: dict[str, dict[str, Any]] = {}
    ok = True
    for backend, want in opts.expected.items():
        have = got.get(backend) or []
        mism = [i for i, (a, b) in enumerate(zip(want, have)) if not same_output(a, b)] + list(range(min(len(want), len(have)), max(len(want), len(have))))
        checked[backend] = {"total": len(want), "agree": len(want) - len(mism), "mismatches": mism[:20]}
        ok = ok and not mism
    return VerifyResult(ok=ok, repo_id=opts.repo_id, revision=opts.revision, checked=checked,
                        seconds=round(time.perf_counter() - t0, 2))


def _main() -> int:
    req = json.loads(sys.stdin.read())
    import transformers

    transformers.logging.set_verbosity_error()
    spec = find_task(req.get("task")) or get_task("text-classification")
    if req.get("max_new_tokens"):  # an SFT model: its greedy generations of the held-out prompts
        out = sft_predict(req["repo_id"], spec.name, req["texts"], revision=req["revision"],
                          max_new_tokens=int(req["max_new_tokens"]))
    else:
        answer = lm_predict if spec.language_model else task_predict  # a language model: its probes' next tokens
        out = answer(req["repo_id"], spec.name, req["texts"], revision=req["revision"], onnx_file=req.get("onnx_file"))
    sys.stdout.write(json.dumps(out) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
