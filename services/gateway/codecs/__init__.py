"""The front doors' codecs: one per dialect a client may speak (see base.py)."""
