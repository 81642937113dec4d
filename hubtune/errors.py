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
    exit_code = 4


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
