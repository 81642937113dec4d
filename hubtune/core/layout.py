"""The run directory that ``hubtune train`` writes and every later step reads.

    RUN_DIR/
      model/              full model (safetensors) or LoRA adapter, + tokenizer and config.json with label names
      metrics.json        {"train": {...}, "eval": {...}}: Trainer figures and the evaluation of the saved model
      config.yaml         the resolved configuration
      run_summary.json    versions, data sizes, label map, timings, mode, base model, dataset
      checkpoints/        Trainer checkpoints (for --resume); never published
      merged/             (merge) the LoRA adapter merged into a standalone model
      <published>/onnx/   (export) ONNX variants inside the folder that will be published
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RunLayout:
    root: Path

    @classmethod
    def of(cls, root: str | Path) -> "RunLayout":
        return cls(Path(root))

    @property
    def model_dir(self) -> Path:
        return self.root / "model"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.json"

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def summary(self) -> Path:
        return self.root / "run_summary.json"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def started_config(self) -> Path:
        """The config a training started with, beside its checkpoints: what a --resume must bring again."""
        return self.checkpoints / "hubtune_config.yaml"

    @property
    def merged_dir(self) -> Path:
        return self.root / "merged"


def last_complete_checkpoint(checkpoints: Path, *, drop_incomplete: bool = False) -> str | None:
    """The newest Trainer checkpoint that was saved whole (its ``trainer_state.json``, written last, parses), or None.

    A checkpoint cut short (a full disk, a kill) is no checkpoint: with ``drop_incomplete`` the unfinished ones
    newer than the last complete one are removed, so the Trainer writes them anew and never rotates by them.
    """
    import json
    import re
    import shutil

    found = sorted(((int(m.group(1)), p) for p in checkpoints.iterdir()
                    if p.is_dir() and (m := re.fullmatch(r"checkpoint-(\d+)", p.name))), reverse=True)
    for _, ckpt in found:
        try:
            json.loads((ckpt / "trainer_state.json").read_text(encoding="utf-8"))["global_step"]
        except (OSError, ValueError, KeyError, TypeError):
            if drop_incomplete:
                shutil.rmtree(ckpt, ignore_errors=True)
            continue
        return str(ckpt)
    return None
