"""Classic sentiment baselines trained on the IMDB train split (TF-IDF + LR, an RNN)."""

import os

# Idle OpenMP threads sleep instead of spinning. torch reads this when it is first imported
# (llmlab.baselines.rnn). Measured on 2 busy cores, demo RNN with 2 threads: 1,374 s wall and
# 263 s CPU with the default spinning, 50 s and 16 s with PASSIVE (1 thread: 90 s and 19 s).
# setdefault: a value set by the user or the cluster wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
