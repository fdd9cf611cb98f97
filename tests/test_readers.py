"""Every corpus reader on tiny hand-written files in tests/data/formats, malformed input and Unicode included."""
from __future__ import annotations

import gzip
import tarfile
from pathlib import Path

import pytest

from indexer.documents import Document, validate_mentions
from indexer.errors import ReaderError
from indexer.readers import FORMATS, ReadOptions, read
from indexer.readers.util import iso_date

FORMATS_DIR = Path(__file__).parent / "data" / "formats"
LABELS = ReadOptions(label_map={"Chemical": "Drug"})


def records(fmt: str, path: Path, options: ReadOptions | None = None) -> tuple[list[Document], list[ReaderError]]:
    """Documents and errors of a read, each document's mentions checked against its text."""
    docs, errors = [], []
    for r in read(fmt, path, options):
        (docs if isinstance(r, Document) else errors).append(r)
    for d in docs:
        assert validate_mentions(d) == [], d.id
        for start, end, *_ in d.meta.get("roles", []):
            assert 0 <= start < end <= len(d.text)
    return docs, errors


def by_id(docs: list[Document]) -> dict[str, Document]:
    return {d.id: d for d in docs}


def test_every_format_is_registered_and_importable():
    from indexer.readers import reader_for

    for fmt in FORMATS:
        assert callable(reader_for(fmt))
    with pytest.raises(ReaderError, match="unknown format 'nope'; known formats: .*'brat'"):
        reader_for("nope")


def test_brat_discontinuous_attributes_and_normalisation():
    docs, errors = records("brat", FORMATS_DIR / "brat", LABELS)
    assert errors == []
    docs = by_id(docs)
    assert set(docs) == {"note1", "notes/plain"}
    assert docs["notes/plain"].mentions == []
    m = {x.source_label + ":" + x.text[:11]: x for x in docs["note1"].mentions}
    assert m["Disease:chest pain"].negation == "negated"
    # the discontinuous "Adenomatous polyps ... coli" is one mention over its whole extent
    disc = m["Disease:Adenomatous"]
    assert disc.text == "Adenomatous polyps of the coli" and disc.negation == "affirmed"
    assert docs["note1"].meta["discontinuous"][0][0] == "T2"
    drug = m["Chemical:aspirin"]
    assert (drug.label, drug.norm_id, drug.norm_name) == ("Drug", "MESH:D001241", "Aspirin")
    assert m["Disease:Ménière’s d"].negation == "hypothetical"
    assert docs["note1"].meta["relations"] == ["Treats Arg1:T3 Arg2:T2", "Treatment:T3 Theme:T2"]
    assert docs["note1"].meta["attributes"] == ["Negation E1"]


def test_brat_malformed_annotations_are_reported_and_reading_goes_on():
    docs, errors = records("brat", FORMATS_DIR / "brat_bad")
    assert [d.id for d in docs] == ["c_good"]
    assert [(Path(e.path).name, e.where) for e in errors] == [("a_offsets.ann", "line 2"), ("b_ref.ann", "line 2")]
    assert "T9" in errors[1].reason


def test_conll_documents_sentences_and_offsets():
    docs, errors = records("conll", FORMATS_DIR / "conll" / "two_docs.conll", LABELS)
    assert errors == []
    assert [d.id for d in docs] == ["two_docs-1", "two_docs-2"]
    first = docs[0]
    assert first.text == "Aspirin induced Reye 's syndrome .\nNo fever ."
    assert [(x.text, x.label) for x in first.mentions] == [("Aspirin", "Drug"), ("Reye 's syndrome", "Disease"),
                                                            ("fever", "Disease")]
    assert [(x.text, x.start) for x in docs[1].mentions] == [("spots", 13)]
    assert "naïve" in docs[1].text


def test_conll_without_docstart_is_one_document_per_sentence_and_bad_lines_are_reported():
    docs, errors = records("conll", FORMATS_DIR / "conll" / "sentences.tsv")
    assert [d.id for d in docs] == ["sentences-1", "sentences-3"]
    assert docs[0].mentions[0].text == "Sickle cell anemia"
    assert [(e.where, "TAG" in e.reason) for e in errors] == [("line 8", True)]


