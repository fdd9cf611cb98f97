"""The entity tagger: tags and spans, windows, a tiny random BERT trained a few steps, save/load, CLI."""
from __future__ import annotations

import json
import random

import pytest
import torch
from click.testing import CliRunner

from indexer.documents import Document, Mention
from indexer.ner import (BertCrfTagger, CrfTaggerModel, ModelConfig, encode_pieces, encode_words, merge_windows,
                         sentence_words, spans_from_tags, subtoken_counts, tags_from_mentions, windows, word_pieces)
from indexer.readers import ReadOptions, read
from indexer.train.ner import batches, evaluate, examples, load_documents, tag_set, train_step

TAGS = ("O", "B-Disease", "I-Disease", "B-Drug", "I-Drug")


def tiny_tagger(tiny_bert, use_lstm=True, use_crf=True, **kwargs) -> BertCrfTagger:
    from transformers import AutoModel, AutoTokenizer

    torch.manual_seed(0)
    config = ModelConfig(TAGS, use_lstm=use_lstm, use_crf=use_crf, lstm_hidden=16, max_length=64)
    return BertCrfTagger(CrfTaggerModel(AutoModel.from_pretrained(tiny_bert), config),
                         AutoTokenizer.from_pretrained(tiny_bert), **kwargs)


def force(tagger: BertCrfTagger, tag: str) -> BertCrfTagger:
    """Make the model predict `tag` for every word (emission bias only, flat CRF transitions)."""
    with torch.no_grad():
        tagger.model.emission.weight.zero_()
        tagger.model.emission.bias.fill_(-10.0)
        tagger.model.emission.bias[TAGS.index(tag)] = 10.0
        for p in tagger.model.crf.parameters():
            p.zero_()
    return tagger


def sample_docs(sample_dir) -> list[Document]:
    return [d for d in read("beir", sample_dir, ReadOptions()) if isinstance(d, Document)]


# ---- pure functions -------------------------------------------------------------------------
def test_tags_from_mentions_and_back():
    text = "Aspirin-induced asthma in children with Crohn's disease."
    words = sentence_words(text)[0]
    mentions = [Mention(0, 7, "Aspirin", "Drug"), Mention(16, 22, "asthma", "Disease"),
                Mention(40, 55, "Crohn's disease", "Disease")]
    tags = tags_from_mentions(words, mentions)
    assert tags[:4] == ["B-Drug", "O", "O", "B-Disease"]
    assert tags[-5:] == ["B-Disease", "I-Disease", "I-Disease", "I-Disease", "O"]  # Crohn ' s disease .
    spans = [(words[i][0], words[j - 1][1], label) for i, j, label in spans_from_tags(tags)]
    assert spans == [(m.start, m.end, m.label) for m in mentions]


def test_overlapping_mentions_keep_the_first():
    words = sentence_words("lung cancer cells")[0]
    tags = tags_from_mentions(words, [Mention(0, 11, "lung cancer", "Disease"), Mention(5, 11, "cancer", "Disease")])
    assert tags == ["B-Disease", "I-Disease", "O"]


def test_stray_inside_tag_starts_an_entity():
    assert spans_from_tags(["O", "I-Drug", "I-Drug", "B-Drug", "I-Disease", "O"]) == [
        (1, 3, "Drug"), (3, 4, "Drug"), (4, 5, "Disease")]
    assert spans_from_tags([]) == []


def test_windows_cover_everything_within_budget():
    rng = random.Random(3)
    counts = [rng.randint(1, 5) for _ in range(157)]
    spans = windows(counts, 20, 15, 40)
    assert spans[0][0] == 0 and spans[-1][1] == len(counts)
    for (a, b), (c, d) in zip(spans, spans[1:]):
        assert a < c < b <= d, "windows advance and overlap"
    assert all(b - a <= 20 and sum(counts[a:b]) <= 40 for a, b in spans)
    assert windows([50, 1], 10, 5, 8) == [(0, 1), (1, 2)], "a word over budget still gets its own window"


def test_merge_takes_the_most_central_window():
    tags = merge_windows(6, [(0, 4), (2, 6)], [["A", "A", "A", "A"], ["B", "B", "B", "B"]])
    # word 2: centrality 1 in the first window and 0 in the second; word 3: 0 vs 1
    assert tags == ["A", "A", "A", "B", "B", "B"]


def test_label_mapping_keeps_source_label(tmp_path, settings):
    path = tmp_path / "mini.PubTator.txt"
    path.write_text("1|t|Cocaine and seizures\n1|a|Lithium caused tremor.\n"
                    "1\t0\t7\tCocaine\tChemical\tD003042\n1\t12\t20\tseizures\tSpecificDisease\tD012640\n"
                    "1\t21\t28\tLithium\tChemical\tD008094\n1\t36\t42\ttremor\tDiseaseClass\tD014202\n\n",
                    encoding="utf-8")
    docs = load_documents([path], "pubtator", settings.train_ner.label_map)
    assert [(m.label, m.source_label) for m in docs[0].mentions] == [
        ("Drug", "Chemical"), ("Disease", "SpecificDisease"), ("Drug", "Chemical"), ("Disease", "DiseaseClass")]
    assert tag_set(docs) == TAGS


