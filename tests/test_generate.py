"""batch-predict for generation tasks (issue 37): causal LMs and encoder-decoders over a dataset, greedy output
token-identical to the anchors on every row, sampling reproducible per row across batches, shards and --resume."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from hubtune.predict import PredictOptions, batch_predict

from tests._generation import CAUSAL, PROMPTS, SEQ2SEQ, build_generator, reference_texts

NEW = 8


def _prompts_file(tmp_path, rows=None, name="prompts.jsonl"):
    path = tmp_path / name
    with open(path, "w", encoding="utf-8") as fh:
        for r in rows if rows is not None else [{"prompt": p, "id": i} for i, p in enumerate(PROMPTS)]:
            fh.write(json.dumps(r) + "\n")
    return path


def _rows(path):
    return [json.loads(line) for line in open(path, encoding="utf-8")]


def _run(model, data, out, **kw):
    kw.setdefault("batching", "padded")
    return batch_predict(PredictOptions(model=str(model), dataset=str(data), output=str(out), progress=False, **kw))


def _pipeline_text(tok, prompt_ids, body, seq2seq):
    """The text pipeline("text-generation", return_full_text=False) makes of new token ids: transformers 5 decodes
    them; transformers 4 decodes prompt + new tokens and cuts the decoded prompt's length off."""
    import transformers

    if seq2seq or int(transformers.__version__.split(".")[0]) >= 5:
        return tok.decode(body, skip_special_tokens=True)
    return tok.decode(prompt_ids + body, skip_special_tokens=True)[len(tok.decode(prompt_ids, skip_special_tokens=True)):]


@pytest.mark.parametrize("family", CAUSAL + SEQ2SEQ)
def test_greedy_equals_model_generate_row_by_row(family, tmp_path):
    """Batched (padded, length-sorted, batch of 4 over 6 prompts of different lengths) = model.generate alone."""
    from transformers import AutoTokenizer

    model = build_generator(family, tmp_path / family)
    data = _prompts_file(tmp_path)
    res = _run(model, data, tmp_path / "out.jsonl", max_new_tokens=NEW, batch_size=4)
    seq2seq = family in SEQ2SEQ
    assert res.task == ("text2text-generation" if seq2seq else "text-generation")
    tok = AutoTokenizer.from_pretrained(model)
    want = reference_texts(model, PROMPTS, NEW, seq2seq=seq2seq)
    rows = _rows(tmp_path / "out.jsonl")
    assert [r["row_id"] for r in rows] == list(range(len(PROMPTS)))
    for prompt, row, ids in zip(PROMPTS, rows, want):
        eos = ids.index(102) if 102 in ids else None
        body = ids[:eos] if eos is not None else ids
        assert row["generated_text"] == _pipeline_text(tok, tok(prompt)["input_ids"], body, seq2seq), (family, row)
        assert row["completion_tokens"] == (eos + 1 if eos is not None else len(ids))
        assert row["finish_reason"] == ("stop" if eos is not None else "length")
    assert res.generation["completion_tokens"] == sum(r["completion_tokens"] for r in rows)


def test_greedy_equals_the_text_generation_pipeline(tmp_path):
    """40 new tokens: the batch drops its finished rows every 16 tokens and continues the rest on its KV cache."""
    from transformers import pipeline

    from transformers import GenerationConfig

    model = build_generator("llama", tmp_path / "llama")
    # an end-of-sequence token that row 0 reaches at its 6th new token: rows finish at different rounds
    first = reference_texts(model, PROMPTS[:1], 40, seq2seq=False)[0]
    GenerationConfig(eos_token_id=[102, first[5]], pad_token_id=0, bos_token_id=101).save_pretrained(model)
    _run(model, _prompts_file(tmp_path), tmp_path / "out.parquet", max_new_tokens=40, batch_size=3)
    import pyarrow.parquet as pq

    got = pq.read_table(tmp_path / "out.parquet").column("generated_text").to_pylist()
    pipe = pipeline("text-generation", model=str(model), device="cpu")
    want = [pipe(p, max_new_tokens=40, do_sample=False, return_full_text=False)[0]["generated_text"] for p in PROMPTS]
    assert got == want
    reasons = pq.read_table(tmp_path / "out.parquet").column("finish_reason").to_pylist()
    assert reasons[0] == "stop" and "length" in reasons, reasons


