import sys

from llmlab.cli import main

# The guard matters: vLLM's CPU backend starts workers with spawn, which re-imports __main__.
if __name__ == "__main__":
    sys.exit(main())
