"""int8 that keeps the labels: per-node sensitivity measured on real activations, the sensitive MatMuls kept
in fp32 by onnxruntime's quantizer, and the method recorded. Fast tests on hand-built graphs; the slow test
exports a trained MiniLM classifier through the default gate."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hubtune.core.onnx_tools import const_matmuls, matmul_sensitivity, quantize_int8, sensitive_nodes


def _four_matmuls(path):
    """Y_i = X_i @ W_i for four inputs; X_3's batches carry one huge outlier (a per-tensor int8 range killer)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    nodes, inits, ins, outs = [], [], [], []
    for i in range(4):
        w = rng.normal(size=(16, 8)).astype(np.float32)
        inits.append(numpy_helper.from_array(w, f"W{i}"))
        ins.append(helper.make_tensor_value_info(f"X{i}", TensorProto.FLOAT, ["n", 16]))
        outs.append(helper.make_tensor_value_info(f"Y{i}", TensorProto.FLOAT, ["n", 8]))
        nodes.append(helper.make_node("MatMul", [f"X{i}", f"W{i}"], [f"Y{i}"], name=f"mm{i}"))
    graph = helper.make_graph(nodes, "g", ins, outs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    feeds = []
    for _ in range(3):
        f = {f"X{i}": rng.normal(size=(64, 16)).astype(np.float32) for i in range(4)}
        f["X3"][0, 0] = 400.0
        feeds.append(f)
    return feeds


def _run(path, feed):
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feed)))


def _int8_dot_products() -> bool:
    """A CPU whose int8 matmuls onnxruntime runs without u8s8 saturation: VNNI (or AMX)."""
    from hubtune.core.envinfo import cpu_info

    flags = cpu_info()["flags"]
    return bool(flags.get("avx512_vnni") or flags.get("amx_int8"))


@pytest.mark.skipif(not _int8_dot_products(), reason=(
    "no VNNI/AMX: onnxruntime's u8s8 int8 kernels saturate int16 sums here (measured error 0.12 vs 0.009 simulated on "
    "an AMD EPYC without avx512_vnni), so the simulation models the VNNI arithmetic only; the int8 gate measures the "
    "real graph on every CPU"))
def test_sensitivity_matches_onnxruntime_int8_and_flags_the_outlier(tmp_path):
    src = tmp_path / "m.onnx"
    feeds = _four_matmuls(src)
    sens = matmul_sensitivity(src, feeds, sample_rows=64)
    assert set(sens) == {"mm0", "mm1", "mm2", "mm3"}
    assert sensitive_nodes(sens) == ["mm3"]
    # the simulation is onnxruntime's arithmetic: its int8 graph shows the same per-node error
    plain = tmp_path / "all.onnx"
    quantize_int8(src, plain)
    num, den = dict.fromkeys(sens, 0.0), dict.fromkeys(sens, 0.0)
    for feed in feeds:
        ref, got = _run(src, feed), _run(plain, feed)
        for i in range(4):
            num[f"mm{i}"] += float(np.square(ref[f"Y{i}"] - got[f"Y{i}"]).sum())
            den[f"mm{i}"] += float(np.square(ref[f"Y{i}"]).sum())
    for name, e in sens.items():
        assert np.sqrt(num[name] / den[name]) == pytest.approx(e, rel=0.25), name


def test_quantize_keeps_the_sensitive_node_in_fp32_and_records_it(tmp_path):
    import onnx

    src, dest = tmp_path / "m.onnx", tmp_path / "q.onnx"
    feeds = _four_matmuls(src)
    info = quantize_int8(src, dest, calibration=feeds, calibration_source="3 test batches", min_agreement=0.0)
    assert info["fp32_nodes"] == ["mm3"] and info["quantized_nodes"] == 3
    assert info["method"] == "onnxruntime quantize_dynamic" and info["calibration"] == "3 test batches"
    assert "1 of 4 MatMuls kept fp32" in info["description"]
    json.dumps(info)  # goes to export_info.json as is
    q = onnx.load(str(dest))
    assert [n.name for n in q.graph.node if n.op_type == "MatMul"] == ["mm3"]
    assert sum(n.op_type == "MatMulInteger" for n in q.graph.node) == 3
    assert len(const_matmuls(q)) == 1
    ref, got = _run(src, feeds[0]), _run(dest, feeds[0])
    np.testing.assert_allclose(got["Y3"], ref["Y3"], rtol=1e-5, atol=1e-5)  # untouched


