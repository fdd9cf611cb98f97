"""`searchd fusion-study` on the sample set with a tiny random BERT: its baselines are what `searchd eval` measures."""
from __future__ import annotations

import json
import re

from click.testing import CliRunner

from tests.test_evaluate import _eval_args


def _row(table: str, variant: str) -> list[str]:
    line = next(l for l in table.splitlines() if l.startswith(f"| {variant} |"))
    return [c.strip() for c in line.strip("|").split("|")]


def test_study_rows_match_the_eval_and_cross_validate(sample_dir, tmp_path, tiny_bert, monkeypatch):
    import searchd.eval.evaluate
    from searchd.cli import main

    monkeypatch.setattr(searchd.eval.evaluate, "embedder_dirs",
                        lambda settings: {"base": tiny_bert, "tuned": None, "configured": tiny_bert})
    args = _eval_args(sample_dir, tmp_path, "bm25", "dense-base", "hybrid")
    assert CliRunner().invoke(main, args).exit_code == 0
    means = {n: s["mean"] for n, s in json.loads((tmp_path / "out" / "results.json").read_text())["systems"].items()}
    sets = [a for a in args if a.startswith(("eval.", "train_embedder."))]
    study_args = (["fusion-study", "--dataset", str(sample_dir), "--split", "test"]
                  + [a for s in sets + ["eval.permutations=200"] for a in ("--set", s)])
    result = CliRunner().invoke(main, study_args)
    assert result.exit_code == 0, result.output
    table = result.output
    # the study ranks from one retrieval what SearchService.search ranks: the same NDCG@10 and MAP@100
    for variant, system in (("dense max", "dense-base"), ("bm25 max", "bm25"),
                            ("hybrid configured (search.fusion, dense_weight:keyword_weight)", "hybrid")):
        cells = _row(table, variant)
        assert float(cells[1]) == round(means[system]["ndcg@10"], 4), variant
        assert float(cells[2]) == round(means[system]["map@100"], 4), variant
    for label in ("leave-one-out", "2-fold"):
        cells = _row(table, f"cross-validated choice ({label})")
        assert 0.0 <= float(cells[1]) <= 1.0
        picks = _row(table, f"cross-validated choice ({label}) chosen")[3]
        assert sum(int(n) for n in re.findall(r" x(\d+)", picks)) == 6  # one choice per query of the sample


def test_saved_choice_is_what_searchd_eval_then_runs(sample_dir, tmp_path, tiny_bert, monkeypatch):
    """`--save` writes the best servable variant to the eval index's fusion.json; the next `searchd eval`
    fuses with it (its hybrid scores the saved variant's NDCG@10) and says so in each answer."""
    import searchd.eval.evaluate
    from searchd.cli import main

    monkeypatch.setattr(searchd.eval.evaluate, "embedder_dirs",
                        lambda settings: {"base": tiny_bert, "tuned": None, "configured": tiny_bert})
    args = _eval_args(sample_dir, tmp_path, "hybrid")
    sets = [a for a in args if a.startswith(("eval.", "train_embedder."))] + ["eval.permutations=200"]
    study_args = (["fusion-study", "--dataset", str(sample_dir), "--split", "test", "--save"]
                  + [a for s in sets for a in ("--set", s)])
    result = CliRunner().invoke(main, study_args)
    assert result.exit_code == 0, result.output
    saved_file = next((tmp_path / "idx").glob("*/fusion.json"))
    (name, entry), = json.loads(saved_file.read_text())["collections"].items()
    assert f'Saved "{entry["spec"]}" for {name}' in result.output
    variant = re.search(r"what `--save` records: (.+?) \(spec", result.output).group(1)
    assert entry["variant"] == variant and float(_row(result.output, variant)[1]) == round(entry["ndcg@10"], 4)
    assert CliRunner().invoke(main, args).exit_code == 0
    hybrid = json.loads((tmp_path / "out" / "results.json").read_text())["systems"]["hybrid"]
    assert round(hybrid["mean"]["ndcg@10"], 4) == round(entry["ndcg@10"], 4)
    (ran, n), = hybrid["fusion"].items()
    assert ran.startswith(f"learned:{name}: ") and n == 6
    assert f"hybrid fused with {ran} (6 queries)" in (tmp_path / "out" / "report.md").read_text()
    missing = CliRunner().invoke(main, study_args[:-len(sets) * 2] + ["--save-to", str(tmp_path / "nowhere")])
    assert missing.exit_code != 0 and "no manifest.json" in missing.output