@pytest.fixture(scope="module")
def gpt2_chat(tmp_path_factory):
    return build_generator("gpt2", tmp_path_factory.mktemp("gpt2") / "m", chat=True)


def test_sampling_is_reproducible_per_row_across_batches_and_shards(gpt2_chat, tmp_path):
    data = _prompts_file(tmp_path)
    kw = dict(max_new_tokens=NEW, temperature=0.9, top_k=50, seed=7, num_return_sequences=2)
    _run(gpt2_chat, data, tmp_path / "a.jsonl", batch_size=6, **kw)
    _run(gpt2_chat, data, tmp_path / "b.jsonl", batch_size=1, chunk_size=2, **kw)
    a, b = _rows(tmp_path / "a.jsonl"), _rows(tmp_path / "b.jsonl")
    assert a == b
    assert all(len(r["generated_text"]) == 2 and len(r["finish_reason"]) == 2 for r in a)
    assert any(r["generated_text"][0] != r["generated_text"][1] for r in a)  # two draws, not one text twice
    for i in range(2):
        _run(gpt2_chat, data, tmp_path / f"s{i}.jsonl", num_shards=2, shard_index=i, **kw)
    assert _rows(tmp_path / "s0.jsonl") + _rows(tmp_path / "s1.jsonl") == a
    _run(gpt2_chat, data, tmp_path / "c.jsonl", batch_size=6, **{**kw, "seed": 8})
    assert _rows(tmp_path / "c.jsonl") != a


