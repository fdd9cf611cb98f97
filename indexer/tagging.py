"""Tag stored documents: the store reads the texts, the tagger predicts, the store writes the mentions."""
from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Sequence

from tqdm import tqdm

from indexer.kill_points import reached
from indexer.store import DocumentStore

if TYPE_CHECKING:  # the protocol only; indexer.ner imports torch
    from indexer.ner import Tagger


def tag_documents(store: DocumentStore, doc_ids: Sequence[int], tagger: Tagger, batch_size: int,
                  desc: str) -> dict[str, int]:
    """Tag documents by store id; each batch's model mentions (and the record of who tagged them) in one transaction.

    A batch is the unit of progress: stopping at any point keeps the batches already written,
    and `untagged_documents` then lists exactly the rest.
    """
    counts: Counter = Counter()
    with tqdm(total=len(doc_ids), desc=desc, unit="doc", dynamic_ncols=True) as bar:
        for batch in store.document_texts(doc_ids, max(1, batch_size)):
            legal = store.legal_documents([doc_id for doc_id, _ in batch])
            found = tagger.tag([text for _, text in batch], legal=[doc_id in legal or None for doc_id, _ in batch])
            counts.update(store.replace_model_mentions({doc_id: m for (doc_id, _), m in zip(batch, found)},
                                                       tagger.checksum))
            bar.update(len(batch))
            reached("build.tagged")
    return dict(counts)


def tag_collection(store: DocumentStore, collection: str, tagger: Tagger, batch_size: int = 64) -> dict[str, int]:
    """Re-tag every document of a collection, replacing its earlier model mentions (gold ones stay)."""
    return tag_documents(store, store.document_ids(collection), tagger, batch_size, f"tag {collection}")


def tag_untagged(store: DocumentStore, tagger: Tagger, batch_size: int) -> tuple[int, dict[str, int]]:
    """Tag the documents without gold mentions that this tagger has not tagged yet; (documents, mentions by label)."""
    ids = store.untagged_documents(tagger.checksum)
    return len(ids), (tag_documents(store, ids, tagger, batch_size, "tag documents") if ids else {})
