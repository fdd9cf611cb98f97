"""medlex indexer: corpus import, chunking, models and index building."""
