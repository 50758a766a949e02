"""Decoding helpers that ESPnet does not have (batched greedy search for S2T models)."""
