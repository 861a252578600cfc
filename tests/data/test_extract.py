"""Every extraction shape and every reason a row is skipped."""

from __future__ import annotations

import pytest

from chatspace.data.extract import Skip, extract_row, extract_text, row_id

OPENAI_CHAT = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "What is a shard?"},
    {"role": "assistant", "content": "A file holding part of the output."},
    {"role": "user", "content": "Thanks"},
    {"role": "assistant", "content": "You're welcome."},
]
PARTS_CHAT = [
    {
        "role": "user",
        "content": [{"type": "text", "text": "Describe"}, {"type": "image_url", "image_url": {}}],
    },
    {
        "role": "assistant",
        "content": [{"type": "text", "text": "Part one."}, {"type": "text", "text": "Part two."}],
    },
]
SHAREGPT_CHAT = [{"from": "human", "value": "hi there"}, {"from": "gpt", "value": "hello!"}]


def test_plain_text_is_returned_exactly():
    assert extract_text("  keep my spaces ", "text") == "  keep my spaces "


@pytest.mark.parametrize(
    "value,reason",
    [
        (None, "null"),
        ("", "empty"),
        ("   \n\t", "empty"),
        (5, "not_text"),
        (1.5, "not_text"),
        ([1], "not_text"),
        ({"a": 1}, "not_text"),
        (True, "not_text"),
    ],
)
def test_plain_text_bad_values(value, reason):
    with pytest.raises(Skip) as e:
        extract_text(value, "text")
    assert e.value.reason == reason


def test_missing_field_in_row():
    with pytest.raises(Skip) as e:
        extract_row({"other": "x"}, "text", "text")
    assert e.value.reason == "missing_field"


def test_first_assistant_and_user_openai_style():
    assert extract_text(OPENAI_CHAT, "first-assistant") == "A file holding part of the output."
    assert extract_text(OPENAI_CHAT, "first-user") == "What is a shard?"


def test_content_parts_join_text_parts_only():
    assert extract_text(PARTS_CHAT, "first-assistant") == "Part one.\nPart two."
    assert extract_text(PARTS_CHAT, "first-user") == "Describe"


def test_sharegpt_style():
    assert extract_text(SHAREGPT_CHAT, "first-assistant") == "hello!"
    assert extract_text(SHAREGPT_CHAT, "first-user") == "hi there"


def test_all_turns_labels_roles():
    out = extract_text(SHAREGPT_CHAT, "all-turns")
    assert out == "User: hi there\n\nAssistant: hello!"
    assert extract_text(OPENAI_CHAT, "all-turns").startswith("System: Be brief.\n\nUser: What is a shard?")


def test_conversation_stored_as_json_string():
    import json

    assert extract_text(json.dumps(SHAREGPT_CHAT), "first-assistant") == "hello!"


def test_messages_wrapper_dict():
    assert extract_text({"messages": OPENAI_CHAT}, "first-user") == "What is a shard?"


@pytest.mark.parametrize(
    "value,mode,reason",
    [
        (None, "first-assistant", "null"),
        ([], "first-assistant", "empty"),
        ("just text", "first-assistant", "not_conversation"),
        (5, "first-user", "not_conversation"),
        (["a", "b"], "first-user", "not_conversation"),
        ([{"role": "user", "content": "only a question"}], "first-assistant", "no_matching_turn"),
        ([{"role": "assistant", "content": "   "}], "first-assistant", "no_matching_turn"),
        ([{"role": "assistant", "content": None}], "all-turns", "empty"),
    ],
)
def test_conversation_bad_values(value, mode, reason):
    with pytest.raises(Skip) as e:
        extract_text(value, mode)
    assert e.value.reason == reason


def test_row_ids():
    assert row_id({}, None, "train", 17) == "train-17"
    assert row_id({"id": 12}, "id", "train", 0) == "12"
    assert row_id({"id": 12.0}, "id", "train", 0) == "12"
    assert row_id({"id": "abc"}, "id", "train", 0) == "abc"
    for bad in ({"id": None}, {}, {"id": ""}, {"id": [1]}):
        with pytest.raises(Skip) as e:
            row_id(bad, "id", "train", 0)
        assert e.value.reason == "missing_id"


def test_extract_rows_fast_path_gives_what_the_per_row_functions_give():
    """Plain string fields take a shortcut in extract_rows; it must agree with extract_row/row_id."""
    from chatspace.data.extract import Skip, extract_row, extract_rows, row_id

    rows = [
        {"text": "hello", "id": 7},
        {"text": "  ", "id": 1},
        {"text": "x", "id": True},
        {"text": "x", "id": 3.0},
        {"text": "x", "id": " "},
        {"text": "x", "id": "a"},
        {"text": None, "id": 2},
        {"text": ["a", "b"], "id": 2},
        {"id": 4},
        {"text": "y"},
        None,
        {"text.a": "dotted", "id": 9},
        {"text": {"a": "nested"}, "id": 10},
        {"text": 5, "id": 11},
    ]
    for id_field in ("id", None):
        for text_field in ("text", "text.a"):
            skipped: dict[str, int] = {}
            got = list(
                extract_rows(
                    range(len(rows)),
                    rows,
                    text_field=text_field,
                    mode="text",
                    id_field=id_field,
                    split="train",
                    skipped=skipped,
                )
            )
            want, want_skipped = [], {}
            for i, row in enumerate(rows):
                try:
                    if row is None:
                        raise Skip("invalid_row")
                    text = extract_row(row, text_field, "text")
                    want.append((i, row_id(row, id_field, "train", i), text))
                except Skip as s:
                    want_skipped[s.reason] = want_skipped.get(s.reason, 0) + 1
            assert got == want and skipped == want_skipped, (id_field, text_field)
