"""The gateway's o200k_base, built from the shipped rank file without touching
the environment, counts exactly as tiktoken's own o200k_base."""

from __future__ import annotations

import os

import pytest
import tiktoken

from services.gateway.tokens import ENCODINGS, o200k_base

TEXTS = [
    "hello world",
    "Hello, World! It's a test; we'll see what's up.",
    "    indented code\n\tdef f(x):\n\t\treturn x ** 2  # square\r\n",
    "Numbers 1234567 and 3.14159, dates 2026-12-05, ids 0xDEADBEEF",
    "日本語のテキストと中文文本，还有한국어 텍스트",
    "Ünïcödé àccents, emoji 🙂🚀 and Ω≈ç√∫",
    "What does <|endoftext|> or <|endofprompt|> mean?",
    "x" * 5000,
    "",
]


def test_counts_equal_tiktokens_own_o200k_base(monkeypatch: pytest.MonkeyPatch) -> None:
    environ = dict(os.environ)
    ours = o200k_base()
    assert dict(os.environ) == environ  # nothing written
    # tiktoken's own, from the same file through its cache directory (as the gateway did before).
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(ENCODINGS))
    theirs = tiktoken.get_encoding("o200k_base")
    assert ours.n_vocab == theirs.n_vocab and ours.special_tokens_set == theirs.special_tokens_set
    for text in TEXTS:
        assert ours.encode_ordinary(text) == theirs.encode_ordinary(text)
        assert ours.encode(text, disallowed_special=()) == theirs.encode(text, disallowed_special=())
    assert ours.encode("<|endoftext|>", allowed_special="all") == [199999]
