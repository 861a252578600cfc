"""Real chat-data shapes as they come: MT-bench-style question and answer files (lists of strings,
nested under list indices), ShareGPT dumps (a JSON array), and OpenAI-style logs with nested metadata
(JSONL, Parquet struct/list columns, a save_to_disk folder), plus CSV's flat columns.

Every run goes through the real CLI, and every stored vector is checked against
SentenceTransformer.encode of the stored text.
"""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from chatspace.data.extract import (
    Skip,
    columns_for,
    extract_row,
    extract_text,
    lookup,
    needed_columns,
    row_id,
    top_column,
)
from tests.helpers import cosine_rows, cut_or_whole, run_cli, run_manifest, run_table, write_jsonl


class ReferenceEncodings:
    """SentenceTransformer.encode as the checks here use it, each distinct text encoded once per module:
    several runs store the same texts, and encoding them again proves nothing more."""

    def __init__(self, model):
        self.model = model
        self.tokenizer = model.tokenizer
        self._vectors: dict[str, np.ndarray] = {}

    def encode(self, texts: list[str]) -> np.ndarray:
        new = [t for t in dict.fromkeys(texts) if t not in self._vectors]
        if new:
            self._vectors.update(zip(new, self.model.encode(new), strict=True))
        if not texts:
            return self.model.encode(texts)
        return np.stack([self._vectors[t] for t in texts])


@pytest.fixture(scope="module")
def st_model(st_model):
    """The session's library model, its encodings of each text kept for this module."""
    return ReferenceEncodings(st_model)


# --- the shapes, built from real prose --------------------------------------------------------------

CATEGORIES = ["writing", "roleplay", "reasoning", "math", "coding", "extraction", "stem", "humanities"]


def mt_bench_questions(texts: list[str], n: int = 24) -> list[dict]:
    """question.jsonl of MT-bench: an id, a category label and two user turns."""
    return [
        {"question_id": 81 + i, "category": CATEGORIES[i % 8], "turns": [texts[2 * i], texts[2 * i + 1]]}
        for i in range(n)
    ]


