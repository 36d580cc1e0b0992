"""Task 1: sentiment classification of IMDB reviews by LLMs, scored like the baselines."""
