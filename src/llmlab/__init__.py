"""llmlab: one reproducible LLM experiment, from raw downloads to a rendered report."""

__version__ = "0.1.0"
