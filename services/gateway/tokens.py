"""OpenAI's o200k_base encoding, offline, with tiktoken.

tiktoken fetches an encoding's rank file once and keeps it in a cache directory
named by TIKTOKEN_CACHE_DIR, under the SHA-1 of its URL, checking it against the
published SHA-256. `encodings/` is that cache, shipped with the gateway: the
file is OpenAI's o200k_base.tiktoken, byte for byte, so tiktoken's own check
passes and nothing is downloaded.

tiktoken (Rust) rather than a pure-Python BPE: it holds the ranks in a fixed
~70 MB, counts unfamiliar text about fourteen times faster, and keeps no cache
that grows with what clients send.
"""

from __future__ import annotations

import os
from pathlib import Path

import tiktoken

__all__ = ["ENCODINGS", "o200k_base"]

ENCODINGS = Path(__file__).parent / "encodings"


def o200k_base() -> tiktoken.Encoding:
    """The o200k_base encoding from the shipped rank file."""
    # tiktoken reads the variable at each load; the gateway loads one encoding, once.
    os.environ["TIKTOKEN_CACHE_DIR"] = str(ENCODINGS)
    return tiktoken.get_encoding("o200k_base")
