"""Importable helpers behind the egs2 recipes (data, tokens, scoring, report)."""