def test_weight_only_int8_when_dynamic_int8_changes_calibration_labels(tmp_path):
    import onnx

    src, dest = tmp_path / "m.onnx", tmp_path / "q.onnx"
    feeds = _four_matmuls(src)
    info = quantize_int8(src, dest, calibration=feeds, calibration_source="3 test batches", min_agreement=1.01)
    assert info["method"] == "onnxruntime MatMulNBitsQuantizer (weight-only int8)"
    assert info["rejected"]["method"] == "onnxruntime quantize_dynamic" and info["rejected"]["calibration_agreement"] < 1.01
    assert "agreed with fp32 on only" in info["description"]
    ops = [n.op_type for n in onnx.load(str(dest)).graph.node]
    assert ops.count("MatMulNBits") == 4 and "MatMul" not in ops and "MatMulInteger" not in ops
    ref, got = _run(src, feeds[0]), _run(dest, feeds[0])
    for i in range(4):  # blockwise weights: close to fp32 even where the outlier wrecks per-tensor activations
        assert np.abs(got[f"Y{i}"] - ref[f"Y{i}"]).max() < 0.05 * np.abs(ref[f"Y{i}"]).max(), i


@pytest.mark.slow
def test_int8_of_trained_minilm_classifier_passes_the_default_gate(tmp_path):
    """A model like the quickstart's (MiniLM, LoRA r16; 1,000 tweets, 2 epochs here for CI time): its int8 variant
    is kept by the default export gate, agrees with PyTorch on >= 99% of the held-out tweets and loses <= 0.5 pt
    accuracy. (Measured on this model: dynamic int8 of every MatMul, the old method, agrees on 97.7% of the
    1,000 test tweets and loses 0.6 pt; with the most sensitive sixth kept fp32 the gate saw 98.2% and -1.0 pt.)"""
    from hubtune.core.config import DataConfig, LoraSettings, TrainConfig
    from hubtune.publish.export import ExportOptions, export
    from hubtune.publish.merge import MergeOptions, merge
    from hubtune.core.onnx_tools import read_info
    from hubtune.train import train

    from tests._tiny_runs import REPO, TEST_CSV, TRAIN_CSV, minilm_dir

    run = tmp_path / "run"
    cfg = TrainConfig(
        base_model=str(minilm_dir()), output_dir=str(run), mode="lora", num_epochs=2, learning_rate=2e-3,
        batch_size=32, max_length=128, group_by_length=True, seed=42, lora=LoraSettings(r=16, alpha=32, dropout=0.1),
        data=DataConfig(dataset=str(REPO / TRAIN_CSV), eval_dataset=str(REPO / TEST_CSV), max_samples=1000,
                        eval_max_samples=500), metric_for_best_model="f1_macro",
    )
    train(cfg, progress=False)
    merge(MergeOptions(source=str(run)))
    res = export(ExportOptions(source=str(run), quantize="int8", bench_rows=32))
    assert "onnx-int8" in res.variants, res.refused.get("onnx-int8")
    v = res.variants["onnx-int8"]
    assert v.parity.label_agreement >= 0.99 and v.accuracy_drop_pt <= 0.5
    assert v.size_mb < 0.8 * res.variants["onnx"].size_mb  # the word embeddings stay fp32
    q = read_info(run / "merged" / "onnx")["quantization"]
    assert "training texts" in q["calibration"]