def mt_bench_question_file(texts: list[str]) -> list[dict]:
    """MT-bench's whole question.jsonl: 80 questions of 8 categories, ten each; the 30 of reasoning, math
    and coding carry a `reference` answer, longer than the questions."""
    rows = []
    for i in range(80):
        category = CATEGORIES[i // 10]
        row = {"question_id": 81 + i, "category": category, "turns": [texts[2 * i], texts[2 * i + 1]]}
        if category in ("reasoning", "math", "coding"):
            row["reference"] = [texts[200 + i] + "\n\n" + texts[300 + i], texts[400 + i]]
        rows.append(row)
    return rows


def mt_bench_answers(texts: list[str], n: int = 24) -> list[dict]:
    """model_answer/*.jsonl of MT-bench: the answer turns sit under choices[0].turns."""
    return [
        {
            "question_id": 81 + i,
            "answer_id": f"ans{i:04x}Zq{i * 7919 % 1000:03d}",
            "model_id": "vicuna-13b-v1.3",
            "choices": [{"index": 0, "turns": [texts[100 + 2 * i], texts[101 + 2 * i]]}],
            "tstamp": 1687221600.5 + i,
        }
        for i in range(n)
    ]


def sharegpt_dump(texts: list[str], n: int = 20) -> list[dict]:
    """A ShareGPT dump: one JSON array of {"id", "conversations": [{"from", "value"}]}."""
    rows = []
    for i in range(n):
        conv = [
            {"from": "human", "value": texts[200 + 3 * i]},
            {"from": "gpt", "value": texts[201 + 3 * i]},
        ]
        if i % 3 == 0:
            conv.insert(0, {"from": "system", "value": "You are a helpful assistant."})
        if i % 5 == 4:
            conv = [{"from": "human", "value": texts[202 + 3 * i]}]  # no answer: no first-assistant
        rows.append({"id": f"sg_{i:03d}", "conversations": conv})
    return rows


def openai_logs(texts: list[str], n: int = 20) -> list[dict]:
    """Request/response logs: the conversation and the ids sit in nested structs."""
    rows = []
    for i in range(n):
        rows.append(
            {
                "request": {
                    "model": "gpt-4o-mini",
                    "messages": [
                        {"role": "system", "content": "Answer briefly."},
                        {"role": "user", "content": texts[300 + 2 * i]},
                    ],
                },
                "response": {"choices": [{"message": {"role": "assistant", "content": texts[301 + 2 * i]}}]},
                "metadata": {"user": {"uid": f"user-{i:05d}"}, "category": CATEGORIES[i % 3], "tags": ["a"]},
            }
        )
    return rows


def _embed(dataset, out, *args: str):
    return run_cli(
        "embed-hf", "--dataset", str(dataset), "--devices", "cpu", "--output-root", str(out),
        "--no-progress", *args,
    )  # fmt: skip


def _embed_equal_to_encode(dataset, out, st_model, *args: str) -> tuple[list[str], list[str]]:
    """Embed through the CLI; every stored vector must be `encode` of its stored text. (ids, texts)"""
    proc = _embed(dataset, out, *args)
    assert proc.returncode == 0, proc.stderr
    return _check_vectors_equal_encode(out, st_model)


def _check_vectors_equal_encode(out, st_model) -> tuple[list[str], list[str]]:
    table = run_table(out)
    texts = table.column("text").to_pylist()
    ours = np.asarray(table.column("embedding").to_pylist(), dtype=np.float32)
    assert cosine_rows(ours, st_model.encode(texts)).min() >= 0.99999
    return table.column("id").to_pylist(), texts


# --- paths and lists, in one process ----------------------------------------------------------------


def test_dotted_paths_walk_structs_and_list_indices():
    row = {
        "choices": [{"turns": ["q1", "q2"]}, {"turns": ["r1"]}],
        "meta": {"category": "math", "uid": 7, "empty": None},
        "meta.category": "the dotted column",
    }
    assert lookup(row, "choices.0.turns") == ["q1", "q2"]
    assert lookup(row, "choices.1.turns.0") == "r1"
    assert lookup(row, "choices.-1.turns") == ["r1"]
    assert lookup(row, "meta.uid") == 7
    assert lookup(row, "meta.category") == "the dotted column"  # a column's own name wins
    assert lookup(row, "meta.empty.deeper") is None  # null part-way: null, not missing
    assert columns_for("a.b.c") == ["a.b.c", "a.b", "a"]
    assert top_column("meta.x.y", ["meta", "text"]) == "meta"
    assert top_column("other.x", ["meta"]) is None
    for missing in ("choices.5.turns", "choices.x", "meta.nope", "nope", "meta.uid.deeper"):
        with pytest.raises(LookupError):
            lookup(row, missing)
    with pytest.raises(Skip, match="missing_field"):
        extract_row(row, "choices.9.turns", "text")
    assert row_id(row, "meta.uid", "train", 0) == "7"
    assert needed_columns("choices.0.turns", "meta.uid") == [
        "choices.0.turns",
        "choices.0",
        "choices",
        "meta.uid",
        "meta",
    ]


def test_lists_of_strings_are_one_text_joined_by_a_blank_line():
    assert extract_text(["first question", "follow-up"], "text") == "first question\n\nfollow-up"
    assert extract_text(["only", None, "  ", "kept"], "text") == "only\n\nkept"
    for value, reason in (([], "not_text"), (["", " "], "empty"), ([1, "a"], "not_text")):
        with pytest.raises(Skip, match=reason):
            extract_text(value, "text")
    # Conversations keep their own extraction.
    conv = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    assert extract_text(conv, "first-assistant") == "hello"
    with pytest.raises(Skip, match="not_conversation"):
        extract_text(["a", "b"], "first-user")


# --- end to end through the CLI ---------------------------------------------------------------------


@pytest.mark.slow
def test_mt_bench_questions_and_answers(tmp_path, texts, st_model):
    questions = mt_bench_questions(texts)
    qfile = write_jsonl(tmp_path / "question.jsonl", questions)
    out = tmp_path / "out"
    ids, stored = _embed_equal_to_encode(
        qfile, out, st_model, "--text-field", "turns", "--id-field", "question_id"
    )
    assert ids == [str(q["question_id"]) for q in questions]
    assert cut_or_whole(stored, ["\n\n".join(q["turns"]) for q in questions])

    answers = mt_bench_answers(texts)
    afile = write_jsonl(tmp_path / "vicuna-13b-v1.3.jsonl", answers)
    out2 = tmp_path / "out2"
    ids, stored = _embed_equal_to_encode(
        afile, out2, st_model, "--text-field", "choices.0.turns", "--id-field", "answer_id"
    )
    assert ids == [a["answer_id"] for a in answers]
    assert cut_or_whole(stored, ["\n\n".join(a["choices"][0]["turns"]) for a in answers])
    meta = orjson.loads(run_table(out2).column("metadata")[0].as_py())
    assert meta["field"] == "choices.0.turns"


@pytest.mark.slow
def test_sharegpt_json_array_dump(tmp_path, texts, st_model):
    dump = sharegpt_dump(texts)
    path = tmp_path / "sharegpt_dump.json"
    path.write_bytes(orjson.dumps(dump, option=orjson.OPT_INDENT_2))
    out = tmp_path / "out"
    ids, stored = _embed_equal_to_encode(
        path, out, st_model, "--text-field", "conversations", "--extract-first-assistant", "--id-field", "id"
    )
    expected = [
        (r["id"], next(m["value"] for m in r["conversations"] if m["from"] == "gpt"))
        for r in dump
        if any(m["from"] == "gpt" for m in r["conversations"])
    ]
    assert ids == [i for i, _ in expected] and cut_or_whole(stored, [t for _, t in expected])
    manifest = run_manifest(out)
    assert manifest["skipped"] == {"no_matching_turn": 4}
    # Provenance names the user's file, not the converted copy chatspace reads from.
    assert manifest["dataset"]["files"][0]["path"] == str(path)
    meta = orjson.loads(run_table(out).column("metadata")[0].as_py())
    assert meta["file"] == str(path)


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["jsonl", "parquet", "save_to_disk"])
def test_openai_logs_with_nested_fields(tmp_path, texts, st_model, fmt):
    logs = openai_logs(texts)
    if fmt == "jsonl":
        dataset = write_jsonl(tmp_path / "logs.jsonl", logs)
    elif fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        dataset = tmp_path / "logs.parquet"
        table = pa.Table.from_pylist(logs)
        assert pa.types.is_struct(table.schema.field("metadata").type)
        pq.write_table(table, dataset, row_group_size=7)
    else:
        import datasets

        dataset = tmp_path / "logs_saved"
        datasets.Dataset.from_list(logs).save_to_disk(str(dataset))
    out = tmp_path / "out"
    fields = ("--text-field", "response.choices.0.message.content", "--id-field", "metadata.user.uid")
    ids, stored = _embed_equal_to_encode(dataset, out, st_model, *fields)
    assert ids == [r["metadata"]["user"]["uid"] for r in logs]
    assert cut_or_whole(stored, [r["response"]["choices"][0]["message"]["content"] for r in logs])

    # A conversation nested in a struct, with an extraction mode.
    out2 = tmp_path / "out2"
    _, stored = _embed_equal_to_encode(
        dataset, out2, st_model, "--text-field", "request.messages", "--extract", "first-user"
    )
    assert cut_or_whole(stored, [r["request"]["messages"][1]["content"] for r in logs])


