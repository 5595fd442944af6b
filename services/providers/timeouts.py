"""Upstream timeouts (read from the environment by `settings.ProvidersSettings`).

- `connect` (STEPBLEND_PROVIDER_CONNECT_TIMEOUT, 5 s): opening the connection.
- `first_token` (STEPBLEND_PROVIDER_TTFT_TIMEOUT, 60 s): a stream's wait for its
  first chunk to forward, from the moment the request is sent; a provider that
  answers 200 and then says nothing (or only pings) is given up on, and the
  next candidate tried.
- `read` (STEPBLEND_PROVIDER_READ_TIMEOUT, 60 s): the longest silence between chunks
  once a stream has started; it then ends with an error event (no fallback: the
  client already has tokens).
- `total` (STEPBLEND_PROVIDER_TOTAL_TIMEOUT, 600 s): one attempt, start to end. It
  is also the whole bound of a non-streaming call: a provider answers those only
  when the whole answer is written, which for a long or reasoning answer takes
  minutes, so there is no first token to time. Times STEPBLEND_MAX_ATTEMPTS it
  bounds one request, every fallback included (the servicer's deadline; sooner when
  the caller's gRPC deadline is): a caller that sets none still cannot hold a call
  open for ever.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Timeouts:
    """Upstream timeouts in seconds (see the module docstring)."""

    connect: float = 5.0
    read: float = 60.0
    total: float = 600.0
    first_token: float = 60.0