def test_text_folder_ids_titles_and_encodings():
    docs, errors = records("text", FORMATS_DIR / "text")
    docs = by_id(docs)
    assert set(docs) == {"2019/decision-1", "note"}
    assert docs["2019/decision-1"].title == "Smith v. Jones"
    assert docs["note"].text.startswith("Résumé of § 3.304 – cp1252") and "\r" not in docs["note"].text
    assert [Path(e.path).name for e in errors] == ["empty.txt"]


def test_text_reads_gzip(tmp_path):
    (tmp_path / "a.txt.gz").write_bytes(gzip.compress("Ünïcode in a gzip file.".encode()))
    docs, _ = records("text", tmp_path)
    assert [(d.id, d.text) for d in docs] == [("a", "Ünïcode in a gzip file.")]


def make_pdf(pages: list[str]) -> bytes:
    """A minimal PDF (Helvetica text, one line per page) written by hand, xref offsets computed."""
    objs = ["<< /Type /Catalog /Pages 2 0 R >>",
            "<< /Type /Pages /Kids [%s] /Count %d >>" % (" ".join(f"{4 + 2 * i} 0 R" for i in range(len(pages))),
                                                          len(pages)),
            "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    for i, text in enumerate(pages):
        stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET"
        objs.append(f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {5 + 2 * i} 0 R "
                    "/Resources << /Font << /F1 3 0 R >> >> >>")
        objs.append(f"<< /Length {len(stream)} >>\nstream\n{stream}\nendstream")
    out, offsets = b"%PDF-1.4\n", []
    for n, body in enumerate(objs, 1):
        offsets.append(len(out))
        out += f"{n} 0 obj\n{body}\nendobj\n".encode("latin-1")
    xref = len(out)
    out += f"xref\n0 {len(objs) + 1}\n0000000000 65535 f \n".encode()
    out += "".join(f"{o:010d} 00000 n \n" for o in offsets).encode()
    out += f"trailer\n<< /Size {len(objs) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return out


def test_pdf_pages_and_page_starts(tmp_path):
    (tmp_path / "ruling.pdf").write_bytes(make_pdf(["Page one: the complaint.", "Page two: sepsis was missed."]))
    (tmp_path / "broken.pdf").write_bytes(b"%PDF-1.4 this is not really a pdf")
    docs, errors = records("pdf", tmp_path)
    assert [Path(e.path).name for e in errors] == ["broken.pdf"]
    (doc,) = docs
    assert doc.id == "ruling" and doc.meta["pages"] == 2
    starts = doc.meta["page_starts"]
    assert starts[0] == 0 and doc.text[starts[1]:].startswith("Page two")
    assert doc.text[:starts[1]].strip() == "Page one: the complaint."


def test_json_field_mapping_with_dotted_paths_and_records_path():
    fields = {"records": "results", "id": "doc.key", "title": "doc.headline", "text": "body.full",
              "date": "decided", "court": "court.name", "doc_type": "kind"}
    docs, errors = records("json", FORMATS_DIR / "json" / "nested.json", ReadOptions(fields=fields))
    docs = by_id(docs)
    assert docs["r1"].meta == {"source": "nested", "court": "Nevada Supreme Court", "doc_type": "opinion",
                               "date": "2019-03-15"}
    assert docs["r2"].title == "Łódź clinic case" and docs["r2"].text == "Paragraph one about opioids.\n\nParagraph two."
    assert docs["r2"].meta["date"] == "2020"
    assert docs["r4"].meta["date_raw"] == "sometime in spring" and "date" not in docs["r4"].meta
    assert [(e.where, "no text" in e.reason) for e in errors] == [("record 3", True)]


def test_json_unknown_field_name_is_refused():
    with pytest.raises(ReaderError, match="unknown field mapping 'body'; valid names: id, title, text"):
        list(read("json", FORMATS_DIR / "json" / "nested.json", ReadOptions(fields={"body": "x"})))


def test_jsonl_malformed_lines_and_unicode():
    docs, errors = records("jsonl", FORMATS_DIR / "json" / "records.jsonl")
    assert [d.id for d in docs] == ["j1", "j3"]
    assert docs[1].title == "Ünïcödé ✓" and "😷" in docs[1].text
    assert docs[0].meta["date"] == "2018-07-01"
    assert [e.where for e in errors] == ["line 2", "line 5"]
    assert "invalid JSON" in errors[0].reason and "not an object" in errors[1].reason


def test_iso_dates():
    assert iso_date("04/20/00") == "2000-04-20"
    assert iso_date("12/22/2008") == "2008-12-22"
    assert iso_date("26 September 1973") == "1973-09-26"
    assert iso_date("2013-01-23T00:00:00") == "2013-01-23"
    assert iso_date("1999") == "1999" and iso_date("not a date") is None


def test_bva_plain_decisions():
    docs, errors = records("bva", FORMATS_DIR / "bva")
    assert errors == []
    docs = by_id(docs)
    assert set(docs) == {"0512345", "9412345"}, "sample_cases.txt is a list of names, not a decision"
    d = docs["0512345"]
    assert d.title == ("Entitlement to service connection for post-traumatic stress disorder (PTSD) "
                       "(BVA Citation Nr. 0512345, Docket No. 02-11 123, April 20, 2005)")
    assert d.meta["issue"] == "Entitlement to service connection for post-traumatic stress disorder (PTSD)."
    assert d.meta["date"] == "2005-04-20" and d.meta["docket"] == "02-11 123"
    assert d.meta["court"] == "Board of Veterans' Appeals" and d.meta["doc_type"] == "decision"
    assert "veteran’s PTSD" in d.text and "§ 3.304" in d.text and "\r" not in d.text
    assert docs["9412345"].meta["date"] == "1994"  # no Decision Date line: the citation's year


def test_bva_annotated_role_spans():
    docs, errors = records("bva-annotated", FORMATS_DIR / "bva_annotated")
    assert errors == []
    (d,) = docs
    assert d.id == "1340434" and d.meta["date"] == "2013-12-06"
    roles = {d.text[s:e]: role for s, e, role in d.meta["roles"]}
    assert roles["The examiner diagnosed PTSD\nin 2012."] == "EvidenceSentence"
    assert roles["The veteran has PTSD – résumé § 3.304."] == "FindingSentence"
    assert "Department of Veterans Affairs" in d.text and "Department of Veterans Affairs" not in roles
    assert "#" not in d.text


def test_vetclaims_both_schemas_and_a_broken_file():
    docs, errors = records("vetclaims", FORMATS_DIR / "vetclaims")
    assert [Path(e.path).name for e in errors] == ["broken.json"]
    docs = by_id(docs)
    old, new = docs["1302554"], docs["18137350"]
    assert old.meta["date"] == "2013-01-23" and old.meta["judge"] == "MICHAEL MARTIN"
    spans = [(old.text[s:e], role) for s, e, role, _ in old.meta["roles"]]
    # a sentence split over a line break in the text is still found; one absent from it is counted
    assert ("He was diagnosed with PTSD\nin 2010.", "FindingSentence") in spans
    assert old.meta["roles_unlocated"] == 1
    assert new.meta["date"] == "2018-09-20" and new.meta["issue"] == "Entitlement to service connection for PTSD is denied."
    assert new.title == "Entitlement to service connection for PTSD is denied (BVA Citation Nr. 18137350, September 20, 2018)"
    assert [(new.text[s:e], role) for s, e, role, _ in new.meta["roles"]][-1] == ("No stressor – none.", "FindingSentence")


def tar_folder(folder: Path, archive: Path, arc_root: str) -> Path:
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname=arc_root)
    return archive


