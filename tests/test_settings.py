import dataclasses
import difflib
from pathlib import Path

import pytest
from click.testing import CliRunner

from indexer.cli import main
from indexer.errors import ConfigError
from indexer.settings import SECTIONS, Settings, load_settings, parse_override, render_config

REPO = Path(__file__).resolve().parent.parent


def test_repository_config_matches_defaults():
    """config.toml documents every key with its default value."""
    loaded = load_settings(REPO / "config.toml", env={})
    for name in SECTIONS:
        assert type(getattr(loaded, name)) is type(getattr(Settings(), name))
    assert loaded.data.dir == (REPO / "../shared/data").resolve()
    assert loaded.index.dir == REPO / "var" / "index"
    text = (REPO / "config.toml").read_text()
    for name in SECTIONS:
        assert f"[{name}]" in text


def test_config_toml_is_generated_from_the_dataclasses():
    """Every key, value, comment and section intro of config.toml comes from indexer/settings.py."""
    text, generated = (REPO / "config.toml").read_text(encoding="utf-8"), render_config()
    drift = "".join(difflib.unified_diff(text.splitlines(True), generated.splitlines(True),
                                         "config.toml", "generated", n=0))
    assert text == generated, f"config.toml drifted from indexer/settings.py; run `indexer config --write config.toml`\n{drift}"


def test_generated_config_loads_as_the_defaults(tmp_path):
    (tmp_path / "generated.toml").write_text(render_config(), encoding="utf-8")
    (tmp_path / "empty.toml").write_text("", encoding="utf-8")
    assert load_settings(tmp_path / "generated.toml", env={}) == load_settings(tmp_path / "empty.toml", env={})
    for name in SECTIONS:
        cls = type(getattr(Settings(), name))
        assert not cls.__doc__.startswith(cls.__name__ + "("), f"[{name}] needs a docstring: its config.toml intro"
        assert all(f.metadata["doc"] for f in dataclasses.fields(cls))


def test_config_command_prints_and_writes(tmp_path):
    printed = CliRunner().invoke(main, ["config"])
    assert printed.exit_code == 0 and printed.output == render_config()
    written = CliRunner().invoke(main, ["config", "--write", str(tmp_path / "c.toml")])
    assert written.exit_code == 0 and (tmp_path / "c.toml").read_text(encoding="utf-8") == render_config()


def test_unknown_key_names_valid_ones(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[search]\nrrf = 3\n")
    with pytest.raises(ConfigError, match=r"unknown setting search\.rrf.*'rrf_k'"):
        load_settings(cfg, env={})


def test_fold_settings_of_eval_moved_to_the_embedders(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[eval]\nfold_seed = 7\n")
    with pytest.raises(ConfigError, match=r"unknown setting eval\.fold_seed \(use train_embedder\.seed\)"):
        load_settings(cfg, env={})


def test_unknown_section(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[serch]\n")
    with pytest.raises(ConfigError, match=r"unknown section \[serch\].*'search'"):
        load_settings(cfg, env={})


def test_wrong_type_is_named(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[search]\ndefault_k = "ten"\n')
    with pytest.raises(ConfigError, match=r"search\.default_k must be an integer"):
        load_settings(cfg, env={})


def test_overrides_and_paths(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[index]\ndir = "idx"\n')
    s = load_settings(cfg, ["search.rrf_k=10", "embedder.query_prefix=query: ", "index.type=hnsw"], env={})
    assert s.search.rrf_k == 10
    assert s.embedder.query_prefix == "query: "
    assert s.index.type == "hnsw"
    assert s.index.dir == tmp_path / "idx"
    with pytest.raises(ConfigError, match="search.rrf_k must be an integer"):
        load_settings(cfg, ["search.rrf_k=1.5"], env={})
    with pytest.raises(ConfigError, match="section.key=value"):
        parse_override("rrf_k=3")


def test_data_dir_from_environment(tmp_path):
    s = load_settings(REPO / "config.toml", env={"MEDLEX_DATA_DIR": str(tmp_path)})
    assert s.data.dir == tmp_path


def test_invalid_toml(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[search\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(cfg, env={})