@pytest.mark.slow
def test_csv_is_flat_and_a_dotted_column_name_wins(tmp_path, texts, st_model):
    import csv

    path = tmp_path / "export.csv"
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["meta.uid", "body", "meta"])
        for i in range(12):
            w.writerow([f"u{i}", texts[400 + i], '{"uid": "not this"}'])
    out = tmp_path / "out"
    ids, _ = _embed_equal_to_encode(path, out, st_model, "--text-field", "body", "--id-field", "meta.uid")
    assert ids == [f"u{i}" for i in range(12)]

    proc = _embed(path, tmp_path / "out2", "--text-field", "meta.text")
    assert proc.returncode == 2
    assert "CSV columns are flat text" in proc.stderr and "'meta.text'" in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_a_path_into_no_column_is_refused_before_work(tmp_path, texts):
    dataset = write_jsonl(tmp_path / "logs.jsonl", openai_logs(texts, 3))
    proc = _embed(dataset, tmp_path / "out", "--text-field", "reponse.choices.0.message.content")
    assert proc.returncode == 2
    assert "is not a column or a dotted path into one" in proc.stderr
    assert "metadata, request, response" in proc.stderr


# --- download-dataset on the same shapes --------------------------------------------------------------


def _closing_command(stdout: str) -> tuple[str, str]:
    """(the suggested command, the coverage comment beside it) of download-dataset's last line."""
    lines = stdout.rstrip().splitlines()
    assert lines[-2] == "to embed:", stdout
    command, _, note = lines[-1].strip().partition("  # ")
    return command, note