def test_nm_appeals_tarball_in_place(tmp_path):
    archive = tar_folder(FORMATS_DIR / "nm", tmp_path / "nm_appeals_500.tar.gz", "data/manual_annotation")
    docs, errors = records("nm-appeals", tmp_path)
    assert len(errors) == 1 and errors[0].path.endswith("broken.json") and str(archive) in errors[0].path
    docs = by_id(docs)
    d = docs["106477"]
    assert d.meta["court"] == "New Mexico Court of Appeals" and d.meta["outcome"] == "reverse"
    assert "date" not in d.meta, "the tarball has no dates; none is invented"
    assert d.title == "New Mexico Court of Appeals: Worker appeals the order reducing compensation."
    assert "Johnson & Johnson" in d.text
    assert [d.text[s:e] for s, e, _ in d.meta["roles"]] == ["For the reasons discussed herein, we reverse."]
    assert docs["106478"].meta["court"] == "New Mexico Supreme Court"


def test_nv_bme_texts_matched_to_metadata(tmp_path):
    tar_folder(FORMATS_DIR / "nv" / "text", tmp_path / "nv_bme_filings_text.tar.gz", "text")
    (tmp_path / "filings_normalized.json.gz").write_bytes(
        gzip.compress((FORMATS_DIR / "nv" / "filings_normalized.json").read_bytes()))
    docs, errors = records("nv-bme", tmp_path)
    assert errors == []
    docs = by_id(docs)
    c = docs["2019/19-123-1_Complaint"]
    assert (c.meta["date"], c.meta["filing_type"], c.meta["respondent"], c.meta["case_number"]) == \
        ("2019-03-07", "Complaint", "Jane Roe, MD", "19-123-1")
    assert c.meta["doc_type"] == "complaint"
    assert docs["2019/05-9441-01_Settlement__Waiver_and_Consent"].meta["doc_type"] == "settlement"
    assert docs["2019/05-9441-01_Settlement__Waiver_and_Consent"].meta["case_number"] == "05-9441-1"
    # a name the scraper cut short still finds its record by year and case number
    s = docs["2020/License_No_9013_Order_of_Summary_Suspension"]
    assert s.meta["respondent"] == "Sean Su, MD" and "Müller" in s.text
    unmatched = docs["2020/20-777-1_Order"]
    assert unmatched.meta["matched"] is False and unmatched.meta["date"] == "2020"
    assert unmatched.meta["case_number"] == "20-777-1" and unmatched.meta["filing_type"] == "Order"
    assert unmatched.meta["doc_type"] == "order"


