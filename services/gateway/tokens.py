"""OpenAI's o200k_base encoding, offline, with tiktoken.

`encodings/` ships OpenAI's o200k_base.tiktoken rank file, byte for byte (named,
as tiktoken's own cache would name it, by the SHA-1 of its URL). It is loaded
from that path, checked against the published SHA-256, and made into the
encoding with o200k_base's split pattern and special tokens, as
tiktoken_ext.openai_public defines them: no download and no environment variable
(tiktoken's cache directory) to set. tests/gateway/test_tokens.py proves the
counts equal tiktoken's own o200k_base.

tiktoken (Rust) rather than a pure-Python BPE: it holds the ranks in a fixed
~70 MB, counts unfamiliar text about fourteen times faster, and keeps no cache
that grows with what clients send.
"""

from __future__ import annotations

import functools
from pathlib import Path

import tiktoken
from tiktoken.load import load_tiktoken_bpe

__all__ = ["ENCODINGS", "o200k_base"]

ENCODINGS = Path(__file__).parent / "encodings"
RANK_FILE = ENCODINGS / "fb374d419588a4632f3f557e76b4b70aebbca790"
_SHA256 = "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d"
_PATTERN = "|".join(
    [
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""\p{N}{1,3}""",
        r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
        r"""\s*[\r\n]+""",
        r"""\s+(?!\S)""",
        r"""\s+""",
    ]
)
_SPECIAL_TOKENS = {"<|endoftext|>": 199999, "<|endofprompt|>": 200018}


@functools.cache
def o200k_base() -> tiktoken.Encoding:
    """The o200k_base encoding from the shipped rank file, built once per process
    (before the gateway's other imports, and before its workers fork: stepblend/forks.py)."""
    encoding = tiktoken.Encoding(
        "o200k_base",
        pat_str=_PATTERN,
        mergeable_ranks=load_tiktoken_bpe(str(RANK_FILE), expected_hash=_SHA256),
        special_tokens=_SPECIAL_TOKENS,
    )
    # The Rust core keeps its own copy of the ranks; the Encoding keeps the Python
    # dict only to be pickled, which the gateway never does. Dropping it frees
    # about 24 MB of the gateway's memory (94 → 70 MB for the loaded encoding).
    encoding._mergeable_ranks = {}
    return encoding
