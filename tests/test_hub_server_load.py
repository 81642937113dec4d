"""A bounded load test of the local Hub on loopback, through the real huggingface_hub client: 20 concurrent
clients x 50 downloads while 5 pushes run concurrently; 0 errors, 0 corrupt files, the server's RSS bounded.

Bounded in count (1,000 downloads, 5 pushes) and in time (every worker stops at a deadline), and the server is
a subprocess (its RSS read from /proc). Slow: run with ``-m slow``.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path

import pytest

from hubtune.hub_server.embedded import client_patches, load_client_modules

CLIENTS, DOWNLOADS_EACH, PUSHES = 20, 50, 5
DEADLINE_S = 420.0
RSS_BOUND_MB = 300  # measured: 55 MB at start, 91 MB peak on a 2-core runner (the figures are printed)
TOKEN = "load-test-token"


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


@pytest.mark.slow
def test_concurrent_downloads_and_pushes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = {**os.environ, "HF_HUB_DISABLE_TELEMETRY": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "hubtune", "hub", "serve", "--root", str(tmp_path / "root"),
                             "--port", "0", "--token", TOKEN], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    try:
        url = proc.stdout.readline().split(" at ", 1)[1].split(" ", 1)[0]
        load_client_modules()
        for key, value in {"HF_ENDPOINT": url, "HF_TOKEN": TOKEN, "HF_HOME": str(tmp_path / "hf"),
                           "HF_HUB_DISABLE_XET": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}.items():
            monkeypatch.setenv(key, value)
        for obj, name, value in client_patches(url, home=tmp_path / "hf"):
            monkeypatch.setattr(obj, name, value)
        from huggingface_hub import HfApi, hf_hub_download

        api = HfApi(endpoint=url, token=TOKEN)
        api.create_repo("org/load")
        seed = tmp_path / "seed"
        seed.mkdir()
        rng = os.urandom
        contents = {f"text{i}.txt": (f"line {i}\n" * (i * 3000 + 10)).encode() for i in range(5)}
        contents.update({f"w{i}.safetensors": rng(256 * 1024 * (i + 1)) for i in range(3)})
        for name, data in contents.items():
            (seed / name).write_bytes(data)
        sha = api.upload_folder(folder_path=seed, repo_id="org/load", commit_message="seed").oid
        expected = {name: hashlib.sha256(data).hexdigest() for name, data in contents.items()}
        names = sorted(expected)

        peak = [_rss_mb(proc.pid)]
        start_rss = peak[0]
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                peak[0] = max(peak[0], _rss_mb(proc.pid))
                time.sleep(0.05)

        deadline = time.monotonic() + DEADLINE_S
        errors: list[str] = []
        corrupt: list[str] = []
        done = {"downloads": 0, "pushes": 0}
        lock = threading.Lock()

        def downloader(client: int) -> None:
            cache = tmp_path / f"cache{client}"
            for i in range(DOWNLOADS_EACH):
                if time.monotonic() > deadline:
                    errors.append(f"client {client}: deadline after {i} downloads")
                    return
                name = names[(client + i) % len(names)]
                try:
                    path = hf_hub_download("org/load", name, revision=sha, cache_dir=cache, force_download=True)
                    if hashlib.sha256(Path(path).read_bytes()).hexdigest() != expected[name]:
                        corrupt.append(f"client {client}: {name}")
                except Exception as exc:  # noqa: BLE001 - counted, reported below
                    errors.append(f"client {client}: {name}: {type(exc).__name__}: {exc}"[:300])
                with lock:
                    done["downloads"] += 1

        def pusher(n: int) -> None:
            folder = tmp_path / f"push{n}"
            folder.mkdir()
            (folder / "notes.txt").write_text(f"push {n}\n" * 500)
            (folder / "weights.safetensors").write_bytes(hashlib.sha256(str(n).encode()).digest() * 40_000)
            try:
                api.upload_folder(folder_path=folder, path_in_repo=f"push{n}", repo_id="org/load",
                                  commit_message=f"push {n}")
                with lock:
                    done["pushes"] += 1
            except Exception as exc:  # noqa: BLE001
                errors.append(f"push {n}: {type(exc).__name__}: {exc}"[:300])

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        began = time.monotonic()
        with ThreadPoolExecutor(CLIENTS + PUSHES) as pool:
            futures = [pool.submit(downloader, c) for c in range(CLIENTS)]
            futures += [pool.submit(pusher, n) for n in range(PUSHES)]
            _, pending = wait(futures, timeout=DEADLINE_S + 60)
        elapsed = time.monotonic() - began
        stop.set()
        sampler.join()
        print(f"\nload test: {done['downloads']} downloads and {done['pushes']} pushes in {elapsed:.1f}s, "
              f"{len(errors)} errors, {len(corrupt)} corrupt; server RSS {start_rss:.0f} MB at start, "
              f"peak {peak[0]:.0f} MB (bound {RSS_BOUND_MB} MB)")
        assert not pending and errors == [] and corrupt == [], (errors[:5], corrupt[:5])
        assert done == {"downloads": CLIENTS * DOWNLOADS_EACH, "pushes": PUSHES}
        files = set(api.list_repo_files("org/load"))
        assert {f"push{n}/weights.safetensors" for n in range(PUSHES)} <= files
        assert len(api.list_repo_commits("org/load")) == 2 + PUSHES
        got = hf_hub_download("org/load", "push3/weights.safetensors", cache_dir=tmp_path / "final")
        assert Path(got).read_bytes() == hashlib.sha256(b"3").digest() * 40_000
        assert peak[0] < RSS_BOUND_MB
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
