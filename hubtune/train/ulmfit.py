"""ULMFiT training techniques (Howard & Ruder 2018, "Universal Language Model Fine-tuning"), for the Trainer.

* discriminative learning rates: one optimizer param group per layer group, the head at the base lr and
  each lower group at the lr of the group above divided by ``decay`` (2.6 in the paper);
* the slanted triangular schedule: a ``LambdaLR`` multiplier rising linearly to 1 at ``cut_frac`` of the
  steps, then falling linearly to ``1/ratio``;
* gradual unfreezing: a ``TrainerCallback`` that trains the top group only in epoch 1 and unfreezes one
  more group below at each later epoch (a run with fewer epochs than groups is warned: the lowest never train).

Layer groups, bottom to top: ``embeddings`` (everything below the first transformer block),
``layer.0`` ... ``layer.N-1`` (the largest ``nn.ModuleList`` of the model: ``encoder.layer``,
``transformer.h``, ``layers``), then ``head`` (the classifier/pooler/final norm: everything after).

A pieces module, not a recipe: the classifier recipe (:mod:`hubtune.train.classifier`) uses it for the
``ulmfit: {...}`` options. It imports no other train module.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hubtune.core.errors import TrainingError


@dataclass
class LayerGroups:
    names: list[str]  # bottom to top
    params: list[list[tuple[str, Any]]]  # (name, parameter) per group, same order

    def __len__(self) -> int:
        return len(self.names)


def _blocks_prefix(model: Any) -> tuple[str, int]:
    import torch.nn as nn

    best: tuple[str, int] = ("", 0)
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) > best[1] and any(p.numel() for p in module.parameters()):
            best = (name, len(module))
    if not best[1]:
        raise TrainingError(
            f"no stack of transformer blocks (nn.ModuleList) found in {type(model).__name__}; "
            "expected an encoder/decoder with layers for ulmfit options (unset ulmfit.*)"
        )
    return best


def layer_groups(model: Any, trainable_only: bool = True) -> LayerGroups:
    """Split the (trainable) parameters into embeddings / layer.i / head groups, bottom to top."""
    prefix, n = _blocks_prefix(model)
    pattern = re.compile(re.escape(prefix) + r"\.(\d+)\.")
    groups: list[list[tuple[str, Any]]] = [[] for _ in range(n + 2)]
    seen_block = False
    for name, p in model.named_parameters():
        if trainable_only and not p.requires_grad:
            continue
        m = pattern.match(name) if name.startswith(prefix + ".") else None
        if m:
            seen_block = True
            groups[int(m.group(1)) + 1].append((name, p))
        elif seen_block:
            groups[-1].append((name, p))  # after the blocks: pooler, final norm, classifier/lm head
        else:
            groups[0].append((name, p))
    # named_parameters follows module registration; a head registered before the blocks (rare) is caught here
    for i in range(len(groups[0]) - 1, -1, -1):
        if re.search(r"(^|\.)(classifier|score|pooler|pre_classifier|classification_head|lm_head|ln_f)\.", groups[0][i][0]):
            groups[-1].append(groups[0].pop(i))
    names = ["embeddings", *[f"layer.{i}" for i in range(n)], "head"]
    keep = [i for i, g in enumerate(groups) if g]
    return LayerGroups(names=[names[i] for i in keep], params=[groups[i] for i in keep])


def discriminative_lrs(n_groups: int, lr: float, decay: float | None) -> list[float]:
    """lr per group, bottom to top: the top group at ``lr``, each lower one divided by ``decay``."""
    d = decay or 1.0
    return [lr / d ** (n_groups - 1 - i) for i in range(n_groups)]


def param_groups(
    model: Any, lr: float, decay: float | None, weight_decay: float = 0.0, decay_names: set[str] | None = None
) -> tuple[list[dict[str, Any]], LayerGroups]:
    """Optimizer param groups with layer-wise lrs, split like the Trainer's: ``decay_names`` get weight decay
    (None: all of them), the rest (biases, norms) none."""
    groups = layer_groups(model)
    lrs = discriminative_lrs(len(groups), lr, decay)
    out: list[dict[str, Any]] = []
    for gname, params, glr in zip(groups.names, groups.params, lrs):
        dec = [p for n, p in params if decay_names is None or n in decay_names]
        nodec = [p for n, p in params if decay_names is not None and n not in decay_names]
        for ps, wd in ((dec, weight_decay), (nodec, 0.0)):
            if ps:
                out.append({"params": ps, "lr": glr, "weight_decay": wd, "layer_group": gname})
    return out, groups


def slanted_triangular(total_steps: int, cut_frac: float = 0.1, ratio: float = 32.0) -> Callable[[int], float]:
    """The STLR multiplier of step ``t`` (eq. 3 of the paper): 1/ratio -> 1 at cut -> 1/ratio at the end."""
    total = max(1, int(total_steps))
    cut = max(1, math.floor(total * cut_frac))

    def fn(step: int) -> float:
        if step < cut:
            p = step / cut
        else:
            p = 1.0 - (step - cut) / max(1, total - cut)
        p = min(1.0, max(0.0, p))
        return (1.0 + p * (ratio - 1.0)) / ratio

    return fn


def unfreezing_warning(groups: LayerGroups, epochs: int) -> str | None:
    """Gradual unfreezing opens one group per epoch: a sentence naming the groups that would never train when
    ``epochs`` is fewer than the groups, else None."""
    if epochs >= len(groups):
        return None
    never = groups.names[: len(groups) - max(0, epochs)]
    return (
        f"gradual unfreezing opens one of {len(groups)} layer groups per epoch and the run has {epochs} epoch(s), so "
        f"{', '.join(never)} never train; set num_epochs >= {len(groups)} (--epochs {len(groups)}) or "
        "--set ulmfit.gradual_unfreezing=false"
    )


def planned_epochs(num_epochs: float, max_steps: int, steps_per_epoch: int) -> int:
    """The epochs the Trainer will begin: ``ceil(num_epochs)``, or those ``max_steps`` reach."""
    if max_steps > 0:
        return math.ceil(max_steps / max(1, steps_per_epoch))
    return math.ceil(num_epochs)


def make_callback(groups: LayerGroups) -> Any:
    """A TrainerCallback for gradual unfreezing over ``groups`` (top group trainable from the start)."""
    from transformers import TrainerCallback

    class GradualUnfreezing(TrainerCallback):
        def __init__(self) -> None:
            self.history: list[list[str]] = []

        def _apply(self, epoch: int) -> None:
            n_open = min(len(groups), epoch + 1)
            open_names = groups.names[len(groups) - n_open :]
            for gname, params in zip(groups.names, groups.params):
                for _, p in params:
                    p.requires_grad_(gname in open_names)
            self.history.append(open_names)

        def on_epoch_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self._apply(int(math.floor((state.epoch or 0) + 1e-6)))

        def on_train_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            for params in groups.params:  # leave the model as configured (e.g. for saving adapters)
                for _, p in params:
                    p.requires_grad_(True)

    return GradualUnfreezing()


def trainer_class(cfg: Any) -> type:
    """A Trainer subclass whose optimizer/scheduler follow ``cfg.ulmfit``."""
    import torch
    from transformers import Trainer

    u = cfg.ulmfit

    class UlmfitTrainer(Trainer):
        layer_group_lrs: dict[str, float]

        def create_optimizer(self) -> Any:  # the Trainer hook
            if self.optimizer is None:
                decay_names = set(self.get_decay_parameter_names(self.model))
                groups, _ = param_groups(
                    self.model, self.args.learning_rate, u.discriminative_lr_decay, self.args.weight_decay, decay_names
                )
                self.layer_group_lrs = {g["layer_group"]: g["lr"] for g in groups}
                self.optimizer = torch.optim.AdamW(
                    [{k: v for k, v in g.items() if k != "layer_group"} for g in groups],
                    lr=self.args.learning_rate,
                    betas=(self.args.adam_beta1, self.args.adam_beta2),
                    eps=self.args.adam_epsilon,
                )
            return self.optimizer

        def create_scheduler(self, num_training_steps: int, optimizer: Any = None) -> Any:
            if self.lr_scheduler is None and u.slanted_triangular:
                opt = optimizer or self.optimizer
                self.lr_scheduler = torch.optim.lr_scheduler.LambdaLR(
                    opt, slanted_triangular(num_training_steps, u.cut_frac, u.ratio)
                )
                self._created_lr_scheduler = True
            return super().create_scheduler(num_training_steps, optimizer)

    return UlmfitTrainer
