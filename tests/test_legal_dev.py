"""Where the legal dev set's passages are read from: files, tar members, JSON fields."""
from __future__ import annotations

import json

import pytest

from indexer.errors import ReaderError
from indexer.legal_dev import source_text


def test_a_plain_json_files_field_is_read_with_newlines_normalised(tmp_path):
    folder = tmp_path / "vetclaims" / "BVA Decisions JSON Format"
    folder.mkdir(parents=True)
    (folder / "BVA1.json").write_text(json.dumps({"docID": "1", "text": "The Veteran has PTSD.\r\nRemanded."}))
    (tmp_path / "plain.txt").write_text("A plain decision.")
    assert source_text(tmp_path, "vetclaims/BVA Decisions JSON Format/BVA1.json#text", {}) == \
        "The Veteran has PTSD.\nRemanded."
    assert source_text(tmp_path, "plain.txt", {}) == "A plain decision."
    with pytest.raises(ReaderError, match="'content'"):
        source_text(tmp_path, "vetclaims/BVA Decisions JSON Format/BVA1.json#content", {})
