"""Run the ``qa-search`` CLI in this process with the fake embedder, optionally dying on purpose.

    python tests/crash_driver.py [--kill POINT] [--hang FILE] -- build dump.jsonl --index DIR
    python tests/crash_driver.py [--kill POINT] -- live-writes DIR N

``live-writes`` upserts N threads through a LiveIndex, one write each, printing ``ack ID`` once
each write has returned (acknowledged), as a service worker answering 200 would.

``--kill POINT`` sends this process SIGKILL (no cleanup, no ``finally``) at one of:

- ``embed:N``   before the N-th batch of texts reaches the model
- ``cache``     after an embedding-cache shard was written to its temporary file, before its rename
- ``write``     while writing a snapshot: after questions.faiss, before answers.faiss
- ``publish``   after the new generation is complete, before CURRENT is switched to it
- ``prune``     after publishing, midway through deleting an old generation
- ``rollback``  after a rollback set the write log for its target, before it moved CURRENT

``--hang FILE`` creates FILE at the first embedding batch, then sleeps (to hold the writer lock).
Used by tests/test_crash.py; the library itself reads no environment and has no test hooks.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from conftest import FakeEmbedder  # noqa: E402

import qa_search.embedding.cache  # noqa: E402
import qa_search.embedding.loading  # noqa: E402
import qa_search.index.forum  # noqa: E402
import qa_search.operations.lifecycle  # noqa: E402
import qa_search.storage.generations  # noqa: E402
from qa_search import LiveIndex, thread_from_dict  # noqa: E402
from qa_search.cli import main  # noqa: E402
from qa_search.embedding.models import PROBE_TEXTS  # noqa: E402
from qa_search.scoring.ann import VectorIndex  # noqa: E402


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def install(kill: str | None, hang: str | None) -> None:
    def fake_model(name=None, **_options):
        return FakeEmbedder()

    for module in (qa_search.embedding.loading, qa_search.operations.lifecycle):
        module.load_embedder = fake_model

    batches = 0
    encode = FakeEmbedder.encode

    def counting_encode(self, texts, *, batch_size=64):
        nonlocal batches
        if tuple(texts) != PROBE_TEXTS:
            batches += 1
            if hang:
                Path(hang).touch()
                time.sleep(120)
            if kill and kill.startswith("embed:") and batches == int(kill.split(":")[1]):
                die()
        return encode(self, texts, batch_size=batch_size)

    FakeEmbedder.encode = counting_encode
    if kill == "cache":
        qa_search.embedding.cache.file_sha256 = lambda path: die()
    elif kill == "write":
        save = VectorIndex.save

        def save_then_die(self, path):
            if Path(path).name == "answers.faiss":
                die()
            save(self, path)

        VectorIndex.save = save_then_die
    elif kill == "publish":
        qa_search.storage.generations.write_text_atomic = lambda path, text: die()
    elif kill == "prune":
        rmtree = shutil.rmtree

        def rmtree_then_die(path, *args, **kwargs):
            if "deleted-" in Path(path).name:
                die()
            rmtree(path, *args, **kwargs)

        qa_search.storage.generations.shutil.rmtree = rmtree_then_die
    elif kill == "rollback":
        set_current = qa_search.storage.generations._set_current

        def set_current_unless_rollback(index_dir, number, action, **record):
            if action == "rollback":
                die()
            set_current(index_dir, number, action, **record)

        qa_search.storage.generations._set_current = set_current_unless_rollback


if __name__ == "__main__":
    args = sys.argv[1:]
    split = args.index("--")
    opts, cli_args = args[:split], args[split + 1 :]
    kill = opts[opts.index("--kill") + 1] if "--kill" in opts else None
    hang = opts[opts.index("--hang") + 1] if "--hang" in opts else None
    install(kill, hang)
    if cli_args[0] == "live-writes":
        live = LiveIndex(Path(cli_args[1]), FakeEmbedder())
        for i in range(int(cli_args[2])):
            thread_id = f"live{i}"
            answers = [f"answer {j} to write {i}, long enough to take the model a moment" for j in range(20)]
            # every other write is for one group only: what a crash keeps, it keeps private
            live.upsert(thread_from_dict({"id": thread_id, "title": f"write {i} from the forum",
                                          "visible_to": ["grief-group"] if i % 2 else [],
                                          "answers": [{"id": f"{thread_id}-{j}", "body": a}
                                                      for j, a in enumerate(answers)]}))
            print(f"ack {thread_id}", flush=True)
    else:
        main(cli_args, prog_name="qa-search")
