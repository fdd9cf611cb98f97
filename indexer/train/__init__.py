"""Training of the domain models: the embedder and the entity tagger; each returns its saved model dir and dev metrics."""
