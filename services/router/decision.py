"""The routing decision's types: what goes into `routing.route` and what comes out.

Frozen dataclasses, no behaviour: `routing` fills them, `refusals` explains a refusal,
`servicer` puts them on the wire.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from types import MappingProxyType

from services.common.vocab import RefusalCode

__all__ = ["RefusalCode"]  # re-exported: the router's modules import it from here


class Reason(StrEnum):
    """Why a catalog row is not a candidate, as `Exclusion.reason` on the wire.

    Declared in check order: a later reason means the row got further through the
    checks, which is how a refusal picks the reason that explains it best.
    """

    NOT_CONNECTED = "not_connected"
    LACKS_TOOLS = "lacks_tools"
    LACKS_VISION = "lacks_vision"
    LACKS_JSON_SCHEMA = "lacks_json_schema"
    UNSUPPORTED_PARAM = "unsupported_param"
    OUTPUT_TOO_LARGE = "output_too_large"
    CONTEXT_TOO_SMALL = "context_too_small"
    OVER_CAP = "over_cap"
    CIRCUIT_OPEN = "circuit_open"
    #: The client named another model (explain only).
    NOT_REQUESTED = "not_requested"


STAGE: Mapping[Reason, int] = MappingProxyType({reason: i for i, reason in enumerate(Reason)})


@dataclass(frozen=True)
class RouteRequest:
    """A request's routing features (never its content), as the gateway sends them."""

    #: The body's `model`: a strategy name or a model id (`gpt-4o`, `openai:gpt-4o`).
    model: str
    #: `stepblend_strategy`, "" when unset.
    strategy: str = ""
    #: Prompt tokens counted by the gateway with o200k_base (each row's tokenizer
    #: margin is applied by the router).
    prompt_tokens: int = 0
    #: The client's max_tokens / max_completion_tokens; 0 when it set none.
    max_output_tokens: int = 0
    needs_tools: bool = False
    needs_vision: bool = False
    needs_json_schema: bool = False
    #: The request parameters the body sets; a row refusing one is not a candidate.
    params: frozenset[str] = frozenset()
    #: `stepblend_max_cost` in USD as the client wrote it, "" when unset.
    max_cost_usd: str = ""
    #: Providers the account has a key for.
    connected_providers: frozenset[str] = frozenset()
    #: The Routing API: report every excluded row, and take no breaker probe.
    explain: bool = False
    #: The caller's API key allows only these models (`gpt-4o`: every provider's row,
    #: `openai:gpt-4o`: that row); empty: any.
    allowed_models: frozenset[str] = frozenset()
    #: "embedding": route among the embedding table's rows (embedding_routing.py).
    kind: str = ""
    #: Embeddings: tokens of the longest input (o200k_base), and how many inputs.
    longest_input_tokens: int = 0
    inputs: int = 0


@dataclass(frozen=True)
class Candidate:
    """One model on one provider, as the executor will call it."""

    provider: str
    model: str
    upstream_model: str
    estimated_cost_usd: Decimal
    input_price_per_mtok: Decimal
    output_price_per_mtok: Decimal
    #: Sent upstream as the completion limit; 0 leaves it to the provider.
    output_budget: int
    param_renames: tuple[tuple[str, str], ...]
    unsupported_params: tuple[str, ...]
    #: The strategy's score, higher is better (see `strategies`).
    score: float = 0.0
    cached_input_price_per_mtok: Decimal | None = None
    #: The prompt estimate this row was priced with (its tokenizer margin applied).
    prompt_tokens: int = 0
    #: The true worst case: the output budget, or with none the model's maximum
    #: output within its context, at list prices. What a budget reserves.
    worst_cost_usd: Decimal = Decimal(0)


@dataclass(frozen=True)
class Exclusion:
    """A row that is not a candidate, and why."""

    provider: str
    model: str
    reason: Reason
    detail: str
    #: For over_cap: the cheapest worst case the row could offer, in USD.
    min_cost_usd: Decimal | None = None


@dataclass(frozen=True)
class Decision:
    """Eligible candidates, best first, and what was left out."""

    strategy_used: str
    candidates: tuple[Candidate, ...]
    catalog_version: str
    #: Rows considered and not eligible; with `explain`, every other catalog row too.
    excluded: tuple[Exclusion, ...] = ()


@dataclass(frozen=True)
class Refusal:
    """No model can serve the request; `code` is a `RefusalCode` value."""

    code: RefusalCode
    message: str
    param: str = ""
