"""The model side of batch generation: a causal LM or an encoder-decoder loaded for its task, and the ways its
rows are generated (one interface: prompts' token ids -> the new token ids of each row and sequence).

``padded``      transformers' ``model.generate`` on batches of prompts of similar length (sorted, so little
                padding), padded on the side the task needs (a decoder: left), at most ``batch_size`` rows and
                ``max_batch_tokens`` tokens (prompt + new tokens) a batch
``continuous``  transformers' continuous batching (``model.generate_batch``: paged attention, requests joining
                and leaving the batch as they finish); causal LMs, greedy, without stop strings

Sampling is reproducible row by row whatever the batch: :class:`RowSeededSampler` applies transformers'
temperature / top-k / top-p warpers and adds Gumbel noise drawn from a generator seeded by (``--seed``, the row's
id, the sequence, the step), so the argmax that ``generate`` then takes is a draw from the warped distribution
that depends on nothing but the row. A shard, a ``--resume`` and a run with another ``--batch-size`` write the
same text for a row.

:func:`finish` reads one sequence: its text (cut before a ``--stop`` string), ``stop`` or ``length``, and the
tokens it generated (the end-of-sequence token or the one completing a stop string counted)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

from hubtune.core.errors import ConfigError, ModelLoadError

BATCHING = ("auto", "padded", "continuous")


@dataclass(frozen=True)
class GenSettings:
    """What changes a generated text (recorded in the manifest; a --resume must bring the same)."""

    max_new_tokens: int = 64
    do_sample: bool = False
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    seed: int = 0
    stop: tuple[str, ...] = ()
    num_return_sequences: int = 1

    def record(self) -> dict[str, Any]:
        return {"max_new_tokens": self.max_new_tokens, "do_sample": self.do_sample, "temperature": self.temperature,
                "top_p": self.top_p, "top_k": self.top_k, "seed": self.seed if self.do_sample else None,
                "stop": list(self.stop), "num_return_sequences": self.num_return_sequences}


def row_seed(seed: int, row_id: int, sequence: int) -> int:
    """The seed of one row's ``sequence``-th sampled text: a function of the run's seed and the row id only."""
    digest = hashlib.sha256(f"{seed}:{row_id}:{sequence}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def make_sampler(settings: GenSettings, seeds: Sequence[int], offset: int = 0) -> Any:
    """A :class:`transformers.LogitsProcessor` turning greedy decoding into per-row seeded sampling (``offset``:
    the tokens the rows generated before this ``generate`` call)."""
    import torch
    from transformers import LogitsProcessor, TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

    warpers = []
    if settings.temperature is not None and settings.temperature != 1.0:
        warpers.append(TemperatureLogitsWarper(settings.temperature))
    if settings.top_k:
        warpers.append(TopKLogitsWarper(settings.top_k))
    if settings.top_p is not None and settings.top_p < 1.0:
        warpers.append(TopPLogitsWarper(settings.top_p))

    class RowSeededSampler(LogitsProcessor):
        def __init__(self) -> None:
            self.first: int | None = None

        def __call__(self, input_ids: Any, scores: Any) -> Any:
            if self.first is None:
                self.first = int(input_ids.shape[1])
            step = int(input_ids.shape[1]) - self.first + offset
            scores = scores.float()
            for w in warpers:
                scores = w(input_ids, scores)
            noise = torch.empty_like(scores, device="cpu")
            for b, seed in enumerate(seeds):
                g = torch.Generator().manual_seed((seed + step * 1_000_003) % (1 << 63))
                noise[b] = torch.rand(scores.shape[-1], generator=g, dtype=torch.float32).clamp_(1e-20, 1.0)
            gumbel = -torch.log(-torch.log(noise)).to(scores.device)
            return scores + gumbel  # -inf (warped away) stays -inf

    return RowSeededSampler()


@dataclass
class Loaded:
    model: Any
    tokenizer: Any
    device: str
    dtype: str
    max_positions: int | None
    eos_ids: tuple[int, ...] = field(default_factory=tuple)


def load_generator(model_dir: Path, task: Any, *, source: str, device: str | None, dtype: str,
                   trust_remote_code: bool = False) -> Loaded:
    """The task's model (``task.auto_class``; a peft adapter folder on its base) and tokenizer, in eval mode; a
    load that leaves weights newly initialised is refused (exit 59), as is a tokenizer with neither pad nor eos."""
    import torch
    import transformers
    from transformers import AutoConfig, AutoTokenizer

    from hubtune.core.modeling import ensure_pad_token
    from hubtune.core.security import check_model_config
    from hubtune.tasks.base import check_loading_info, checkpoint_task

    dev = device or ("cuda" if torch.cuda.is_available() else "cpu")
    torch_dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[dtype]
    auto = getattr(transformers, str(task.auto_class))
    adapter = (model_dir / "adapter_config.json").is_file() and not (model_dir / "config.json").is_file()
    try:
        if adapter:
            from peft import AutoPeftModelForCausalLM, AutoPeftModelForSeq2SeqLM

            peft_auto = AutoPeftModelForSeq2SeqLM if task.encoder_decoder else AutoPeftModelForCausalLM
            model = peft_auto.from_pretrained(model_dir, dtype=torch_dtype).merge_and_unload()
        else:
            check_model_config(str(model_dir))
            config = AutoConfig.from_pretrained(model_dir, trust_remote_code=trust_remote_code)
            model, info = auto.from_pretrained(model_dir, dtype=torch_dtype, output_loading_info=True,
                                               trust_remote_code=trust_remote_code)
            check_loading_info(source, task.name, checkpoint_task(config, model_dir), info,
                               unused=getattr(task, "unused_missing", ()))
        tokenizer = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot load {source} as a {task.name} model ({type(exc).__name__}: {exc}); expected "
                             f"a checkpoint with a {task.auto_class} head and its tokenizer: fix --model or --task") from None
    ensure_pad_token(tokenizer, model.config, source)
    if model.generation_config is not None and model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    tokenizer.padding_side = task.padding_side
    model.to(dev).eval()
    eos = model.generation_config.eos_token_id if model.generation_config is not None else None
    eos_ids = tuple(eos) if isinstance(eos, (list, tuple)) else ((eos,) if eos is not None else ())
    if not eos_ids and tokenizer.eos_token_id is not None:
        eos_ids = (tokenizer.eos_token_id,)
    cfg = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    limit = getattr(cfg, "max_position_embeddings", None) or getattr(cfg, "n_positions", None)
    if task.encoder_decoder:
        limit = None if getattr(cfg, "relative_attention_num_buckets", None) else limit  # t5: relative positions
    return Loaded(model, tokenizer, dev, dtype, int(limit) if limit else None, eos_ids)


def generation_config(loaded: Loaded, settings: GenSettings) -> Any:
    from transformers import GenerationConfig

    base = loaded.model.generation_config.to_dict() if loaded.model.generation_config is not None else {}
    keep = {k: base[k] for k in ("decoder_start_token_id", "forced_bos_token_id", "forced_eos_token_id",
                                 "bos_token_id") if base.get(k) is not None}
    return GenerationConfig(**keep, max_new_tokens=settings.max_new_tokens, do_sample=False, num_beams=1,
                            eos_token_id=list(loaded.eos_ids) or None, pad_token_id=loaded.tokenizer.pad_token_id,
                            stop_strings=list(settings.stop) or None)


def batches(lengths: Sequence[int], batch_size: int, max_batch_tokens: int, new_tokens: int) -> list[list[int]]:
    """Positions of ``lengths`` in batches of similar length (sorted), each at most ``batch_size`` rows and
    ``max_batch_tokens`` tokens (rows x (longest prompt + new tokens)); a row over the token bound alone is a
    batch of one."""
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    out: list[list[int]] = []
    cur: list[int] = []
    for i in order:
        width = lengths[i] + new_tokens
        if cur and (len(cur) + 1 > batch_size or (len(cur) + 1) * width > max_batch_tokens):
            out.append(cur)
            cur = []
        cur.append(i)
    if cur:
        out.append(cur)
    return out


ROUND_TOKENS = 16  # a causal LM's batch drops its finished rows after every ROUND_TOKENS new tokens


def generate_padded(loaded: Loaded, prompts: Sequence[Sequence[int]], seeds: Sequence[int] | None,
                    settings: GenSettings, *, batch_size: int, max_batch_tokens: int, encoder_decoder: bool,
                    round_tokens: int | None = ROUND_TOKENS) -> list[list[int]]:
    """The new token ids of every prompt (one entry per prompt; ``seeds``: one per prompt when sampling). A
    causal LM's batch generates ``round_tokens`` at a time and continues only its unfinished rows on the same KV
    cache (transformers' cache continuation: ``generate(past_key_values=...)``), so rows that ended stop costing
    compute; None: one ``generate`` call per batch."""
    import torch

    pad = loaded.tokenizer.pad_token_id
    out: list[list[int]] = [[] for _ in prompts]
    for batch in batches([len(p) for p in prompts], batch_size, max_batch_tokens, settings.max_new_tokens):
        width = max(len(prompts[i]) for i in batch)
        ids = torch.full((len(batch), width), pad, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for r, i in enumerate(batch):
            n = len(prompts[i])
            sl = slice(width - n, width) if loaded.tokenizer.padding_side == "left" else slice(0, n)
            ids[r, sl] = torch.tensor(list(prompts[i]), dtype=torch.long)
            mask[r, sl] = 1
        rows_seeds = [seeds[i] for i in batch] if settings.do_sample and seeds is not None else None
        step = settings.max_new_tokens if encoder_decoder or not round_tokens else round_tokens
        for r, new in enumerate(_generate_rounds(loaded, ids, mask, rows_seeds, settings, step)):
            out[batch[r]] = new[1:] if encoder_decoder else new
    return out


def _generate_rounds(loaded: Loaded, ids: Any, mask: Any, seeds: list[int] | None, settings: GenSettings,
                     step: int) -> list[list[int]]:
    """One batch's new tokens, ``step`` tokens a ``generate`` call; the rows that finished leave the batch (and
    its KV cache) between calls."""
    import torch
    from transformers import LogitsProcessorList

    rows = list(range(ids.shape[0]))
    new: list[list[int]] = [[] for _ in rows]
    cache = None
    done = 0
    eos = set(loaded.eos_ids)
    stop_check = settings.stop and _stop_checker(loaded.tokenizer, settings.stop)
    while rows and done < settings.max_new_tokens:
        n = min(step, settings.max_new_tokens - done)
        gc = generation_config(loaded, replace(settings, max_new_tokens=n))
        last = done + n >= settings.max_new_tokens
        gc.return_dict_in_generate = not last  # the KV cache comes back to continue the unfinished rows
        extra: dict[str, Any] = {}
        if seeds is not None:
            extra["logits_processor"] = LogitsProcessorList([make_sampler(settings, [seeds[r] for r in rows], done)])
        if settings.stop:
            extra["tokenizer"] = loaded.tokenizer
        if cache is not None:
            extra["past_key_values"] = cache
        with torch.inference_mode():
            res = loaded.model.generate(input_ids=ids.to(loaded.device), attention_mask=mask.to(loaded.device),
                                        generation_config=gc, **extra)
        seqs = (res if last else res.sequences).cpu()
        fresh = seqs[:, ids.shape[1]:] if not loaded.model.config.is_encoder_decoder else seqs
        keep = []
        for k, r in enumerate(rows):
            tokens = fresh[k].tolist()
            new[r].extend(tokens)
            if loaded.model.config.is_encoder_decoder:
                continue
            if not (eos & set(tokens)) and not (stop_check and stop_check(new[r])) and len(tokens) == n:
                keep.append(k)
        done += n
        if last or not keep or loaded.model.config.is_encoder_decoder:
            break
        cache = res.past_key_values
        index = torch.tensor(keep, dtype=torch.long)
        if len(keep) < len(rows):
            cache.batch_select_indices(index.to(loaded.device))
        ids = seqs[index]
        mask = torch.cat([mask[index], torch.ones((len(keep), n), dtype=mask.dtype)], dim=1)
        rows = [rows[k] for k in keep]
    return new


def _stop_checker(tokenizer: Any, stop: Sequence[str]) -> Any:
    def hit(tokens: list[int]) -> bool:
        text = tokenizer.decode(tokens, skip_special_tokens=True)
        return any(s in text for s in stop if s)

    return hit


def generate_continuous(loaded: Loaded, prompts: Sequence[Sequence[int]], settings: GenSettings) -> list[list[int]]:
    """The new token ids of every prompt by transformers' continuous batching (greedy, no stop strings)."""
    gc = generation_config(loaded, settings)
    results = loaded.model.generate_batch(inputs=[list(p) for p in prompts], generation_config=gc, progress_bar=False)
    out = []
    for i in range(len(prompts)):
        res = results.get(f"req_{i}")
        if res is None or getattr(res, "error", None):
            raise ConfigError(f"continuous batching failed on prompt {i} ({getattr(res, 'error', 'no result')}); "
                              "pass --batching padded")
        out.append(list(res.generated_tokens))
    return out


