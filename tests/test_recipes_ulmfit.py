"""ULMFiT options: discriminative lrs, slanted triangular schedule, gradual unfreezing."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from hubtune.train import ulmfit
from hubtune.core.config import DataConfig, TrainConfig, UlmfitSettings, from_dict
from hubtune.core.errors import ConfigError
from hubtune.train import train

from .conftest import TWEETS_TEST, TWEETS_TRAIN


@pytest.fixture(scope="module")
def tiny_cls_dir(tmp_path_factory):
    """A tiny BERT *with* its 3-label head on disk, so every group's starting weights are known."""
    from ._tiny_runs import make_tiny_base

    return str(make_tiny_base(tmp_path_factory.mktemp("tiny_cls")))


def test_discriminative_lrs_follow_the_decay(tiny_cls_dir):
    from transformers import AutoModelForSequenceClassification

    assert ulmfit.discriminative_lrs(4, 1e-3, 2.6) == pytest.approx([1e-3 / 2.6**3, 1e-3 / 2.6**2, 1e-3 / 2.6, 1e-3])
    model = AutoModelForSequenceClassification.from_pretrained(tiny_cls_dir)
    groups, lg = ulmfit.param_groups(model, 1e-3, 2.6)
    assert lg.names == ["embeddings", "layer.0", "layer.1", "head"]
    by_name = dict(model.named_parameters())
    names_of = {n: [k for k, _ in ps] for n, ps in zip(lg.names, lg.params)}
    assert all(k.startswith("bert.embeddings.") for k in names_of["embeddings"])
    assert all(k.startswith("bert.encoder.layer.1.") for k in names_of["layer.1"])
    assert all(k.startswith(("bert.pooler.", "classifier.")) for k in names_of["head"])
    assert any(k.startswith("classifier.") for k in names_of["head"])
    assert sum(len(v) for v in names_of.values()) == len(by_name)  # every parameter in exactly one group
    lrs = {g["layer_group"]: g["lr"] for g in groups}
    assert lrs["head"] == pytest.approx(1e-3)
    for lower, upper in [("embeddings", "layer.0"), ("layer.0", "layer.1"), ("layer.1", "head")]:
        assert lrs[upper] / lrs[lower] == pytest.approx(2.6)


def test_slanted_triangular_shape():
    total, cut_frac, ratio = 200, 0.1, 32
    fn = ulmfit.slanted_triangular(total, cut_frac, ratio)
    values = [fn(t) for t in range(total + 1)]
    peak = max(range(total + 1), key=values.__getitem__)
    assert peak == math.floor(total * cut_frac) and values[peak] == pytest.approx(1.0)
    assert values[0] == pytest.approx(1 / ratio) and values[-1] == pytest.approx(1 / ratio)
    assert all(a < b for a, b in zip(values[:peak], values[1 : peak + 1]))  # rises to the peak
    assert all(a > b for a, b in zip(values[peak:-1], values[peak + 1 :]))  # then falls
    # the decay is cut_frac/(1-cut_frac) times slower than the rise, as in the paper
    assert (values[peak] - values[peak + 1]) == pytest.approx((values[1] - values[0]) * cut_frac / (1 - cut_frac))


def test_ulmfit_settings_validate():
    base = {"base_model": "m", "data": {"dataset": "x.csv"}}
    cfg = from_dict(TrainConfig, {**base, "ulmfit": {"discriminative_lr_decay": 2.6, "slanted_triangular": True}})
    assert cfg.ulmfit.enabled and not UlmfitSettings().enabled
    with pytest.raises(ConfigError, match="discriminative_lr_decay"):
        from_dict(TrainConfig, {**base, "ulmfit": {"discriminative_lr_decay": 0.5}})
    with pytest.raises(ConfigError, match="cut_frac"):
        from_dict(TrainConfig, {**base, "ulmfit": {"cut_frac": 1.5}})


def _tensors(path):
    return load_file(str(path / "model.safetensors"))


