"""RecRanker: an LLM ranker for top-k recommendation (settings and CLI entry point)."""

__version__ = "0.1.0"
