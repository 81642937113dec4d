"""hubtune export: ONNX == PyTorch on real tweets, corrupted exports are caught, variants recorded."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from tests._tiny_runs import REPO, TEST_CSV, make_full_run, make_lora_run, make_tiny_base, minilm_dir


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "hubtune", *args], cwd=REPO, capture_output=True, text=True, timeout=300)


def _tweets(n=96):
    import csv

    with open(REPO / TEST_CSV, encoding="utf-8") as fh:
        return [r["text"] for r in csv.DictReader(fh)][:n]


def _scale_first_matmul(path, factor=1.02):
    """Corrupt an exported graph slightly: scale one weight initializer in place."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    for i, init in enumerate(model.graph.initializer):
        arr = numpy_helper.to_array(init)
        if arr.ndim == 2 and arr.dtype == np.float32 and min(arr.shape) > 1:
            model.graph.initializer[i].CopyFrom(numpy_helper.from_array(arr * factor, init.name))
            break
    else:  # pragma: no cover
        raise AssertionError("no 2-D float initializer to corrupt")
    onnx.save(model, str(path))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    base = make_tiny_base(root / "base")
    run = make_full_run(root / "run", base)
    return root, base, run


@pytest.fixture(scope="module")
def exported(tiny):
    """Happy path through the real CLI, with an O2 and an int8 variant."""
    _, _, run = tiny
    proc = _cli("export", str(run), "--optimize", "O2", "--quantize", "int8", "--json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_cli_export_layout_and_summary(tiny, exported):
    _, _, run = tiny
    onnx_dir = run / "model" / "onnx"  # full run: the published folder is model/
    assert exported["output_dir"] == str(onnx_dir)
    for f in ("model.onnx", "model_O2.onnx", "model_quantized.onnx", "config.json", "tokenizer.json"):
        assert (onnx_dir / f).is_file(), f
    assert set(exported["variants"]) == {"pytorch", "onnx", "onnx-O2", "onnx-int8"} and not exported["refused"]
    base = exported["variants"]["onnx"]["parity"]
    assert base["passed"] and base["max_abs_diff"] <= 1e-4 and base["label_agreement"] == 1.0
    assert base["num_examples"] == 200 and base["texts_source"] == TEST_CSV
    summary = json.loads((run / "run_summary.json").read_text())
    v = summary["variants"]
    assert v["onnx-int8"]["file"] == "onnx/model_quantized.onnx"
    assert v["onnx-int8"]["size_mb"] < v["onnx"]["size_mb"]
    for name in ("pytorch", "onnx", "onnx-O2", "onnx-int8"):
        assert v[name]["throughput"]["rows_per_s"] > 0 and v[name]["throughput"]["batch_size"] == 32
        assert v[name]["metrics"]["num_examples"] == 200
    assert v["onnx-int8"]["accuracy_drop_pt"] <= 0.5
    assert summary["export"]["output"] == "model/onnx"


# What Optimum's exporter writes for a BERT text classifier (optimum-onnx 0.1.0, read off its export of the
# tiny model): the layout every hubtune export must keep, whichever exporter wrote it.
OPTIMUM_LAYOUT = {
    # (+ special_tokens_map.json and vocab.txt where transformers 4.x saved the tokenizer: files of the model folder)
    "files": {"model.onnx", "config.json", "tokenizer.json", "tokenizer_config.json"},
    "inputs": [("input_ids", 7, ["batch_size", "sequence_length"]), ("attention_mask", 7, ["batch_size", "sequence_length"]),
               ("token_type_ids", 7, ["batch_size", "sequence_length"])],
    "outputs": [("logits", 1, ["batch_size", 3])],
    "opset": 18,
}


def test_export_layout_matches_optimums(tiny, exported):
    from hubtune.core.onnx_tools import graph_opset, graph_signature, read_info

    _, _, run = tiny
    onnx_dir = run / "model" / "onnx"
    assert OPTIMUM_LAYOUT["files"] <= {p.name for p in onnx_dir.iterdir()}
    tokenizer_files = {p.name for p in (run / "model").iterdir() if p.name.startswith(("tokenizer", "special_tokens", "vocab"))}
    assert tokenizer_files <= {p.name for p in onnx_dir.iterdir()}
    sig = graph_signature(onnx_dir / "model.onnx")
    assert [(i["name"], i["elem_type"], i["dims"]) for i in sig["inputs"]] == OPTIMUM_LAYOUT["inputs"]
    assert [(o["name"], o["elem_type"], o["dims"]) for o in sig["outputs"]] == OPTIMUM_LAYOUT["outputs"]
    assert graph_opset(onnx_dir / "model.onnx") == OPTIMUM_LAYOUT["opset"]
    info = read_info(onnx_dir)
    from hubtune.core.parity import file_sha256

    assert info["source_weights"] == {"model.safetensors": file_sha256(run / "model" / "model.safetensors")}
    assert info["exporter"] == exported["exporter"] and info["exporter_name"] in ("optimum", "torch")
    assert set(info["files"]) == {"model.onnx", "model_O2.onnx", "model_quantized.onnx"}
    summary = json.loads((run / "run_summary.json").read_text())
    assert summary["export"]["exporter"] == exported["exporter"]
    # how the int8 graph was made: the method, and sensitivity measured on the run's training texts, not the gate's
    q = info["quantization"]
    assert q["file"] == "model_quantized.onnx" and q["calibration_agreement"] > 0.9
    assert q["method"] in ("onnxruntime quantize_dynamic", "onnxruntime MatMulNBitsQuantizer (weight-only int8)")
    assert q["calibration"].endswith("training texts of data/tweets/train.csv") and q["sensitivity"]
    assert q["quantized_nodes"] + len(q["fp32_nodes"]) == len(q["sensitivity"]) and q["quantized_nodes"] > 0
    assert summary["variants"]["onnx-int8"]["config"] == q["description"]


def test_onnx_matches_pytorch_on_real_texts_with_onnxruntime(tiny, exported):
    """Independent check with plain onnxruntime, dynamic batch and sequence lengths on real tweets."""
    import onnxruntime as ort
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    _, _, run = tiny
    folder = run / "model"
    sess = ort.InferenceSession(str(folder / "onnx" / "model.onnx"), providers=["CPUExecutionProvider"])
    tok = AutoTokenizer.from_pretrained(str(folder / "onnx"))
    pt = AutoModelForSequenceClassification.from_pretrained(str(folder)).eval()
    texts = _tweets()
    for batch in (texts[:1], texts[:7], texts):  # batch sizes 1, 7, 96 and their own padded lengths
        enc = tok(batch, padding=True, truncation=True, max_length=128, return_tensors="np")
        got = sess.run(["logits"], {k: enc[k] for k in ("input_ids", "attention_mask", "token_type_ids")})[0]
        with torch.no_grad():
            ref = pt(**{k: torch.from_numpy(v) for k, v in enc.items()}).logits.numpy()
        assert got.shape == ref.shape and np.abs(ref - got).max() < 1e-4
        assert (got.argmax(-1) == ref.argmax(-1)).all()


def test_export_loads_with_optimum_ortmodel(tiny, exported):
    """Where optimum-onnx is installed (the Optimum lane): ORTModel + an optimum pipeline load onnx/."""
    pytest.importorskip("optimum.onnxruntime", reason="optimum-onnx is not installed (the Optimum lane runs this)")
    import torch
    from optimum.onnxruntime import ORTModelForSequenceClassification
    from optimum.pipelines import pipeline
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    _, _, run = tiny
    folder = str(run / "model")
    ort = ORTModelForSequenceClassification.from_pretrained(folder, subfolder="onnx")
    tok = AutoTokenizer.from_pretrained(folder, subfolder="onnx")
    pt = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    texts = _tweets()
    enc = tok(texts, padding=True, truncation=True, max_length=128, return_tensors="pt")
    with torch.no_grad():
        ref = pt(**enc).logits.numpy()
    got = ort(**enc).logits.numpy()
    assert np.abs(ref - got).max() < 1e-4
    clf = pipeline("text-classification", model=ort, tokenizer=tok, accelerator="ort")
    preds = clf(texts[:4])
    assert [p["label"] for p in preds] == [pt.config.id2label[int(i)] for i in ref[:4].argmax(-1)]


@pytest.mark.parametrize("exporter", ["torch", "optimum"])
def test_both_exporters_write_the_same_layout(tiny, tmp_path, exporter):
    from hubtune.core.compat import optimum_exporter_available
    from hubtune.core.onnx_tools import export_onnx, graph_signature

    if exporter == "optimum" and not optimum_exporter_available():
        pytest.skip("optimum-onnx is not installed (the Optimum lane runs this)")
    _, base, _ = tiny
    info = export_onnx(base, tmp_path / "onnx", exporter=exporter)
    assert info["exporter_name"] == exporter
    sig = graph_signature(tmp_path / "onnx" / "model.onnx")
    assert [(i["name"], i["elem_type"], i["dims"]) for i in sig["inputs"]] == OPTIMUM_LAYOUT["inputs"]
    assert [(o["name"], o["elem_type"], o["dims"]) for o in sig["outputs"]] == OPTIMUM_LAYOUT["outputs"]
    assert OPTIMUM_LAYOUT["files"] <= {p.name for p in (tmp_path / "onnx").iterdir()}


def test_corrupted_export_is_refused_and_nothing_written(tiny, monkeypatch, tmp_path):
    from hubtune.publish import export as ex
    from hubtune.core.errors import ExportParityError

    _, base, _ = tiny
    real = ex._run_main_export

    def corrupting(model_dir, out, opset, **kw):
        info = real(model_dir, out, opset, **kw)
        _scale_first_matmul(out / "model.onnx")
        return info

    monkeypatch.setattr(ex, "_run_main_export", corrupting)
    out = tmp_path / "onnx"
    with pytest.raises(ExportParityError) as err:
        ex.export(ex.ExportOptions(source=str(base), output=str(out), eval_dataset=str(REPO / TEST_CSV), max_examples=64, bench_rows=32))
    assert "max |logit diff|" in str(err.value)
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_failed_variant_is_removed_and_reported(tiny, monkeypatch, tmp_path):
    from hubtune.publish import export as ex

    _, base, _ = tiny
    real = ex._quantize

    def corrupting(onnx_dir, work, *args):
        path, cfg = real(onnx_dir, work, *args)
        import onnx
        from onnx import numpy_helper

        m = onnx.load(str(path))
        for i, init in enumerate(m.graph.initializer):  # destroy every float weight
            arr = numpy_helper.to_array(init)
            if arr.dtype == np.float32 and arr.ndim >= 1 and arr.size > 8:
                m.graph.initializer[i].CopyFrom(numpy_helper.from_array(-3 * arr[::-1].copy(), init.name))
        onnx.save(m, str(path))
        return path, cfg

    monkeypatch.setattr(ex, "_quantize", corrupting)
    res = ex.export(
        ex.ExportOptions(source=str(base), output=str(tmp_path / "onnx"), quantize="int8", eval_dataset=str(REPO / TEST_CSV), max_examples=200, bench_rows=32)
    )
    assert "onnx" in res.variants and "onnx-int8" in res.refused
    assert "accuracy drop" in res.refused["onnx-int8"].reason or "agreement" in res.refused["onnx-int8"].reason
    assert (tmp_path / "onnx" / "model.onnx").is_file()
    assert not (tmp_path / "onnx" / "model_quantized.onnx").exists()


def test_export_options_are_validated(tiny, tmp_path):
    from hubtune.core.errors import ConfigError
    from hubtune.publish.export import ExportOptions, export

    _, base, run = tiny
    with pytest.raises(ConfigError, match="O1, O2, O3"):
        export(ExportOptions(source=str(base), optimize="O4"))
    with pytest.raises(ConfigError, match="int8"):
        export(ExportOptions(source=str(base), quantize="int4"))


def test_cli_export_of_unmerged_lora_run_is_one_line_error(tiny, exported):
    root, base, run = tiny
    lora = make_lora_run(root / "lora", base)
    proc = _cli("export", str(lora))
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "hubtune merge" in lines[0]
    proc = _cli("export", str(run))  # onnx/ exists now
    assert proc.returncode == 4 and "--overwrite" in proc.stderr


@pytest.mark.slow
def test_minilm_export_parity_and_int8(tmp_path):
    import shutil

    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from tests._tiny_runs import LABELS
    from hubtune.publish.export import ExportOptions, export

    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(
        str(minilm_dir()), num_labels=3, id2label=dict(enumerate(LABELS)), label2id={n: i for i, n in enumerate(LABELS)}
    )
    with torch.no_grad():
        model.classifier.weight.normal_(0, 0.5)
    folder = tmp_path / "model"
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(str(minilm_dir())).save_pretrained(folder)
    res = export(
        ExportOptions(source=str(folder), optimize="O2", quantize="int8", eval_dataset=str(REPO / TEST_CSV), max_examples=1000, bench_rows=256,
                      max_accuracy_drop_pt=100, min_variant_agreement=0.0)
    )
    on = res.variants["onnx"]
    assert on.parity.passed and on.parity.max_abs_diff < 1e-4
    for name, v in {**res.variants, **res.refused}.items():
        print(
            f"MiniLM {name}: {v.size_mb} MB, {(v.throughput or {}).get('rows_per_s')} rows/s, "
            f"max diff {v.parity.max_abs_diff if v.parity else 0:.3g}, agreement {v.parity.label_agreement if v.parity else 1:.3f}, "
            f"acc drop {v.accuracy_drop_pt} pt"
        )
    shutil.rmtree(folder)
