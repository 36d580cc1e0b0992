"""What the two raw datasets look like: statistics JSON and one figure per question.

One module per dataset (`llmlab.analytics.imdb`, `llmlab.analytics.saiga`), so the IMDB
analytics never depend on the saiga / SFT code; `common` holds what both use.
"""
