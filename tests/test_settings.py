from pathlib import Path

import pytest

from indexer.errors import ConfigError
from indexer.settings import SECTIONS, Settings, load_settings, parse_override

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


def test_unknown_key_names_valid_ones(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[search]\nrrf = 3\n")
    with pytest.raises(ConfigError, match=r"unknown setting search\.rrf.*'rrf_k'"):
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