def test_a_killed_run_resumes_to_the_same_bytes(gpt2_chat, tmp_path):
    data = _prompts_file(tmp_path)
    args = [sys.executable, "-m", "hubtune", "batch-predict", "--model", str(gpt2_chat), "--dataset", str(data),
            "--max-new-tokens", str(NEW), "--temperature", "0.8", "--seed", "3", "--chunk-size", "2",
            "--batching", "padded", "--no-progress"]
    whole = subprocess.run(args + ["--output", str(tmp_path / "whole.jsonl")], capture_output=True, text=True)
    assert whole.returncode == 0, whole.stderr
    assert "tokens/s" in whole.stdout
    env = {**os.environ, "HUBTUNE_PREDICT_KILL_AT": "shard-recorded"}
    killed = subprocess.run(args + ["--output", str(tmp_path / "k.jsonl")], capture_output=True, text=True, env=env)
    assert killed.returncode == -9
    resumed = subprocess.run(args + ["--output", str(tmp_path / "k.jsonl"), "--resume", "--json"], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["resumed_rows"] == 2
    assert (tmp_path / "k.jsonl").read_bytes() == (tmp_path / "whole.jsonl").read_bytes()
    hotter = [("0.5" if a == "0.8" else a) for a in args]
    other = subprocess.run(hotter + ["--output", str(tmp_path / "k2.jsonl")], capture_output=True, text=True, env=env)
    assert other.returncode == -9
    bad = subprocess.run([*args, "--output", str(tmp_path / "k2.jsonl"), "--resume"], capture_output=True, text=True)
    assert bad.returncode != 0 and "temperature" in bad.stderr


def test_chat_messages_stop_strings_and_row_errors(gpt2_chat, tmp_path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(gpt2_chat)
    rows = [{"messages": [{"role": "user", "content": p}]} for p in PROMPTS[:3]]
    rows.append({"messages": "not a list"})
    rows.append({"messages": [{"role": "user", "content": "x " * 600}]})
    data = _prompts_file(tmp_path, rows)
    res = _run(gpt2_chat, data, tmp_path / "out.jsonl", max_new_tokens=NEW, system_prompt="be brief")
    out = _rows(tmp_path / "out.jsonl")
    assert [r["row_id"] for r in out] == [0, 1, 2] and res.errors == 2
    errors = [json.loads(line) for line in open(res.errors_path)]
    assert [e["row_id"] for e in errors] == [3, 4] and "positions" in errors[1]["reason"]
    rendered = tok.apply_chat_template([{"role": "system", "content": "be brief"}, {"role": "user", "content": PROMPTS[0]}],
                                       add_generation_prompt=True, tokenize=False)
    assert out[0]["prompt_tokens"] == len(tok(rendered, add_special_tokens=False)["input_ids"])
    # a stop string: the text is cut before it, the reason is stop
    first = out[0]["generated_text"]
    word = first.split()[1] if len(first.split()) > 1 else None
    if word:
        _run(gpt2_chat, data, tmp_path / "stop.jsonl", max_new_tokens=NEW, system_prompt="be brief", stop=[word])
        cut = _rows(tmp_path / "stop.jsonl")[0]
        assert word not in cut["generated_text"] and first.startswith(cut["generated_text"])
        assert cut["finish_reason"] == "stop" and cut["completion_tokens"] <= out[0]["completion_tokens"]


def test_refusals_in_one_line(tmp_path):
    model = build_generator("qwen2", tmp_path / "qwen2")  # no chat template
    chat = _prompts_file(tmp_path, [{"messages": [{"role": "user", "content": "hi"}]}], "chat.jsonl")
    run = lambda *a: subprocess.run([sys.executable, "-m", "hubtune", "batch-predict", "--model", str(model), *a,  # noqa: E731
                                     "--no-progress"], capture_output=True, text=True)
    r = run("--dataset", str(chat), "--output", str(tmp_path / "o.jsonl"))
    assert r.returncode == 2 and "chat template" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (tmp_path / "o.jsonl.parts").exists()
    data = _prompts_file(tmp_path)
    r = run("--dataset", str(data), "--output", str(tmp_path / "o.jsonl"), "--num-return-sequences", "2")
    assert r.returncode == 2 and "--temperature" in r.stderr
    r = run("--dataset", str(data), "--output", str(tmp_path / "o.jsonl"), "--threshold", "0.3")
    assert r.returncode == 2 and "--threshold" in r.stderr
    r = run("--dataset", str(data), "--output", str(tmp_path / "o.jsonl"), "--backend", "openvino")
    assert r.returncode == 2 and "--backend torch or onnx" in r.stderr and "unknown" not in r.stderr, r.stderr


def test_onnx_runtime_generation_with_onnxruntime_genai(tmp_path, monkeypatch):
    """--backend onnx: onnxruntime-genai's build of a llama answers like PyTorch on every row; a family its model
    builder does not convert (gpt2) is refused in one line."""
    pytest.importorskip("onnxruntime_genai")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    model = build_generator("llama", tmp_path / "llama")
    data = _prompts_file(tmp_path)
    res = _run(model, data, tmp_path / "onnx.jsonl", max_new_tokens=NEW, backend="onnx")
    assert res.choice["backend"] == "onnx"
    _run(model, data, tmp_path / "torch.jsonl", max_new_tokens=NEW, backend="torch")
    assert _rows(tmp_path / "onnx.jsonl") == _rows(tmp_path / "torch.jsonl")
    gpt2 = build_generator("gpt2", tmp_path / "gpt2")
    r = subprocess.run([sys.executable, "-m", "hubtune", "batch-predict", "--model", str(gpt2), "--dataset", str(data),
                        "--output", str(tmp_path / "g.jsonl"), "--backend", "onnx", "--no-progress"],
                       capture_output=True, text=True, env={**os.environ, "HF_HOME": str(tmp_path / "hf")})
    assert r.returncode == 2 and "--backend torch" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
