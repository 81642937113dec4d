"""The one error tree of hubtune.

Every error says what was found, what was expected, and the flag or command that fixes it.
Leaves also inherit the matching builtin, so callers can catch ``ValueError``/``FileNotFoundError``.
The CLI maps each class to a one-line message and its own ``exit_code``.
"""

from __future__ import annotations


class HubtuneError(Exception):
    """Base of every error hubtune raises on purpose."""

    exit_code = 1


# --- configuration and input -------------------------------------------------------------------
class ConfigError(HubtuneError, ValueError):
    exit_code = 2


class DataError(HubtuneError, ValueError):
    exit_code = 3


class ColumnNotFoundError(DataError, LookupError):
    exit_code = 3


class EmptyDatasetError(DataError):
    exit_code = 3


class LabelError(DataError):
    exit_code = 3


class DataEncodingError(DataError):
    exit_code = 3


class DatasetNotFoundError(DataError, FileNotFoundError):
    exit_code = 3


class OutputExistsError(HubtuneError, FileExistsError):
    exit_code = 4


class OutputNotWritableError(HubtuneError, PermissionError):
    """An output path that cannot be created or written (read-only directory, no permission)."""

    exit_code = 40


class ModelLoadError(HubtuneError, OSError):
    exit_code = 5


class TrainingError(HubtuneError, RuntimeError):
    exit_code = 6


class MissingDependencyError(HubtuneError, ImportError):
    exit_code = 7


class StaleOnnxError(ModelLoadError):
    """An onnx/ folder exported from other weights than those beside it."""

    exit_code = 5


class UnsafeModelError(ModelLoadError):
    """A model config that an advised-vulnerable library would turn into code execution."""

    exit_code = 8


class UnsafeCheckpointError(HubtuneError, ValueError):
    """A checkpoint that does not load with ``torch.load(weights_only=True)``."""

    exit_code = 9


# --- gates (one exit code per gate) --------------------------------------------------------------
class GateError(HubtuneError, RuntimeError):
    exit_code = 10


class MetricGateError(GateError):
    exit_code = 11


class MergeParityError(GateError):
    exit_code = 12


class ExportParityError(GateError):
    exit_code = 13


class VariantRefusedError(ExportParityError):
    """An ONNX variant the run requires (``--require-variant``) was refused by its gate."""

    exit_code = 13


class VerificationError(GateError):
    exit_code = 14


# --- the Hub ------------------------------------------------------------------------------------
class HubError(HubtuneError, RuntimeError):
    exit_code = 20


class HubAuthError(HubError, PermissionError):
    exit_code = 21


class HubUnreachableError(HubError, ConnectionError):
    exit_code = 22


class HubRepoNotFoundError(HubError, LookupError):
    exit_code = 23


# --- prediction ---------------------------------------------------------------------------------
class PredictError(HubtuneError, RuntimeError):
    exit_code = 30


class ResumeMismatchError(PredictError, ValueError):
    exit_code = 31


class RowError(PredictError, ValueError):
    exit_code = 32


# --- issue 16: evaluate metric modules, bottleneck adapters, language-model publishing ---
class MetricModuleError(HubtuneError, LookupError):
    """An ``evaluate`` metric module (``--metric``) that cannot be found or loaded."""

    exit_code = 55


class MetricComputeError(HubtuneError, ValueError):
    """An ``evaluate`` metric module that fails on the predictions or returns no number."""

    exit_code = 56


class AdaptersUnavailableError(MissingDependencyError):
    """``--mode adapter`` without a usable ``adapters`` library (missing, or no release for this transformers)."""

    exit_code = 57


class PublishRefusedError(HubtuneError, ValueError):
    """A run ``train-and-push`` cannot publish in a form ``pipeline()`` loads (the message says what to do instead)."""

    exit_code = 58


# --- issue 15: install, consume step, local-Hub datasets, workflows ---
class ImportRepoIdError(HubtuneError, ValueError):
    """``hubtune hub import``: a malformed REPO_ID (neither ORG/NAME nor a canonical NAME such as imdb)."""

    exit_code = 24


