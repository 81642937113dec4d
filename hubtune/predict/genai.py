"""``batch-predict --backend onnx`` for a causal LM: ONNX Runtime generation with onnxruntime-genai
(``pip install 'hubtune[genai]'``).

The model folder is converted once by onnxruntime-genai's model builder (``python -m
onnxruntime_genai.models.builder -p fp32 -e cpu|cuda``) into ``$HF_HOME/hubtune/genai/<weights sha256>-<ep>/``; a
family its builder does not support (gpt2, t5, bart, ...) is refused in one line. Rows are generated greedily in
batches of prompts of the same length (no padding: onnxruntime-genai's padded batches do not reproduce a row
generated alone), and the greedy outputs of a sample are compared with PyTorch's before the run (a difference is a
refusal naming ``--backend torch``). Sampling stays on ``--backend torch``, whose draws are seeded per row."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Sequence

from hubtune.core.errors import ConfigError, MissingDependencyError, ModelLoadError

INSTALL = "pip install 'hubtune[genai]'"


def genai_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("onnxruntime_genai") is not None


def built_dir(weights_sha256: str, device: str) -> Path:
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME") or "~/.cache", "huggingface")
    ep = "cuda" if device.startswith("cuda") else "cpu"
    return Path(os.path.expanduser(home)) / "hubtune" / "genai" / f"{weights_sha256[:16]}-{ep}-fp32"


def build(model_dir: Path, weights_sha256: str, device: str, source: str) -> Path:
    """The onnxruntime-genai folder of ``model_dir`` (built once, cached by the weights' sha256)."""
    if not genai_available():
        raise MissingDependencyError(f"--backend onnx generates with onnxruntime-genai, which is not installed; "
                                     f"expected it: {INSTALL}, or pass --backend torch")
    out = built_dir(weights_sha256 or hashlib.sha256(str(model_dir).encode()).hexdigest(), device)
    if (out / "genai_config.json").is_file():
        return out
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    ep = "cuda" if device.startswith("cuda") else "cpu"
    done = subprocess.run([sys.executable, "-m", "onnxruntime_genai.models.builder", "-i", str(model_dir), "-o", str(tmp),
                           "-p", "fp32", "-e", ep, "-c", str(tmp) + ".cache"], capture_output=True, text=True)
    import shutil

    shutil.rmtree(str(tmp) + ".cache", ignore_errors=True)
    if done.returncode != 0 or not (tmp / "genai_config.json").is_file():
        shutil.rmtree(tmp, ignore_errors=True)
        text = (done.stderr or done.stdout).strip().splitlines()
        last = text[-1] if text else f"exit {done.returncode}"
        if "not currently supported" in (done.stderr + done.stdout) or "NotImplementedError" in done.stderr:
            raise ConfigError(f"--backend onnx: onnxruntime-genai's model builder does not support {source}'s "
                              f"architecture ({last.strip()}); expected a family it builds (llama, mistral, qwen2, "
                              "phi3, gemma, ...): pass --backend torch")
        raise ModelLoadError(f"--backend onnx: onnxruntime-genai's model builder failed on {source} ({last.strip()}); "
                             "expected a model it converts: pass --backend torch")
    out.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, out)
    return out


class GenaiModel:
    """An onnxruntime-genai model answering like :func:`hubtune.predict.generators.generate_padded` (greedy)."""

    def __init__(self, folder: Path) -> None:
        import onnxruntime_genai as og

        self.og = og
        self.model = og.Model(str(folder))
        self.folder = folder

    def generate(self, prompts: Sequence[Sequence[int]], max_new_tokens: int, batch_size: int) -> list[list[int]]:
        import numpy as np

        og = self.og
        out: list[list[int]] = [[] for _ in prompts]
        by_length: dict[int, list[int]] = {}
        for i, p in enumerate(prompts):
            by_length.setdefault(len(p), []).append(i)
        for length, rows in sorted(by_length.items()):
            for b in range(0, len(rows), batch_size):
                batch = rows[b:b + batch_size]
                params = og.GeneratorParams(self.model)
                params.set_search_options(max_length=length + max_new_tokens, do_sample=False, batch_size=len(batch))
                gen = og.Generator(self.model, params)
                gen.append_tokens(np.asarray([list(prompts[i]) for i in batch], dtype=np.int32))
                while not gen.is_done():
                    gen.generate_next_token()
                for k, i in enumerate(batch):
                    out[i] = [int(t) for t in gen.get_sequence(k)][length:]
        return out


def check_genai_settings(settings: Any) -> None:
    if settings.do_sample:
        raise ConfigError("--backend onnx (onnxruntime-genai) generates greedily here; sampling seeded per row "
                          "runs on --backend torch: drop --temperature/--top-p/--top-k or pass --backend torch")