def continuous_supported(loaded: Loaded, settings: GenSettings, encoder_decoder: bool) -> str | None:
    """Why continuous batching cannot run this generation (None: it can)."""
    if encoder_decoder:
        return "continuous batching runs decoder-only models"
    if settings.do_sample:
        return "continuous batching here is greedy only (sampling reproducible per row runs --batching padded)"
    if settings.stop:
        return "continuous batching takes no --stop strings"
    if not hasattr(loaded.model, "generate_batch"):
        return "the installed transformers has no continuous batching (generate_batch)"
    return None


def finish(tokenizer: Any, new_ids: Sequence[int], eos_ids: Sequence[int], pad_id: int | None,
           stop: Sequence[str], max_new_tokens: int, decode: Any = None) -> tuple[str, str, int]:
    """(text, finish reason ``stop``/``length``, tokens generated) of one generated sequence: cut at the first
    end-of-sequence token (counted), or before the first ``stop`` string (the token completing it counted);
    ``decode``: token ids -> text (default: the tokenizer's, special tokens skipped)."""
    decode = decode or (lambda body: tokenizer.decode(body, skip_special_tokens=True))
    ids = list(new_ids)
    end = next((k for k, t in enumerate(ids) if t in eos_ids), None)
    body = ids[:end + 1] if end is not None else ids  # the EOS decoded as the pipeline does (skipped when special)
    text = decode(body)
    if stop:
        hits = [text.find(s) for s in stop if s and s in text]
        if hits:
            cut = min(hits)
            # the fewest tokens whose text holds a stop string: the token that completed it
            lo, hi = 1, len(body)
            while lo < hi:
                mid = (lo + hi) // 2
                if any(s in decode(body[:mid]) for s in stop if s):
                    hi = mid
                else:
                    lo = mid + 1
            return text[:cut], "stop", lo
    if end is not None:
        return text, "stop", end + 1
    if pad_id is not None and pad_id not in eos_ids:
        while body and body[-1] == pad_id:
            body = body[:-1]
    n = len(body)
    return text, ("length" if n >= max_new_tokens else "stop"), n
