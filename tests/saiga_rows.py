"""Hand-made saiga rows for the tests of analytics and SFT data."""

from __future__ import annotations

from typing import Any


def row(*messages: tuple[str, str], **fields: Any) -> dict[str, Any]:
    """A saiga row: (role, content) messages and column overrides; `turns` is derived."""
    base = {
        "messages": [{"content": content, "role": role} for role, content in messages],
        "source": "gpt4",
        "opus_score": 9,
        "language": "Russian",
        "turns": sum(role == "bot" for role, _ in messages),
        "sonnet_topic": "facts",
        "sonnet_topic_explanation": "",
        "sonnet_complexity": "medium",
        "sonnet_complexity_explanation": "",
        "is_bad_by_regex": False,
        "score_explanation": None,
    }
    return {**base, **fields}
