"""Exit codes of the ``ebmfast`` command line (one place, used by every command).

0 ok; 1 a failure at run time (e.g. a benchmark script failed); 2 bad input reported before
anything runs; 3 training diverged; 130 interrupted.
"""
EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_DIVERGED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130

__all__ = ["EXIT_OK", "EXIT_FAIL", "EXIT_USAGE", "EXIT_DIVERGED", "EXIT_INTERRUPTED"]