# --- issue 15: errors, output, help ---
class OverrideSyntaxError(ConfigError):
    """``--set`` given something other than KEY=VALUE."""

    exit_code = 15


class MetricGateSpecError(ConfigError):
    """``--min-metric`` given something other than NAME=NUMBER."""

    exit_code = 16


class OptionRangeError(ConfigError):
    """A numeric option outside the range it accepts (``--batch-size 0``)."""

    exit_code = 17


class ExportUnsupportedError(HubtuneError, NotImplementedError):
    """A model torch.onnx cannot export (a family whose graph torch.export cannot trace): predict with PyTorch."""

    exit_code = 19


class RunFileError(HubtuneError, ValueError):
    """A file of a run directory (metrics.json, run_summary.json, a manifest) that does not parse."""

    exit_code = 18


class LabelMismatchError(LabelError):
    """Dataset labels that are not the model's labels (ids 0/1 against named classes)."""

    exit_code = 41


class ModelNotFoundError(ModelLoadError, FileNotFoundError):
    """A model path that is neither an existing directory nor a Hub id."""

    exit_code = 5


class ModelTaskError(ModelLoadError, ValueError):
    """A checkpoint without the trained head for the task asked (its weights would be newly initialised on load):
    refused before any prediction, evaluation, export or card."""

    exit_code = 59


# --- issue 35: trust under bad input ---
class RepoIdError(HubtuneError, ValueError):
    """A repo id or revision the Hub would refuse (``me/bad..id``, ``refs/pr/1`` as a branch): checked before any
    remote call, so nothing is created."""

    exit_code = 25


class UnsafePathError(HubtuneError, ValueError):
    """A file to publish or import that leaves its folder (a symlink to ``/etc/passwd``, ``..``)."""

    exit_code = 26


class TemplateError(ConfigError):
    """A card template (``card --template``) that does not parse, found before any evaluation."""

    exit_code = 27


class ServerStartError(HubtuneError, OSError):
    """``hub serve`` / ``hub import`` that cannot start: a port in use or out of range, a root that is a file or
    read-only."""

    exit_code = 28


class PartError(PredictError, ValueError):
    """A part or shard file of ``batch-predict`` / ``merge-predictions`` (or its ``.meta.json``) that does not read."""

    exit_code = 33


class DiskFullError(HubtuneError, OSError):
    """No space left on the device while writing (the path named); nothing half-written is kept as complete."""

    exit_code = 42


class TokenizerError(ModelLoadError):
    """A model folder without tokenizer files, or a tokenizer whose vocabulary does not fit the model's embeddings:
    refused before any prediction, training, evaluation or export."""

    exit_code = 60


# --- disk full: one reading for every step that writes ---
DISK_FULL_MARGIN = 16 * 1024 * 1024  # free bytes under which a failed write is taken for a full disk


def disk_full(exc: BaseException, path: "str | None" = None) -> "DiskFullError | None":
    """The :class:`DiskFullError` a failed write ``exc`` means, or None when the disk is not why it failed.

    ENOSPC anywhere in the exception chain (or its text: safetensors and torch's zip writer lose the errno) says
    so; so does a write error while the file system holding ``path`` has under ``DISK_FULL_MARGIN`` free.
    """
    import errno
    import os
    import shutil

    seen, cur, says = set(), exc, False
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if getattr(cur, "errno", None) == errno.ENOSPC or "No space left on device" in str(cur):
            says = True
            break
        cur = cur.__cause__ or cur.__context__
    where = path or getattr(exc, "filename", None)
    if not says and where:
        probe = os.fspath(where)
        while probe and not os.path.exists(probe):
            parent = os.path.dirname(probe)
            probe = parent if parent != probe else ""
        try:
            says = bool(probe) and shutil.disk_usage(probe).free < DISK_FULL_MARGIN
        except OSError:
            says = False
    if not says:
        return None
    return DiskFullError(
        f"no space left on the device writing {where or 'the output'}; expected room for the output: free space "
        "there (or choose another output path) and run the same command again"
    )
