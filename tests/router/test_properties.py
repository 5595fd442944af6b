"""Properties of every decision, over random request features on the shipped catalog."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import event, given, settings
from hypothesis import strategies as st

from services.router.breaker import ALLOWED, Admission, Admit
from services.router.budget import MIN_OUTPUT_BUDGET, UNCAPPED_ESTIMATE_TOKENS, worst_case_cost
from services.router.catalog import Catalog, ModelEntry, load_catalog
from services.router.routing import Decision, Reason, Refusal, RefusalCode, RouteRequest, route

# Hypothesis does not mix with function-scoped fixtures; the catalog is immutable anyway.
CATALOG: Catalog = load_catalog()

MODELS = [
    *("lowest-cost", "balanced", "fastest", "max-reliability"),
    *("gpt-4o", "gpt-4.1-nano", "openai:o3-mini", "deepseek-chat", "deepseek-reasoner"),
    *("llama-3.1-8b-instant", "claude-3-5-haiku-20241022", "gpt-oss-120b", "grok-3-mini"),
    *("mistral-small-latest", "together:gpt-oss-120b"),
]
PROVIDERS = ["openai", "anthropic", "groq", "deepseek", "mistral", "together", "xai"]

caps = st.one_of(
    st.just(""),
    st.decimals(
        min_value=Decimal("0.000001"),
        max_value=Decimal("5"),
        places=8,
        allow_nan=False,
        allow_infinity=False,
    ).map(str),
)

# Skewed towards requests that some model can serve, so that most examples check a
# decision rather than a refusal.
rarely = st.sampled_from([False, False, False, True])
requests = st.builds(
    RouteRequest,
    model=st.sampled_from(MODELS),
    strategy=st.sampled_from(["", "lowest_cost", "balanced", "fastest", "max_reliability"]),
    prompt_tokens=st.one_of(st.integers(0, 20_000), st.integers(0, 1_200_000)),
    max_output_tokens=st.one_of(st.just(0), st.integers(1, 4_000), st.integers(1, 150_000)),
    needs_tools=rarely,
    needs_vision=rarely,
    needs_json_schema=rarely,
    max_cost_usd=caps,
    connected_providers=st.one_of(st.just(frozenset(PROVIDERS)), st.frozensets(st.sampled_from(PROVIDERS))),
    explain=st.booleans(),
)


class SomeOpen:
    """Circuits with a fixed set of provider:model keys open and another half open."""

    def __init__(self, open_keys: frozenset[str], last_keys: frozenset[str]) -> None:
        self.open_keys = open_keys
        self.last_keys = last_keys

    def admission(self, entry: ModelEntry, *, take_probe: bool) -> Admission:
        if entry.key in self.open_keys:
            return Admission(Admit.DENY, "circuit open: test")
        if entry.key in self.last_keys:
            return Admission(Admit.LAST, "circuit half open: test")
        return ALLOWED


keys = st.frozensets(st.sampled_from([e.key for e in CATALOG.models]), max_size=20)


@settings(max_examples=600, deadline=None)
@given(requests, keys, keys)
def test_no_candidate_breaks_the_cap_or_lacks_a_capability(
    request: RouteRequest, open_keys: frozenset[str], last_keys: frozenset[str]
) -> None:
    result = route(CATALOG, request, circuits=SomeOpen(open_keys, last_keys))
    event(result.code.value if isinstance(result, Refusal) else "decision")
    if isinstance(result, Refusal):
        assert result.code in set(RefusalCode)
        assert result.message
        return
    assert isinstance(result, Decision)
    assert result.candidates, "a decision always has a candidate"
    cap = Decimal(request.max_cost_usd) if request.max_cost_usd else None
    rows = {e.key: e for e in CATALOG.models}
    for candidate in result.candidates:
        entry = rows[f"{candidate.provider}:{candidate.model}"]
        prompt = entry.tokenizer.estimate(request.prompt_tokens, request.needs_tools)
        assert candidate.prompt_tokens == prompt >= request.prompt_tokens
        assert entry.provider in request.connected_providers
        assert not request.needs_tools or entry.capabilities.tools
        assert not request.needs_vision or entry.capabilities.vision
        assert not request.needs_json_schema or entry.capabilities.json_schema
        if cap is not None:
            budget = candidate.output_budget
            # StepBlend never sets a budget below the minimum; a client may.
            assert budget >= MIN_OUTPUT_BUDGET or budget == request.max_output_tokens > 0
            # The cap bounds the worst case; the estimate reported is what the answer is
            # expected to cost (the client's own budget, else a typical long answer).
            assert worst_case_cost(entry, prompt, budget) <= cap
            expected = budget if request.max_output_tokens else min(budget, UNCAPPED_ESTIMATE_TOKENS)
            assert worst_case_cost(entry, prompt, expected) == candidate.estimated_cost_usd <= cap
            if not request.max_output_tokens:
                # The largest budget that fits: one more token breaks a limit.
                ceiling = min(entry.max_output_tokens, entry.context_window - prompt)
                assert budget == ceiling or worst_case_cost(entry, prompt, budget + 1) > cap
        if candidate.output_budget:
            assert candidate.output_budget <= entry.max_output_tokens
            assert prompt + candidate.output_budget <= entry.context_window
        if request.max_output_tokens:
            assert candidate.output_budget == request.max_output_tokens
    chosen = [f"{c.provider}:{c.model}" for c in result.candidates]
    assert len(chosen) == len(set(chosen))
    considered = (
        CATALOG.models if result.strategy_used != "force_model" or request.explain else CATALOG.resolve(request.model)
    )
    assert len(chosen) + len(result.excluded) == len(considered)
    # An open circuit is a candidate only when every other way is closed.
    if set(chosen) & open_keys:
        assert set(chosen) <= open_keys
    circuit_open = {f"{e.provider}:{e.model}" for e in result.excluded if e.reason is Reason.CIRCUIT_OPEN}
    assert circuit_open <= open_keys
    # Half-open models whose probe is out come after every other candidate.
    positions = [i for i, key in enumerate(chosen) if key in last_keys - open_keys]
    assert positions == list(range(len(chosen) - len(positions), len(chosen)))
