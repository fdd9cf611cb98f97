"""Malformed corpus files, for every reader: one line naming the file and the record, never a traceback.

`indexer import` runs through click's CliRunner on each case of a table; the issue-14 cases are
checked word for word (what was kept, what --skip-bad keeps), the rest over every format: a
file of random bytes, a truncated gzip, a gzip that is no gzip, an empty folder.
"""
from __future__ import annotations

import gzip
import io
import json
import tarfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from indexer.cli import main
from indexer.readers import FORMATS
from tests.sample_index import REPO

RECORDS = [{"_id": f"d{i}", "title": f"Decision {i}", "text": f"The veteran claims PTSD number {i}."} for i in range(30)]


def run(tmp_path: Path, fmt: str, path: Path, *extra: str):
    """`indexer import` into a fresh index under tmp_path; (exit code, stdout+stderr)."""
    base = ["--config", str(REPO / "config.toml"), "--set", f'index.dir="{tmp_path / "index"}"']
    result = CliRunner().invoke(main, ["import", *base, "--format", fmt, "--collection", "c", "--batch-size", "10",
                                       *extra, str(path)])
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output and "Aborted!" not in result.output, result.output
    return result.exit_code, result.output


def jsonl(records) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in records).encode()


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def error_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, output
    return lines[0]


def test_truncated_gzip_says_where_and_what_was_kept(tmp_path):
    whole = gzip.compress(jsonl(RECORDS))
    file = write(tmp_path / "cut" / "corpus.jsonl.gz", whole[: int(len(whole) * 0.6)])
    code, out = run(tmp_path, "beir", file)
    line = error_line(out)
    assert code == 1 and str(file) in line and "ends early" in line and "documents of earlier batches are stored" in line
    code, out = run(tmp_path, "beir", file, "--skip-bad")
    assert code == 0 and "warning: skipped" in out and "1 skipped" in out


def test_not_gzip_and_not_tar(tmp_path):
    fake = write(tmp_path / "fake" / "corpus.jsonl.gz", jsonl(RECORDS[:3]))
    code, out = run(tmp_path, "beir", fake)
    assert code == 1 and "not a gzip file" in error_line(out) and str(fake) in error_line(out)
    code, out = run(tmp_path, "nm-appeals", write(tmp_path / "nm" / "nm_appeals_500.tar.gz", b"plain text, no tar"))
    assert code == 1 and "nm_appeals_500.tar.gz" in error_line(out)
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w:gz") as tar:
        for i in range(5):
            body = json.dumps({"name": f"{i}.xml", "content": "Opinion text. " * 200, "annotations": []}).encode()
            info = tarfile.TarInfo(f"nm/{i}.json")
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    cut = write(tmp_path / "nm2" / "nm_appeals_500.tar.gz", data.getvalue()[: len(data.getvalue()) // 2])
    code, out = run(tmp_path, "nm-appeals", cut)
    assert code == 1 and "nm_appeals_500.tar.gz" in error_line(out)


@pytest.mark.parametrize("bad, reason", [({"metadata": [1, 2]}, "`metadata` must be an object, got list"),
                                         ({"title": {"en": "x"}}, "`title` must be a string, got dict"),
                                         ({"mentions": "none"}, "`mentions` must be a list, got str")])
def test_beir_record_shapes(tmp_path, bad, reason):
    records = [*RECORDS[:3], {**RECORDS[3], **bad}, *RECORDS[4:6]]
    file = write(tmp_path / "shape" / "corpus.jsonl", jsonl(records))
    code, out = run(tmp_path, "beir", file)
    assert code == 1 and f"{file}:line 4: {reason}" in error_line(out)
    code, out = run(tmp_path, "beir", file, "--skip-bad")
    assert code == 0 and "5 added" in out and "1 skipped" in out


def test_bad_utf8_is_counted_or_refused(tmp_path):
    data = jsonl(RECORDS[:4]).replace(b"PTSD number 2", b"PTSD \xff\xfe number 2")
    file = write(tmp_path / "utf" / "corpus.jsonl", data)
    code, out = run(tmp_path, "beir", file)
    assert code == 0 and "2 bytes that are not UTF-8 were replaced" in out and "2 bytes not UTF-8 replaced" in out
    code, out = run(tmp_path, "beir", file, "--strict-utf8")
    assert code == 1 and "not UTF-8" in error_line(out) and str(file) in error_line(out)


def test_huge_document_is_refused_by_name(tmp_path):
    records = [RECORDS[0], {"_id": "huge", "title": "t", "text": "word " * 500}]
    file = write(tmp_path / "huge" / "corpus.jsonl", jsonl(records))
    code, out = run(tmp_path, "beir", file, "--set", "chunk.max_document_chars=1000")
    assert code == 1 and "record 2 (id 'huge')" in error_line(out) and "the limit is 1,000" in error_line(out)
    code, out = run(tmp_path, "beir", file, "--set", "chunk.max_document_chars=1000", "--skip-bad")
    assert code == 0 and "1 added" in out and "1 skipped" in out


GARBAGE = {
    "random bytes": lambda d: write(d / "garbage.json", bytes(range(256)) * 4),
    "truncated gzip": lambda d: write(d / "cut.jsonl.gz", gzip.compress(jsonl(RECORDS))[:60]),
    "gzip that is not": lambda d: write(d / "fake.txt.gz", b"no gzip here"),
    "empty folder": lambda d: (d / "empty").mkdir(parents=True) or d / "empty",
}


@pytest.mark.parametrize("fmt", sorted(FORMATS))
@pytest.mark.parametrize("case", sorted(GARBAGE))
def test_every_reader_fails_in_one_line(tmp_path, fmt, case):
    path = GARBAGE[case](tmp_path / "in")
    code, out = run(tmp_path, fmt, path)
    if code == 1:
        assert error_line(out).startswith("error: "), out
    else:
        assert code == 0, out
