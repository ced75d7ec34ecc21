"""Memory: full-text and vector search over what opsdesk knows, its sources and its retention."""