# ---- the model ------------------------------------------------------------------------------
@pytest.mark.parametrize("use_lstm,use_crf", [(True, True), (False, True), (True, False)])
def test_a_few_steps_make_the_loss_fall(tiny_bert, sample_dir, use_lstm, use_crf):
    from transformers import get_linear_schedule_with_warmup

    tagger = tiny_tagger(tiny_bert, use_lstm=use_lstm, use_crf=use_crf)
    data = examples(sample_docs(sample_dir), tagger.tokenizer, 62)
    batch = batches(data, 8, random.Random(0))[0]
    optimizer = torch.optim.AdamW(tagger.model.parameters(), lr=3e-3)
    scheduler = get_linear_schedule_with_warmup(optimizer, 0, 100)
    tagger.model.train()
    losses = [train_step(tagger, batch, optimizer, scheduler, 1.0) for _ in range(12)]
    assert losses[-1] < 0.5 * losses[0], losses


def test_save_and_load_give_identical_predictions(tiny_bert, tmp_path, sample_dir):
    tagger = tiny_tagger(tiny_bert)
    with torch.no_grad():  # a non-trivial head, so that predictions are not all O
        tagger.model.emission.bias.copy_(torch.tensor([0.0, 0.4, 0.3, 0.4, 0.3]))
    texts = [d.text for d in sample_docs(sample_dir)]
    before = tagger.tag(texts)
    tagger.save(tmp_path / "m")
    loaded = BertCrfTagger.load(tmp_path / "m")
    assert loaded.model.config == tagger.model.config
    assert loaded.tag(texts) == before
    assert sum(map(len, before)) > 0
    batch = encode_words(tagger.tokenizer, [["no", "fever"], ["aspirin"]], 64)
    tagger.model.eval()
    loaded.model.eval()
    with torch.no_grad():
        assert torch.equal(tagger.model.emissions(batch), loaded.model.emissions(batch))


