"""Tag a stored collection: the store reads the texts, the tagger predicts, the store writes the mentions."""
from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

from tqdm import tqdm

from indexer.store import DocumentStore

if TYPE_CHECKING:  # the protocol only; indexer.ner imports torch
    from indexer.ner import Tagger


def tag_collection(store: DocumentStore, collection: str, tagger: Tagger, batch_size: int = 64) -> dict[str, int]:
    """Tag every document of a collection; each batch's model mentions are replaced in one transaction."""
    ids = store.document_ids(collection)
    counts: Counter = Counter()
    with tqdm(total=len(ids), desc=f"tag {collection}", unit="doc", dynamic_ncols=True) as bar:
        for batch in store.document_texts(ids, batch_size):
            found = tagger.tag([text for _, text in batch])
            counts.update(store.replace_model_mentions({doc_id: m for (doc_id, _), m in zip(batch, found)}))
            bar.update(len(batch))
    return dict(counts)
