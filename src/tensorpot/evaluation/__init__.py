"""Error tables, predictions written to files, plots, and energy profiles along scans."""
