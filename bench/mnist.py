"""Reproduce the paper's MNIST tables and figures (not implemented yet: see issue 7)."""

import sys

if __name__ == "__main__":
    sys.exit("bench/mnist.py is not implemented yet (issue 7); run `uv run pytest` for the tests.")