def test_ulmfit_training_freezes_lower_layers_and_follows_the_schedule(tiny_cls_dir, tmp_path):
    cfg = TrainConfig(
        base_model=tiny_cls_dir, output_dir=str(tmp_path / "ulmfit"),
        data=DataConfig(dataset=str(TWEETS_TRAIN), eval_dataset=str(TWEETS_TEST), max_samples=64, eval_max_samples=32),
        num_epochs=2, batch_size=16, max_length=32, learning_rate=1e-2, logging_steps=1,
        ulmfit=UlmfitSettings(discriminative_lr_decay=2.6, slanted_triangular=True, cut_frac=0.25, ratio=32, gradual_unfreezing=True),
    )
    res = train(cfg, progress=False)
    summary = json.loads((res.output_dir / "run_summary.json").read_text())
    u = summary["ulmfit"]
    assert u["unfrozen_per_epoch"] == [["head"], ["layer.1", "head"]]
    # issue 16.4: 2 epochs cannot open 4 groups: the run says which never train and the flag that fixes it
    (warning,) = res.extra["warnings"]
    assert "embeddings, layer.0 never train" in warning and "--epochs 4" in warning
    assert summary["warnings"] == [warning]
    from hubtune.publish.card import CardOptions, card

    md = Path(card(CardOptions(run_dir=str(res.output_dir), bench_rows=8)).path).read_text()
    assert "Warnings from training" in md and "embeddings, layer.0 never train" in md  # the card says so too
    assert u["layer_group_lrs"]["head"] == pytest.approx(1e-2)
    assert u["layer_group_lrs"]["layer.1"] == pytest.approx(1e-2 / 2.6)
    assert u["layer_group_lrs"]["embeddings"] == pytest.approx(1e-2 / 2.6**3)

    base = _tensors(__import__("pathlib").Path(tiny_cls_dir))
    ckpts = sorted((res.output_dir / "checkpoints").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    assert [p.name for p in ckpts] == ["checkpoint-4", "checkpoint-8"]
    epoch1, epoch2 = _tensors(ckpts[0]), _tensors(ckpts[1])

    def moved(state, prefix):
        return [k for k in base if k.startswith(prefix) and not torch.equal(base[k], state[k])]

    # epoch 1: only the head trains
    assert moved(epoch1, "classifier.") and moved(epoch1, "bert.pooler.")
    assert not moved(epoch1, "bert.encoder.layer.1.") and not moved(epoch1, "bert.encoder.layer.0.")
    assert not moved(epoch1, "bert.embeddings.")
    # epoch 2: the top encoder layer is unfrozen too, the rest stays as it was
    assert moved(epoch2, "bert.encoder.layer.1.")
    assert not moved(epoch2, "bert.encoder.layer.0.") and not moved(epoch2, "bert.embeddings.")

    # the lr used at each step (logged for group 0, the embeddings) follows the slanted triangle:
    # 1/ratio at step 0, peak at cut_frac * 8 steps = step 2, then down
    trainer_state = json.loads((ckpts[1] / "trainer_state.json").read_text())
    lrs = [e["learning_rate"] for e in trainer_state["log_history"] if "learning_rate" in e]
    assert len(lrs) == 8
    fn = ulmfit.slanted_triangular(8, 0.25, 32)
    assert lrs == pytest.approx([1e-2 / 2.6**3 * fn(t) for t in range(8)], rel=1e-4)


def test_unfreezing_warning_only_when_epochs_cannot_reach_every_group():
    groups = ulmfit.LayerGroups(names=["embeddings", "layer.0", "layer.1", "head"], params=[[], [], [], []])
    assert ulmfit.unfreezing_warning(groups, 4) is None and ulmfit.unfreezing_warning(groups, 9) is None
    assert "embeddings never train" in ulmfit.unfreezing_warning(groups, 3)
    assert "--epochs 4" in ulmfit.unfreezing_warning(groups, 1)


def test_the_ulmfit_example_unfreezes_every_group(minilm_dir):
    """Issue 16.4: examples/ulmfit.yaml ran 4 epochs over MiniLM's 8 layer groups, so the embeddings and layers
    0-2 never unfroze."""
    from transformers import AutoModelForSequenceClassification

    from hubtune.core.config import resolve

    from .conftest import REPO

    cfg = resolve(TrainConfig, REPO / "examples" / "ulmfit.yaml", {})
    assert cfg.base_model == "packaged:minilm" and cfg.ulmfit.gradual_unfreezing
    groups = ulmfit.layer_groups(AutoModelForSequenceClassification.from_pretrained(minilm_dir, num_labels=3))
    assert len(groups) == 8
    assert cfg.max_steps <= 0 and math.ceil(cfg.num_epochs) >= len(groups), cfg.num_epochs
    assert ulmfit.unfreezing_warning(groups, math.ceil(cfg.num_epochs)) is None