def test_aila_cases_and_statutes():
    docs, errors = records("aila", FORMATS_DIR / "aila")
    assert [Path(e.path).name for e in errors] == ["S2.txt"]
    assert [d.id for d in docs] == ["C2", "C10", "S1"]
    c2, c10, s1 = docs
    assert (c2.title, c2.meta["date"], c2.meta["court"], c2.meta["doc_type"]) == \
        ("Masud Khan v State Of Uttar Pradesh", "1973-09-26", "Supreme Court of India", "case")
    assert c10.meta["date"] == "2005-01-10" and c10.meta["court"] == "Supreme Court of India"
    assert s1.title == "Power of High Courts to issue certain writs" and s1.meta["doc_type"] == "statute"
    assert s1.text.startswith("Power of High Courts") and "Desc:" not in s1.text


@pytest.mark.parametrize("gz", [False, True])
def test_medquad_answers_only_with_unique_ids(tmp_path, gz):
    path = FORMATS_DIR / "medquad" / "medquad_qa.jsonl"
    if gz:
        path = tmp_path / "medquad_qa.jsonl.gz"
        path.write_bytes(gzip.compress((FORMATS_DIR / "medquad" / "medquad_qa.jsonl").read_bytes()))
    docs, errors = records("medquad", path)
    assert [d.id for d in docs] == ["1_CancerGov_QA/0000013_2-1", "1_CancerGov_QA/0000013_2-1#2"]
    assert docs[0].title == "What is (are) Polycythemia Vera ?"
    assert docs[0].text == "Key Points\n- Polycythemia vera is a disease."
    assert docs[0].meta["qtype"] == "information" and docs[0].meta["doc_type"] == "qa"
    assert [e.where for e in errors] == ["line 4"]


def test_pubtator_repeated_document_is_read_once(tmp_path):
    block = "123|t|Aspirin and fever.\n123|a|No more.\n123\t0\t7\tAspirin \tChemical\tD001241\n"
    (tmp_path / "c.txt").write_text(block + "\n" + block + "\n" + block.replace("No more.", "Changed."))
    docs, errors = records("pubtator", tmp_path / "c.txt", LABELS)
    assert len(docs) == 1 and docs[0].mentions[0].text == "Aspirin" and docs[0].mentions[0].label == "Drug"
    assert len(errors) == 1 and "different content" in errors[0].reason


