"""Training of the domain models: the embedder and the entity tagger."""