@pytest.mark.parametrize("max_length", [64, 8])
def test_pieces_give_the_tensors_of_encode_words(tiny_bert, max_length):
    """tag() tokenises each sentence once (word_pieces) and builds batches from the ids (encode_pieces): the
    same ids, masks and first sub-tokens as tokenising the words again, truncation included."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    text = ("Ménière’s disease — naïve café-au-lait spots 😀 in Zürich.\u00a0Über-Test ﬁne. Cisplatin-induced "
            "nephrotoxicity \u200b was not seen. Antidisestablishmentarianism " + "x" * 80 + " ends.")
    sentences = [[text[s:e] for s, e in words] for words in sentence_words(text)]
    pieces = word_pieces(tokenizer, sentences)
    assert [[max(1, len(ids)) for ids in p] for p in pieces] == [subtoken_counts(tokenizer, w) for w in sentences]
    expected, got = encode_words(tokenizer, sentences, max_length), encode_pieces(tokenizer, pieces, max_length)
    assert expected.keys() == got.keys()
    for key in expected:
        assert torch.equal(expected[key].to(got[key].dtype), got[key]), key


def test_offsets_on_unicode_text(tiny_bert):
    tagger = force(tiny_tagger(tiny_bert), "B-Disease")
    text = "Ménière’s disease — naïve café-au-lait spots 😀 in Zürich.\u00a0Über-Test ﬁne."
    (found,) = tagger.tag([text])
    words = [w for sent in sentence_words(text) for w in sent]
    assert [(m.start, m.end) for m in found] == words
    assert all(text[m.start:m.end] == m.text and m.label == "Disease" for m in found)


def test_windows_on_long_sentences_are_merged(tiny_bert):
    text = "one two three four five six seven eight nine ten eleven twelve thirteen"
    inside = force(tiny_tagger(tiny_bert, window_words=4, window_stride=2), "I-Drug")
    (found,) = inside.tag([text])
    assert [(m.start, m.end, m.text) for m in found] == [(0, len(text), text)], "one entity across windows"
    begin = force(tiny_tagger(tiny_bert, window_words=4, window_stride=2), "B-Drug")
    (found,) = begin.tag([text])
    assert [m.text for m in found] == text.split(), "each word once, none doubled by the overlap"


def test_window_respects_the_subtoken_budget(tiny_bert):
    tagger = force(tiny_tagger(tiny_bert), "B-Disease")  # max_length 64
    text = " ".join(["pseudohypoparathyroidism"] * 60)  # several sub-tokens per word
    (found,) = tagger.tag([text])
    assert len(found) == 60, "no word is lost to truncation"


def test_empty_and_whitespace_input(tiny_bert):
    tagger = force(tiny_tagger(tiny_bert), "B-Disease")
    assert tagger.tag([]) == []
    assert tagger.tag(["", "   \n\t  ", "Fever."]) == [[], [], tagger.tag(["Fever."])[0]]


def test_mentions_carry_negation_and_norm(tiny_bert):
    tagger = force(tiny_tagger(tiny_bert), "B-Disease")
    text = "Patient denies fever but has cough."
    (found,) = tagger.tag([text])
    state = {m.text: m.negation for m in found}
    assert state["fever"] == "negated" and state["cough"] == "affirmed"
    assert {m.text: m.norm_id for m in found}["fever"] == "text:fever", "unknown forms fall back to the surface"


# ---- evaluation and CLI ---------------------------------------------------------------------
class GoldTagger:
    """A fake tagger that returns the gold mentions of known texts, minus one label."""

    labels = ("Disease", "Drug")
    checksum = "gold-fake"

    def __init__(self, docs, drop=None):
        self.by_text = {d.text: [m for m in d.mentions if m.label != drop] for d in docs}

    def tag(self, texts, legal=None):
        return [self.by_text[t] for t in texts]


def test_evaluate_scores(sample_dir):
    docs = sample_docs(sample_dir)
    perfect = evaluate(GoldTagger(docs), docs)
    assert perfect["micro"]["f1"] == 1.0 and perfect["documents"] == len(docs)
    n_drug = sum(m.label == "Drug" for d in docs for m in d.mentions)
    n_all = sum(len(d.mentions) for d in docs)
    partial = evaluate(GoldTagger(docs, drop="Drug"), docs)
    assert partial["labels"]["Drug"]["recall"] == 0.0 and partial["labels"]["Drug"]["support"] == n_drug
    assert partial["micro"]["precision"] == 1.0
    assert partial["micro"]["recall"] == pytest.approx((n_all - n_drug) / n_all)
    assert partial["tokens"] > 0 and partial["tokens_per_s"] > 0


def test_cli_eval_ner_and_tag(tiny_bert, tmp_path, sample_dir):
    from indexer.cli import main

    model_dir = force(tiny_tagger(tiny_bert), "B-Disease").save(tmp_path / "ner")
    # the legal stop list would drop the forced tagger's punctuation "mentions" that the counts below expect
    sets = ["--set", f'index.dir="{tmp_path / "index"}"', "--set", f'ner.model="{model_dir}"',
            "--set", "ner.legal_filter=false"]
    runner = CliRunner()
    pub = tmp_path / "mini.txt"
    pub.write_text("7|t|Fever.\n7|a|No rash.\n7\t0\t5\tFever\tDisease\tD005334\n\n", encoding="utf-8")
    out = tmp_path / "eval.json"
    result = runner.invoke(main, ["eval-ner", *sets, "--output", str(out), str(pub)])
    assert result.exit_code == 0, result.output
    metrics = json.loads(out.read_text())
    # every word is predicted as its own Disease: Fever is right; . No rash . are 4 false positives
    assert metrics["labels"]["Disease"] == {"precision": 0.2, "recall": 1.0, "f1": pytest.approx(1 / 3),
                                            "support": 1}
    assert "micro avg" in result.output
    assert runner.invoke(main, ["import", *sets, "--format", "beir", "--collection", "s", str(sample_dir)]).exit_code == 0
    from indexer.pipeline import open_store
    from indexer.settings import load_settings

    store = open_store(load_settings(None, sets[1::2]), create=False)  # the store the commands wrote (postgres: the test's)
    gold = store.raw("select count(*) from mentions where origin='gold'")
    for _ in range(2):  # a second run replaces, never duplicates
        result = runner.invoke(main, ["tag", *sets, "--collection", "s"])
        assert result.exit_code == 0, result.output
        words = sum(len(w) for d in sample_docs(sample_dir) for w in sentence_words(d.text))
        assert store.raw("select count(*) from mentions where origin='model'") == [(words,)]
    assert store.raw("select count(*) from mentions where origin='gold'") == gold
    assert f"Disease {words}" in result.output


def test_cli_errors_name_the_problem(tmp_path):
    from indexer.cli import main

    result = CliRunner().invoke(main, ["eval-ner", "--set", f'ner.model="{tmp_path}"', str(tmp_path)])
    assert result.exit_code == 1 and "not a tagger directory" in result.output


@pytest.mark.slow
def test_packaged_minilm_builds_and_tags(settings, shared_data):
    from indexer.train.ner import build_tagger, data_paths

    docs = load_documents(data_paths(settings, settings.train_ner.dev), "pubtator", settings.train_ner.label_map,
                          limit=3)
    tagger = build_tagger(settings, docs)
    assert tagger.model.encoder.config.hidden_size == 384
    found = tagger.tag([d.text for d in docs])
    assert all(d.text[m.start:m.end] == m.text for d, ms in zip(docs, found) for m in ms)


def test_train_ner_is_deterministic_and_saves_a_loadable_model(tiny_bert, sample_dir, settings, tmp_path):
    import dataclasses

    from indexer.train.ner import train_ner

    runs = []
    for name in ("a", "b"):
        cfg = dataclasses.replace(settings.train_ner, base_model=str(tiny_bert), format="beir", train=[str(sample_dir)],
                                  dev=[str(sample_dir)], output_dir=tmp_path / name, lstm_hidden=16, max_length=64,
                                  batch_size=4, epochs=2, max_steps=5, head_lr=1e-2)
        path, metrics = train_ner(settings.replace(train_ner=cfg, ner=dataclasses.replace(settings.ner, device="cpu")),
                                  progress=False)
        runs.append((torch.load(path / "heads.pt"), metrics, json.loads((path / "tagger.json").read_text())))
    (heads_a, metrics_a, meta_a), (heads_b, metrics_b, meta_b) = runs
    assert heads_a.keys() == heads_b.keys() and all(torch.equal(heads_a[k], heads_b[k]) for k in heads_a)
    assert metrics_a["labels"] == metrics_b["labels"] and metrics_a["micro"] == metrics_b["micro"]
    assert meta_a["training"]["total_seconds"] > 0 and meta_a["training"]["history"][-1]["step"] == 5
    assert BertCrfTagger.load(tmp_path / "a").labels == ("Disease", "Drug")


def test_unpacked_bilstm_and_numpy_viterbi_equal_the_packed_lstm_and_pytorch_crf():
    """The inference head (indexer/tagger_head.py) gives what the packed BiLSTM and pytorch-crf give."""
    from torchcrf import CRF

    from indexer.tagger_head import bilstm, mirror_index, viterbi

    torch.manual_seed(0)
    lstm = torch.nn.LSTM(12, 8, batch_first=True, bidirectional=True).eval()
    lengths = torch.tensor([9, 3, 7, 1, 9])
    mask = torch.arange(9).unsqueeze(0) < lengths.unsqueeze(1)
    words = torch.randn(5, 9, 12)
    with torch.no_grad():
        packed = torch.nn.utils.rnn.pack_padded_sequence(words, lengths, batch_first=True, enforce_sorted=False)
        want = torch.nn.utils.rnn.pad_packed_sequence(lstm(packed)[0], batch_first=True, total_length=9)[0]
        got = bilstm(lstm, words, mirror_index(mask))
    assert torch.allclose(got[mask], want[mask], atol=1e-5)
    assert mirror_index(mask)[1].tolist() == [2, 1, 0, 3, 4, 5, 6, 7, 8]
    crf = CRF(5, batch_first=True)
    for seed in range(5):
        torch.manual_seed(seed)
        for p in crf.parameters():
            torch.nn.init.uniform_(p, -2, 2)
        scores = torch.randn(5, 9, 5) * 3
        assert viterbi(scores.numpy(), mask.numpy(), crf) == crf.decode(scores, mask=mask)



def test_tagging_texts_together_equals_tagging_each_alone(tiny_bert):
    tagger = tiny_tagger(tiny_bert)
    texts = ["Lithium caused renal failure in two patients. No seizures were seen.", "",
             "Aspirin and ibuprofen; hypertension was treated. " * 3]
    together = tagger.tag(texts)
    assert together == [tagger.tag([t])[0] for t in texts]
    assert sum(map(len, together)) > 0, "the random tagger found nothing: the comparison would be empty"


def test_a_tagger_can_keep_only_the_lowest_encoder_layers(tiny_bert, sample_dir, settings, tmp_path):
    import dataclasses

    from indexer.errors import ConfigError
    from indexer.train.ner import train_ner

    base = dataclasses.replace(settings.train_ner, base_model=str(tiny_bert), format="beir", train=[str(sample_dir)],
                               dev=[str(sample_dir)], output_dir=tmp_path / "one", lstm_hidden=16, max_length=64,
                               batch_size=4, epochs=1, max_steps=2)
    cpu = dataclasses.replace(settings.ner, device="cpu")
    path, _ = train_ner(settings.replace(train_ner=dataclasses.replace(base, encoder_layers=1), ner=cpu), progress=False)
    loaded = BertCrfTagger.load(path)
    assert loaded.model.encoder.config.num_hidden_layers == 1 and len(loaded.model.encoder.encoder.layer) == 1
    with pytest.raises(ConfigError, match="has 2 layers"):
        train_ner(settings.replace(train_ner=dataclasses.replace(base, encoder_layers=3), ner=cpu), progress=False)