def test_missing_path_names_it(tmp_path):
    with pytest.raises(ReaderError, match="does not exist"):
        read("text", tmp_path / "nowhere")
    with pytest.raises(ReaderError, match="no .txt"):
        list(read("text", tmp_path))


@pytest.mark.parametrize("fmt, path", [("brat", "brat"), ("text", "text"), ("bva", "bva"), ("aila", "aila"),
                                       ("vetclaims", "vetclaims"), ("jsonl", "json/records.jsonl"),
                                       ("medquad", "medquad")])
def test_estimate_is_the_number_of_records(fmt, path):
    from indexer.readers import estimate

    assert estimate(fmt, FORMATS_DIR / path) == len(list(read(fmt, FORMATS_DIR / path)))


def test_json_folder_goes_on_after_a_broken_file(tmp_path):
    (tmp_path / "a.json").write_text('{"id": "a", "text": "Negligence was alleged."')
    (tmp_path / "b.json").write_text('[{"id": "b", "text": "Sepsis was missed."}]')
    docs, errors = records("json", tmp_path)
    assert [d.id for d in docs] == ["b"] and docs[0].meta["source"] == tmp_path.name
    assert [Path(e.path).name for e in errors] == ["a.json"] and "invalid JSON" in errors[0].reason


TITLES_DIR = Path(__file__).parent / "data" / "titles"


def test_bva_titles_name_outcome_citation_docket_and_date():
    docs = by_id(records("bva", TITLES_DIR / "bva")[0])
    old, new = docs["1234567"], docs["1987654"]
    assert old.title == ("Entitlement to service connection for posttraumatic stress disorder (PTSD): denied, remanded "
                         "(BVA Citation Nr. 1234567, Docket No. 09-41 552, March 5, 2012)")
    assert (old.meta["citation"], old.meta["docket"], old.meta["date"]) == ("1234567", "09-41 552", "2012-03-05")
    assert old.meta["regional_office"] == "Regional Office in Waco, Texas"
    assert old.meta["outcome"] == "denied, remanded"
    # a newer decision opens with its ORDER, which says the outcome already: it is not repeated
    assert new.title == ("Entitlement to service connection for tinnitus is granted "
                         "(BVA Citation Nr. 1987654, Docket No. 16-02 318, November 30, 2019)")


def test_nv_bme_titles_name_type_respondent_case_and_date(tmp_path):
    tar_folder(TITLES_DIR / "nv" / "text", tmp_path / "nv_bme_filings_text.tar.gz", "text")
    (tmp_path / "filings_normalized.json.gz").write_bytes(
        gzip.compress((TITLES_DIR / "nv" / "filings_normalized.json").read_bytes()))
    docs = by_id(records("nv-bme", tmp_path)[0])
    listed = docs["2021/21-4455-1_Complaint"]
    assert listed.title == "Complaint - Alex Quinn, MD - Case No. 21-4455-1 (June 4, 2021)", "the scraper's _ is a ."
    # no metadata record: the respondent comes from the text, the date is the folder's year
    unlisted = docs["2021/21-9999-1_Order"]
    assert unlisted.title == "Order - Dana Lee Park, PA-C - Case No 21-9999-1 (2021)"
    assert unlisted.meta["respondent"] == "Dana Lee Park, PA-C"


def test_nm_appeals_titles_name_court_and_parties_or_first_sentence():
    docs = by_id(records("nm-appeals", TITLES_DIR / "nm")[0])
    named = docs["200001"]
    assert named.title == "New Mexico Court of Appeals: Plaintiff Rosa Montoya; Defendant Sandia Mesa Clinic"
    assert named.meta["parties"] == [["Plaintiff", "Rosa Montoya"], ["Defendant", "Sandia Mesa Clinic"]]
    # no named party: the first sentence, without paragraph mark or heading, kept whole across "(Repl."
    assert docs["200002"].title == ("New Mexico Supreme Court: Worker appeals the denial of benefits for a back injury "
                                    "(Repl. Pamp. 1991) sustained at the mill.")
    assert "parties" not in docs["200002"].meta
