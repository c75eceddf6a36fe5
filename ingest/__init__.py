"""Filling the collection: image-and-caption sources, the ingest runner and the demo set."""
