"""Honest int8 (issue 38): the export table, export_info.json and the run summary name the kind of int8 and its
measured speed against fp32 on the CPU that made it; a variant neither faster nor smaller than fp32 is refused;
the card's int8 sentence says what was measured (no speed claim when it is slower)."""

from __future__ import annotations

import json

import pytest

from hubtune.publish import variant_claims as vc


def _claim(rate, size, *, kind="weight-only"):
    c = vc.versus_fp32(size, {"rows_per_s": rate}, 91.7, {"rows_per_s": 23.5}, cpu="AMD EPYC 7B13 (2 cores)")
    c["kind"] = kind
    return c


def _variants(claim, agreement=0.996, drop=0.4):
    return {"onnx": {"file": "onnx/model.onnx", "size_mb": 91.7, "throughput": {"rows_per_s": 23.5}},
            "onnx-int8": {"file": "onnx/model_quantized.onnx", "size_mb": claim["size_mb"], "claims": claim,
                          "parity": {"label_agreement": agreement, "num_examples": 500}, "accuracy_drop_pt": drop}}


def test_slower_but_smaller_int8_claims_size_and_measured_speed_not_speed_up():
    c = _claim(22.1, 61.1)
    assert c["smaller"] and c["faster"] is False and c["speed_ratio"] == 0.94 and vc.refusal(c) is None
    text = vc.int8_sentence(_variants(c))
    assert "weight-only int8 (MatMulNBits" in text and "dequantized to fp32" in text
    assert "61.1 MB vs 91.7 MB for fp32 (smaller than fp32)" in text
    assert "it is not faster: 0.94 times the fp32 speed on AMD EPYC 7B13 (2 cores) (22.1 vs 23.5 rows/s)" in text
    assert "agreement with PyTorch 99.60%, accuracy drop 0.40 pt" in text and "on 500 examples" in text
    assert "trades" not in text and "it is faster" not in text


def test_faster_dynamic_int8_says_faster_with_the_ratio():
    text = vc.int8_sentence(_variants(_claim(47.0, 30.0, kind="dynamic")))
    assert "dynamic int8 (weights int8, activations quantized to int8 at run time)" in text
    assert "it is faster: 2.00 times the fp32 speed on AMD EPYC" in text


def test_unmeasured_speed_makes_no_speed_claim_and_refuses_nothing():
    c = vc.versus_fp32(95.0, None, 91.7, None)
    assert c["faster"] is None and c["speed_ratio"] is None and vc.refusal(c) is None
    assert "its speed was not measured" in vc.int8_sentence(_variants({**c, "kind": "dynamic"}))


def test_neither_faster_nor_smaller_is_refused_with_the_figures():
    c = _claim(20.0, 91.7)
    why = vc.refusal(c)
    assert why.startswith("neither faster nor smaller than fp32") and "0.85 times the fp32 speed" in why
    assert "91.70 MB vs 91.70 MB" in why


def test_old_summary_without_claims_falls_back_to_recorded_figures():
    old = {"onnx": {"file": "onnx/model.onnx", "size_mb": 91.7, "throughput": {"rows_per_s": 23.5}},
           "onnx-int8": {"file": "onnx/model_quantized.onnx", "size_mb": 61.1, "throughput": {"rows_per_s": 22.1},
                         "config": "weight-only int8 (onnxruntime MatMulNBitsQuantizer, ...)"}}
    text = vc.int8_sentence(old)
    assert "weight-only int8" in text and "not faster: 0.94 times" in text and "the machine that exported it" in text


# --------------------------------------------------------------------------------------------------
# Through the export (tiny model; sizes and throughput monkeypatched so the outcome is not CPU noise)
# --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from tests._tiny_runs import make_full_run, make_tiny_base

    root = tmp_path_factory.mktemp("int8")
    return make_full_run(root / "run", make_tiny_base(root / "base"))


