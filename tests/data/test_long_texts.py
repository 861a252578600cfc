"""Long texts and conversations as researchers embed them: one row per message (`--extract each-turn`),
`--roles`, and `--long-text chunk|mean` instead of a silent cut.

Every run goes through the real CLI; stored vectors are checked against SentenceTransformer.encode of
the stored texts (chunk rows: exactly the chunk's text).
"""

from __future__ import annotations

import numpy as np
import orjson
import pyarrow.parquet as pq
import pytest

from chatspace import load_embeddings
from chatspace.encoders.chunking import TextChunker
from tests.data.test_chat_shapes import ReferenceEncodings, mt_bench_questions, sharegpt_dump
from tests.helpers import cosine_rows, run_cli, run_manifest, run_table, write_jsonl


@pytest.fixture(scope="module")
def st_model(st_model):
    """The session's library model, its encodings of each text kept for this module."""
    return ReferenceEncodings(st_model)


def _embed(dataset, out, *args: str):
    return run_cli(
        "embed-hf", "--dataset", str(dataset), "--devices", "cpu", "--output-root", str(out),
        "--no-progress", *args,
    )  # fmt: skip


def _rows(out) -> tuple[list[str], list[str], list[dict], np.ndarray]:
    table = run_table(out)
    meta = [orjson.loads(m) for m in table.column("metadata").to_pylist()]
    emb = np.asarray(table.column("embedding").to_pylist(), dtype=np.float32)
    return table.column("id").to_pylist(), table.column("text").to_pylist(), meta, emb


def _long_text(texts: list[str], tokens: int, st_model) -> str:
    """Real prose of at least `tokens` tokens, joined from the docstrings."""
    out, n = [], 0
    for t in texts:
        out.append(t)
        n += len(st_model.tokenizer(t, add_special_tokens=False)["input_ids"])
        if n >= tokens:
            return "\n\n".join(out)
    raise AssertionError("not enough text")


def short_texts(texts: list[str], st_model, n: int, start: int = 0) -> list[str]:
    """`n` real texts well within all-MiniLM-L6-v2's 256 tokens."""
    out = [t for t in texts[start : start + 4 * n] if len(st_model.tokenizer(t)["input_ids"]) < 200]
    assert len(out) >= n
    return out[:n]


def conversation_of(texts: list[str], n: int) -> list[dict]:
    roles = ["system"] + ["user", "assistant"] * n
    return [{"role": roles[i], "content": texts[i]} for i in range(n)]


# --- each-turn and --roles ----------------------------------------------------------------------------


