"""Error tables, predictions written to files, and plots."""
