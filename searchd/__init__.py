"""medlex search daemon: queries, retrieval, facets, snippets, the JSON API, evaluation."""