@pytest.mark.parametrize(
    ("shape", "best", "not_text"),
    [
        ("mt-bench-questions", "--text-field turns --id-field question_id", {"category"}),
        # `reference` is longer but in 30 of the 80 rows: the questions, in every row, come first.
        ("mt-bench-question-file", "--text-field turns --id-field question_id", {"category"}),
        (
            "mt-bench-answers",
            "--text-field choices.0.turns --id-field answer_id",
            {"model_id", "answer_id"},
        ),
        (
            "openai-logs",
            "--text-field request.messages --extract first-user --id-field metadata.user.uid",
            {
                "metadata.category",
                "metadata.user.uid",
                "metadata.tags",
                "request.model",
                "response.choices.0.message.role",
            },
        ),
    ],
)
def test_download_dataset_ranks_what_a_person_would_embed(tmp_path, texts, shape, best, not_text):
    rows = {
        "mt-bench-questions": mt_bench_questions,
        "mt-bench-question-file": mt_bench_question_file,
        "mt-bench-answers": mt_bench_answers,
        "openai-logs": openai_logs,
    }[shape](texts)
    path = write_jsonl(tmp_path / f"{shape}.jsonl", rows)
    proc = run_cli("download-dataset", "--name", str(path), "--output-root", str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stderr
    command, coverage = _closing_command(proc.stdout)
    assert command == f"chatspace embed-hf --dataset {path} {best}"
    assert coverage == f"text in {len(rows)} of {len(rows)} sampled rows (100%)"
    info = orjson.loads(next((tmp_path / "out").glob("datasets/raw/local/*/*/info.json")).read_bytes())
    assert {f["field"] for f in info["not_text_fields"]} == not_text
    for f in info["text_fields"]:
        assert f["field"] not in not_text
    if shape == "mt-bench-question-file":
        reference = next(f for f in info["text_fields"] if f["field"] == "reference")
        assert reference["usable"] == 30 and reference["missing"] == 50
        assert "--text-field reference --id-field question_id  # text in 30 of 80 sampled rows (38%)" in (
            proc.stdout
        )
        assert reference["chars"]["mean"] > info["text_fields"][0]["chars"]["mean"]  # longer, yet second
    if shape.startswith("mt-bench-question"):
        turns = info["text_fields"][0]
        assert turns["kind"] == "list" and turns["strings_per_row"]["mean"] == 2
        assert "list of strings" in proc.stdout


def test_download_dataset_puts_conversations_and_long_text_before_lists(tmp_path, texts):
    rows = [
        {
            "uuid": f"c{i:04d}",
            "title": texts[i][:30],
            "tags": ["docs", "python"],
            "body": texts[i],
            "keywords": [texts[i + 50][:40], texts[i + 60][:40]],
            "conversation": [
                {"role": "user", "content": texts[i + 100]},
                {"role": "assistant", "content": texts[i + 200]},
            ],
            "lang": "en",
        }
        for i in range(30)
    ]
    path = write_jsonl(tmp_path / "mixed.jsonl", rows)
    proc = run_cli("download-dataset", "--name", str(path), "--output-root", str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stderr
    info = orjson.loads(next((tmp_path / "out").glob("datasets/raw/local/*/*/info.json")).read_bytes())
    order = [f["field"] for f in info["text_fields"]]
    assert order[:2] == ["conversation", "body"]
    assert order.index("keywords") < order.index("title")
    assert "lang" not in order and "uuid" not in order and "tags" not in order
    command, coverage = _closing_command(proc.stdout)
    assert command.endswith("--text-field conversation --extract first-assistant --id-field uuid")
    assert coverage == "text in 30 of 30 sampled rows (100%)"


# --- several extractions of one dataset, side by side ------------------------------------------------


@pytest.mark.slow
def test_several_extractions_of_one_dataset_live_side_by_side(tmp_path, texts, st_model):
    from chatspace.store.reader import list_runs, load_embeddings

    dump = sharegpt_dump(texts)
    path = write_jsonl(tmp_path / "sharegpt.jsonl", dump)
    out = tmp_path / "out"
    common = ("--text-field", "conversations", "--id-field", "id")
    for extra in (
        ("--extract", "first-assistant"),
        ("--extract", "first-user"),
        ("--run-name", "users-v2", "--extract", "first-user"),
    ):
        proc = _embed(path, out, *common, *extra)
        assert proc.returncode == 0, proc.stderr
    folders = sorted(p.name for p in out.glob("embeddings/*/*/*"))
    assert folders == [
        "train__conversations__first-assistant",
        "train__conversations__first-user",
        "train__users-v2",
    ]
    runs = list_runs(out)
    assert sorted((r["extract"], r["run_name"] or "") for r in runs) == [
        ("first-assistant", ""),
        ("first-user", ""),
        ("first-user", "users-v2"),
    ]
    listing = run_cli("runs", str(out)).stdout
    assert "conversations (first-assistant)" in listing and "[users-v2]" in listing

    users = load_embeddings(out, extract="first-user", run_name=None, run_id=None, dataset="sharegpt")
    assert users.num_rows == 2 * len(dump)  # the named run matches too: both first-user runs
    named = load_embeddings(out, run_name="users-v2")
    answers = load_embeddings(out, extract="first-assistant")
    firsts = {r["id"]: next(m["value"] for m in r["conversations"] if m["from"] == "human") for r in dump}
    got = dict(zip(named.column("id").to_pylist(), named.column("text").to_pylist(), strict=True))
    assert sorted(got) == sorted(firsts) and cut_or_whole([got[k] for k in firsts], list(firsts.values()))
    assert answers.num_rows == 16
    for table in (named, answers):
        stored = table.column("text").to_pylist()
        ours = np.asarray(table.column("embedding").to_pylist(), dtype=np.float32)
        assert cosine_rows(ours, st_model.encode(stored)).min() >= 0.99999

    proc = _embed(path, out, *common, "--run-name", "../escape")
    assert proc.returncode == 2 and "--run-name '../escape'" in proc.stderr


def test_embed_dataset_dry_run_reads_nested_paths(tmp_path, texts):
    answers = mt_bench_answers(texts)
    path = write_jsonl(tmp_path / "answers.jsonl", answers)
    proc = run_cli(
        "embed-dataset", "--dataset", str(path), "--text-field", "choices.0.turns", "--id-field", "answer_id",
        "--output-root", str(tmp_path / "out"), env={"OPENAI_API_KEY": "sk-test-not-used"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert f"selected: {len(answers)} rows; {len(answers)} to embed; skipped: none" in " ".join(
        proc.stdout.split()
    ), proc.stdout


@pytest.mark.slow
def test_a_chat_shape_with_no_usable_text_fails_naming_the_field_and_reasons(tmp_path, texts):
    """A ShareGPT dump of unanswered prompts: conversations, but no assistant turn to embed."""
    dump = [{"id": r["id"], "conversations": r["conversations"][:1]} for r in sharegpt_dump(texts, 6)]
    dump = [{**r, "conversations": [{"from": "human", "value": texts[500 + i]}]} for i, r in enumerate(dump)]
    path = write_jsonl(tmp_path / "unanswered.jsonl", dump)
    proc = _embed(path, tmp_path / "out", "--text-field", "conversations", "--extract-first-assistant")
    assert proc.returncode == 2, proc.stdout  # found on the first rows, before any worker starts
    last = proc.stderr.strip().splitlines()[-1]
    assert "has an assistant turn" in last and "no_matching_turn: 6" in last and "'conversations'" in last
    assert "Traceback" not in proc.stderr
    # MT-bench turns are a list of strings, not a conversation: refused before any work, naming the field.
    questions = write_jsonl(tmp_path / "question.jsonl", mt_bench_questions(texts, 6))
    proc = _embed(questions, tmp_path / "out2", "--text-field", "turns", "--extract", "first-user")
    assert proc.returncode == 2 and "'turns'" in proc.stderr and "not conversations" in proc.stderr
