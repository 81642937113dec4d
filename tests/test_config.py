from pathlib import Path

import pytest

from hubtune.core.config import DataConfig, TrainConfig, from_dict, load_yaml, resolve
from hubtune.core.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
EXAMPLE_CONFIGS = sorted((REPO / "examples").glob("*.yaml"))


def test_there_are_example_configs():
    assert EXAMPLE_CONFIGS, "examples/*.yaml missing"


@pytest.mark.parametrize("path", EXAMPLE_CONFIGS, ids=lambda p: p.name)
def test_every_example_config_parses(path):
    from hubtune.core.config import PipelineConfig  # train-and-push configs are a superset of TrainConfig

    data = load_yaml(path)
    cfg = from_dict(PipelineConfig, data) if any(k in data for k in ("publish", "gates", "export")) else from_dict(TrainConfig, data)
    assert cfg.base_model and cfg.data.dataset


def test_defaults_yaml_flags_precedence(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("base_model: m\ndata: {dataset: d.csv, max_samples: 10}\nlearning_rate: 0.001\nbatch_size: 4\n")
    cfg = resolve(TrainConfig, p, {"batch_size": 8, "data.max_samples": None, "lora.r": "4"})
    assert cfg.learning_rate == 0.001  # YAML over default
    assert cfg.batch_size == 8  # flag over YAML
    assert cfg.data.max_samples == 10  # None flag leaves YAML
    assert cfg.lora.r == 4 and isinstance(cfg.lora.r, int)
    assert cfg.num_epochs == TrainConfig().num_epochs  # default


def test_unknown_key_names_closest():
    with pytest.raises(ConfigError, match=r"learnig_rate.*did you mean 'learning_rate'"):
        from_dict(TrainConfig, {"base_model": "m", "data": {"dataset": "x"}, "learnig_rate": 1})
    with pytest.raises(ConfigError, match=r"data.datset.*'dataset'"):
        from_dict(TrainConfig, {"base_model": "m", "data": {"datset": "x"}})


def test_wrong_types_and_values():
    with pytest.raises(ConfigError, match="expected an integer"):
        from_dict(TrainConfig, {"base_model": "m", "data": {"dataset": "x"}, "batch_size": "many"})
    with pytest.raises(ConfigError, match="expected one of"):
        from_dict(TrainConfig, {"base_model": "m", "data": {"dataset": "x"}, "mode": "qlora"})
    with pytest.raises(ConfigError, match="validation_split"):
        from_dict(DataConfig, {"dataset": "x", "validation_split": 1.5})
    with pytest.raises(ConfigError, match="base_model is empty"):
        from_dict(TrainConfig, {"data": {"dataset": "x"}})


def test_bad_yaml_file(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        resolve(TrainConfig, p)
    with pytest.raises(ConfigError, match="not found"):
        resolve(TrainConfig, tmp_path / "missing.yaml")
