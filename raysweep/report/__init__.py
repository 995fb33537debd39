"""The verdict report: statistics and decisions (verdict), figures, Markdown/HTML rendering."""
