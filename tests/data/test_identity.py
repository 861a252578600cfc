"""What a dataset was: fingerprints of real files, what counts as a change, the Hub revision."""

from __future__ import annotations

import os

from chatspace.data.identity import fingerprint, hub_identity, identity_changes, local_identity

SHA = "0123456789abcdef0123456789abcdef01234567"


def test_fingerprint_sees_head_tail_and_size_changes(tmp_path):
    path = tmp_path / "big.jsonl"
    data = bytearray(os.urandom(3 << 20))
    path.write_bytes(data)
    base = fingerprint(path)
    for pos in (10, len(data) - 10):
        changed = bytearray(data)
        changed[pos] ^= 1
        path.write_bytes(changed)
        assert fingerprint(path) != base
    path.write_bytes(data + b"\n")
    assert fingerprint(path) != base
    path.write_bytes(data)
    assert fingerprint(path) == base


def test_changes_are_named(tmp_path):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_text('{"text": "x"}\n')
    b.write_text('{"text": "y"}\n')
    before = local_identity([a, b], [1, 1])
    assert identity_changes(before, local_identity([a, b], [1, 1])) == []
    a.write_text('{"text": "z"}\n')  # same size, other bytes
    after = local_identity([a], [1])
    changes = identity_changes(before, after)
    assert "a.jsonl: content changed" in changes and "b.jsonl is gone" in changes and "2 rows -> 1" in changes


def test_hub_revision_comes_from_the_resolved_urls():
    urls = [f"hf://datasets/org/name@{SHA}/data/train-0000{i}.parquet" for i in range(2)]
    ident = hub_identity(urls, [5, 7])
    assert ident["revision"] == SHA and ident["rows"] == 12
    moved = hub_identity([u.replace(SHA, "f" * 40) for u in urls], [5, 7])
    assert any(c.startswith("revision ") for c in identity_changes(ident, moved))
    assert hub_identity(["hf://datasets/org/name/data/x.parquet"], [1])["revision"] is None