def _fake_speed(monkeypatch, int8_rate, int8_size=None):
    import hubtune.publish.export as ex

    real_size = ex.size_mb

    def bench(model, tokenizer, texts, bs, max_len):
        name = str(getattr(model, "path", ""))
        rate = int8_rate if name.endswith("model_quantized.onnx") else 100.0
        return {"rows_per_s": rate, "batch_size": bs, "latency_ms_per_batch": 1.0}

    def size(paths):
        if int8_size is not None and any(str(p).endswith("model_quantized.onnx") for p in paths):
            return int8_size
        return real_size(paths)

    monkeypatch.setattr(ex, "bench_model", bench)
    monkeypatch.setattr(ex, "size_mb", size)


def _invoke_export(run, *extra):
    from typer.testing import CliRunner

    from hubtune.cli.main import app

    res = CliRunner().invoke(app, ["export", str(run), "--quantize", "int8", "--overwrite", "--bench-rows", "8",
                                   "--max-accuracy-drop", "100", "--no-progress", *extra])
    assert res.exit_code == 0, res.output
    return res.output


def test_export_names_the_kind_and_the_speed_ratio_everywhere(tiny_run, monkeypatch):
    from hubtune.core.onnx_tools import read_info

    _fake_speed(monkeypatch, int8_rate=50.0)  # half the fp32 speed, really smaller
    out = _invoke_export(tiny_run)
    summary = json.loads((tiny_run / "run_summary.json").read_text())
    v = summary["variants"]["onnx-int8"]
    c = v["claims"]
    assert c["kind"] in ("dynamic", "weight-only") and c["speed_ratio"] == 0.5 and c["faster"] is False
    assert c["smaller"] and c["rows_per_s"] == 50.0 and c["fp32_rows_per_s"] == 100.0 and c["cpu"] == vc.machine()
    q = read_info(tiny_run / "model" / "onnx")["quantization"]
    assert q["kind"] == c["kind"] and q["kind_description"] == vc.INT8_KINDS[c["kind"]] and q["versus_fp32"] == c
    assert "0.50x" in out and f"onnx-int8: {vc.INT8_KINDS[c['kind']]}" in out
    assert f"0.50 times the fp32 speed on {vc.machine()} (50.0 vs 100.0 rows/s)" in out
    # the card's sentence: smaller, not faster, the measured ratio; no "trades ... speed"
    text = vc.int8_sentence(summary["variants"])
    assert "it is not faster: 0.50 times the fp32 speed" in text and "(smaller than fp32)" in text


def test_int8_neither_faster_nor_smaller_is_refused(tiny_run, monkeypatch):
    _fake_speed(monkeypatch, int8_rate=60.0, int8_size=1e6)
    out = _invoke_export(tiny_run)
    assert "REFUSED" in out and "neither faster nor smaller than fp32" in out
    summary = json.loads((tiny_run / "run_summary.json").read_text())
    assert "onnx-int8" not in summary["variants"]
    refused = summary["export"]["refused"]["onnx-int8"]
    assert refused["reason"].startswith("neither faster nor smaller") and refused["claims"]["speed_ratio"] == 0.6
    assert not (tiny_run / "model" / "onnx" / "model_quantized.onnx").exists()


def test_on_the_fly_export_without_speed_makes_no_claim(tiny_run, monkeypatch, tmp_path):
    from hubtune.publish.export import ExportOptions, export

    _fake_speed(monkeypatch, int8_rate=1.0, int8_size=1e6)  # would be refused if speed were measured
    res = export(ExportOptions(source=str(tiny_run), output=str(tmp_path / "onnx"), quantize="int8",
                               max_accuracy_drop_pt=100, measure_speed=False, record=False))
    c = res.variants["onnx-int8"].claims
    assert c["speed_ratio"] is None and c["speed"] == vc.NOT_MEASURED and "cpu" not in c


def test_card_template_carries_the_measured_sentence_not_the_old_claim():
    import jinja2

    from hubtune.publish.card import __file__ as card_file
    from pathlib import Path

    tpl = (Path(card_file).parent / "templates" / "default.md").read_text(encoding="utf-8")
    tpl = tpl[tpl.index("## Limitations"):]  # the section that carries it
    note = vc.int8_sentence(_variants(_claim(22.1, 61.1)))
    text = jinja2.Environment().from_string(tpl).render(int8_note=note, has_quantized=True, label_names=["a"])
    assert note in text and "trades a little accuracy for size and speed" not in text
