"""The forum index: threads in memory, search, duplicate verdicts, persistence, the live index."""