def test_each_turn_gives_one_row_per_message_and_roles_filter_them(tmp_path, texts, st_model):
    dump = sharegpt_dump(texts)
    path = tmp_path / "sharegpt.json"
    path.write_bytes(orjson.dumps(dump))
    out = tmp_path / "out"
    proc = _embed(path, out, "--text-field", "conversations", "--extract", "each-turn", "--id-field", "id")
    assert proc.returncode == 0, proc.stderr
    ids, stored, meta, emb = _rows(out)
    expected = [
        (f"{r['id']}:{k}", m["value"], {"human": "user", "gpt": "assistant"}.get(m["from"], m["from"]))
        for r in dump
        for k, m in enumerate(r["conversations"])
    ]
    assert ids == [e[0] for e in expected]
    assert [m["turn"]["role"] for m in meta] == [e[2] for e in expected]
    counts = {r["id"]: len(r["conversations"]) for r in dump}
    assert all(m["turn"]["count"] == counts[i.split(":")[0]] for i, m in zip(ids, meta, strict=True))
    assert all(e[1].startswith(s) for s, e in zip(stored, expected, strict=True))
    assert cosine_rows(emb, st_model.encode(stored)).min() >= 0.99999
    manifest = run_manifest(out)
    assert manifest["totals"]["selected_rows"] == len(dump)
    assert manifest["totals"]["rows"] == len(expected)
    assert manifest["totals"]["expansion"]["messages"] == len(expected)

    # --roles human,gpt is user,assistant: the system prompts are left out, and counted.
    out2 = tmp_path / "out2"
    proc = _embed(
        path, out2, "--text-field", "conversations", "--extract", "each-turn", "--id-field", "id",
        "--roles", "human,gpt",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    ids2, _, meta2, _ = _rows(out2)
    assert ids2 == [e[0] for e in expected if e[2] != "system"]
    assert {m["turn"]["role"] for m in meta2} == {"user", "assistant"}
    totals = run_manifest(out2)["totals"]
    assert totals["expansion"]["messages_other_roles"] == sum(1 for e in expected if e[2] == "system")
    assert run_manifest(out2)["config"]["roles"] == "assistant,user"
    assert "conversations (each-turn, assistant,user)" in run_cli("runs", str(out2), check=True).stdout
    query = "SELECT count(*) FROM embeddings WHERE json_extract_string(metadata, '$.turn.role') = 'assistant'"
    answer = run_cli("sql", str(out), query, check=True).stdout
    assert str(sum(1 for e in expected if e[2] == "assistant")) in answer
    # Reading back by role and turn.
    users = load_embeddings(out, roles=["human"], columns=["id"]).column("id").to_pylist()
    assert users == [e[0] for e in expected if e[2] == "user"]
    second = load_embeddings(out, turns=[1]).column("id").to_pylist()
    assert second == [f"{r['id']}:1" for r in dump if len(r["conversations"]) > 1]


def test_roles_in_all_turns_join_only_those_messages(tmp_path, texts):
    rows = [{"id": "c0", "messages": conversation_of(texts, 5)}]
    path = write_jsonl(tmp_path / "c.jsonl", rows)
    out = tmp_path / "out"
    proc = _embed(
        path, out, "--text-field", "messages", "--extract", "all-turns", "--roles", "user", "--id-field", "id"
    )
    assert proc.returncode == 0, proc.stderr
    _, stored, _, _ = _rows(out)
    users = [m["content"] for m in rows[0]["messages"] if m["role"] == "user"]
    assert stored[0].startswith(f"User: {users[0][:50]}")
    assert "System:" not in stored[0] and "Assistant:" not in stored[0]


def test_roles_outside_turn_modes_is_a_usage_error(tmp_path, texts):
    path = write_jsonl(tmp_path / "c.jsonl", [{"text": "hello"}])
    proc = _embed(path, tmp_path / "out", "--roles", "user")
    assert proc.returncode == 2 and "--roles" in proc.stderr and "Traceback" not in proc.stderr
    proc = _embed(path, tmp_path / "out", "--chunk-overlap", "8")
    assert proc.returncode == 2 and "--chunk-overlap" in proc.stderr


# --- chunking -------------------------------------------------------------------------------------


def test_chunker_windows_cover_the_text_on_token_boundaries(texts, st_model):
    text = _long_text(texts, 3000, st_model)
    chunker = TextChunker(st_model.tokenizer, 256, None, overlap=32)
    (windows,) = chunker.windows([text])
    assert len(windows) >= 12
    assert windows[0].char_start == 0 and windows[-1].char_end == len(text.rstrip())
    for a, b in zip(windows, windows[1:], strict=False):
        assert b.char_start < a.char_end  # they overlap
        assert b.char_start > a.char_start
    for w in windows:
        chunk = text[w.char_start : w.char_end]
        assert chunk == chunk.strip()
        assert len(st_model.tokenizer(chunk)["input_ids"]) <= 256  # never truncated
    assert chunker.windows(["a short text"]) == [None]


def _long_corpus(texts, st_model):
    long = _long_text(texts, 3000, st_model)
    rows = [{"id": f"d{i}", "text": t} for i, t in enumerate(short_texts(texts, st_model, 12))]
    rows.insert(5, {"id": "long", "text": long})
    return rows, long


def test_chunk_rows_are_exactly_their_text_and_short_rows_unchanged(tmp_path, texts, st_model):
    rows, long = _long_corpus(texts, st_model)
    path = write_jsonl(tmp_path / "c.jsonl", rows)
    plain, chunked = tmp_path / "plain", tmp_path / "chunked"
    assert _embed(path, plain, "--id-field", "id").returncode == 0
    proc = _embed(path, chunked, "--id-field", "id", "--long-text", "chunk", "--chunk-overlap", "16")
    assert proc.returncode == 0, proc.stderr
    ids, stored, meta, emb = _rows(chunked)
    chunk_ids = [i for i in ids if i.startswith("long#")]
    n = len(chunk_ids)
    assert n >= 12 and chunk_ids == [f"long#{k}" for k in range(n)]
    for i, text, m in zip(ids, stored, meta, strict=True):
        if i.startswith("long#"):
            c = m["chunk"]
            assert c["count"] == n and f"long#{c['index']}" == i
            assert text == long[c["char_start"] : c["char_end"]]
            assert m["truncated"] is False
        else:
            assert "chunk" not in m
    assert cosine_rows(emb, st_model.encode(stored)).min() >= 0.99999
    # The short rows: same ids, same vectors as truncate.
    p_ids, _, _, p_emb = _rows(plain)
    short = {i: v for i, v in zip(ids, emb, strict=True) if "#" not in i}
    same = [k for k, i in enumerate(p_ids) if i != "long"]
    assert cosine_rows(np.stack([short[p_ids[k]] for k in same]), p_emb[same]).min() >= 0.99999
    totals = run_manifest(chunked)["totals"]
    assert totals["expansion"]["texts_chunked"] == 1
    assert totals["expansion"]["chunk_rows"] == n == totals["expansion"]["most_chunks"]
    assert totals["rows"] == len(rows) - 1 + n and totals["selected_rows"] == len(rows)
    assert totals["truncated_rows"] == 0


def test_mean_is_the_token_weighted_mean_of_the_chunks(tmp_path, texts, st_model):
    rows, long = _long_corpus(texts, st_model)
    path = write_jsonl(tmp_path / "c.jsonl", rows)
    out, chunked = tmp_path / "mean", tmp_path / "chunked"
    assert _embed(path, out, "--id-field", "id", "--long-text", "mean").returncode == 0
    assert _embed(path, chunked, "--id-field", "id", "--long-text", "chunk").returncode == 0
    ids, stored, meta, emb = _rows(out)
    assert ids == [r["id"] for r in rows]
    k = ids.index("long")
    assert stored[k] == long and meta[k]["chunks"] >= 12
    c_ids, c_text, c_meta, _ = _rows(chunked)
    chunks = [t for i, t in zip(c_ids, c_text, strict=True) if i.startswith("long#")]
    weights = np.asarray([len(st_model.tokenizer(t)["input_ids"]) for t in chunks], dtype=np.float64)
    expected = (st_model.encode(chunks).astype(np.float64) * weights[:, None]).sum(0) / weights.sum()
    expected /= np.linalg.norm(expected)  # all-MiniLM-L6-v2 normalizes
    assert cosine_rows(emb[k : k + 1], expected[None, :]).min() >= 0.99999
    assert abs(np.linalg.norm(emb[k]) - 1) < 1e-3
    others = [i for i in range(len(ids)) if i != k]
    assert cosine_rows(emb[others], st_model.encode([stored[i] for i in others])).min() >= 0.99999
    # Read back from the chunk run: one row per source row, the same vectors as the mean run.
    folded = load_embeddings(chunked, chunks="mean", columns=["id", "text", "embedding"])
    assert folded.column_names == ["id", "text", "embedding"]
    assert folded.column("id").to_pylist() == ids
    assert folded.column("text").to_pylist()[k].split() == long.split()  # the blanks between chunks
    f_emb = np.asarray(folded.column("embedding").to_pylist(), dtype=np.float32)
    assert cosine_rows(f_emb, emb).min() >= 0.99999


def test_each_turn_with_chunks_in_a_forty_message_conversation(tmp_path, texts, st_model):
    messages = conversation_of(short_texts(texts, st_model, 40, 400), 40)
    messages[7]["content"] = _long_text(texts, 1200, st_model)
    path = write_jsonl(tmp_path / "c.jsonl", [{"id": "conv", "messages": messages}])
    out = tmp_path / "out"
    proc = _embed(
        path, out, "--text-field", "messages", "--extract", "each-turn", "--id-field", "id",
        "--long-text", "chunk", "--roles", "user,assistant",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    ids, stored, meta, emb = _rows(out)
    assert ids[0] == "conv:1" and "conv:0" not in ids  # the system message is left out
    sevens = [i for i in ids if i.startswith("conv:7#")]
    assert len(sevens) >= 5 and all(
        m["turn"]["index"] == 7 for i, m in zip(ids, meta, strict=True) if i in sevens
    )
    assert cosine_rows(emb, st_model.encode(stored)).min() >= 0.99999
    # The map's hover (the preview) says whose message, which turn and which chunk a point is.
    proc = run_cli(
        "reduce-embeddings", "--embedding-dirs", str(out), "--output", str(tmp_path / "c.parquet"),
        "--method", "pca", "--no-progress",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    points = {r["id"]: r["preview"] for r in pq.read_table(tmp_path / "c.parquet").to_pylist()}
    assert points["conv:7#0"].startswith(f"[user · turn 7 of 40 · chunk 1 of {len(sevens)}] ")
    assert points["conv:2"].startswith("[assistant · turn 2 of 40] ")
    # --roles / --turns map only those messages (a message's chunks all come along), sampled among them.
    proc = run_cli(
        "reduce-embeddings", str(out), "--output", str(tmp_path / "u.parquet"), "--method", "pca",
        "--roles", "human", "--no-progress",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    users = [i for i, m in zip(ids, meta, strict=True) if m["turn"]["role"] == "user"]
    mapped = [r["id"] for r in pq.read_table(tmp_path / "u.parquet").to_pylist()]
    assert sorted(mapped) == sorted(users) and set(sevens) <= set(mapped)
    proc = run_cli(
        "reduce-embeddings", str(out), "--output", str(tmp_path / "t.parquet"), "--method", "pca",
        "--turns", "2,4,6,7", "--roles", "assistant", "--no-progress",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert sorted(r["id"] for r in pq.read_table(tmp_path / "t.parquet").to_pylist()) == [
        "conv:2",
        "conv:4",
        "conv:6",
    ]
    proc = run_cli(
        "reduce-embeddings",
        str(out),
        "--output",
        str(tmp_path / "n.parquet"),
        "--turns",
        "x",
        "--no-progress",
    )
    assert (
        proc.returncode == 2
        and "--turns takes turn numbers" in proc.stderr
        and "Traceback" not in proc.stderr
    )
    totals = run_manifest(out)["totals"]
    assert totals["expansion"]["messages"] == 39 and totals["rows"] == 38 + len(sevens)


@pytest.mark.parametrize("mode", ["chunk", "mean"])
def test_mt_bench_lists_of_strings_with_long_text(tmp_path, texts, st_model, mode):
    rows = mt_bench_questions(texts, 6)
    rows[2]["turns"][1] = _long_text(texts, 700, st_model)
    path = write_jsonl(tmp_path / "q.jsonl", rows)
    out = tmp_path / "out"
    proc = _embed(path, out, "--text-field", "turns", "--id-field", "question_id", "--long-text", mode)
    assert proc.returncode == 0, proc.stderr
    ids, stored, _, emb = _rows(out)
    if mode == "chunk":
        assert "83#0" in ids and "83" not in ids
        assert cosine_rows(emb, st_model.encode(stored)).min() >= 0.99999
    else:
        assert ids == [str(r["question_id"]) for r in rows]
        assert stored[2] == "\n\n".join(rows[2]["turns"])


def test_resume_after_sigkill_in_chunk_mode_gives_exactly_the_planned_chunk_rows(tmp_path, texts, st_model):
    import os
    import signal

    from tests.helpers.faults import start_until_units

    base = short_texts(texts, st_model, 48)
    rows = [{"id": f"d{i}", "text": t} for i, t in enumerate(base)]
    for k in range(0, 48, 3):  # a long text in every unit of 4 rows
        rows[k]["text"] = _long_text(texts[k * 7 :], 600, st_model)
    path = write_jsonl(tmp_path / "c.jsonl", rows)
    out = tmp_path / "out"
    args = [
        "embed-hf", "--dataset", str(path), "--id-field", "id", "--output-root", str(out), "--devices", "cpu",
        "--rows-per-shard", "4", "--no-progress", "--long-text", "chunk", "--chunk-overlap", "24",
    ]  # fmt: skip
    proc, _ = start_until_units(args, out, 2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=60)
    assert len(list(out.glob("indexes/*/*/*/units/unit-*.json"))) < 12  # killed mid-run
    resumed = run_cli(*args, "--resume", timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    chunker = TextChunker(st_model.tokenizer, 256, None, overlap=24)
    planned = []
    for r, windows in zip(rows, chunker.windows([r["text"] for r in rows]), strict=True):
        planned += [r["id"]] if windows is None else [f"{r['id']}#{k}" for k in range(len(windows))]
    ids, stored, _, emb = _rows(out)
    assert sorted(ids) == sorted(planned) and len(ids) == len(set(ids))
    assert cosine_rows(emb, st_model.encode(stored)).min() >= 0.99999
    assert run_manifest(out)["totals"]["rows"] == len(planned)


def test_download_dataset_suggests_each_turn_for_conversations(tmp_path, texts):
    dump = sharegpt_dump(texts)
    path = write_jsonl(tmp_path / "sharegpt.jsonl", dump)
    proc = run_cli("download-dataset", "--name", str(path), "--output-root", str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stderr
    assert "--text-field conversations --extract each-turn --id-field id" in proc.stdout
    messages = sum(len(r["conversations"]) for r in dump)
    assert f"each-turn: {messages} messages" in proc.stdout
    info = orjson.loads(next((tmp_path / "out").glob("datasets/raw/local/*/*/info.json")).read_bytes())
    field = next(f for f in info["text_fields"] if f["field"] == "conversations")
    assert field["messages"]["count"] == messages


def test_options_are_checked_before_any_work():
    from chatspace.config import RunConfig
    from chatspace.errors import UsageError

    with pytest.raises(UsageError, match="embed-openai truncates"):
        RunConfig.from_options(mode="openai", dataset="d.jsonl", long_text="chunk")
    with pytest.raises(UsageError, match="--roles needs at least one role"):
        RunConfig.from_options(dataset="d.jsonl", extract="each-turn", roles=" , ")
    cfg = RunConfig.from_options(dataset="d.jsonl", extract="each-turn", roles="gpt,Human,user")
    assert cfg.data.roles == "assistant,user"
    # The default keeps the hash runs had before these options existed.
    plain = RunConfig.from_options(dataset="d.jsonl")
    assert plain.output_hash() == plain.replace(long_text="truncate", chunk_overlap=0).output_hash()
    assert plain.output_hash() != plain.replace(long_text="chunk").output_hash()
