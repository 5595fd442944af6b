from __future__ import annotations

from decimal import Decimal

import pytest

from services.router.budget import MIN_OUTPUT_BUDGET
from services.router.catalog import Catalog
from services.router.embedding_routing import route_embedding
from services.router.routing import Decision, Reason, Refusal, RefusalCode, RouteRequest, route
from tests.router.conftest import ALL_PROVIDERS


def decide(catalog: Catalog, model: str, **features: object) -> Decision:
    features.setdefault("connected_providers", ALL_PROVIDERS)
    result = route(catalog, RouteRequest(model=model, **features))  # type: ignore[arg-type]
    assert isinstance(result, Decision), result
    return result


def refuse(catalog: Catalog, model: str, **features: object) -> Refusal:
    features.setdefault("connected_providers", ALL_PROVIDERS)
    result = route(catalog, RouteRequest(model=model, **features))  # type: ignore[arg-type]
    assert isinstance(result, Refusal), result
    return result


# --- forced model -----------------------------------------------------------------


def test_forced_model(catalog: Catalog) -> None:
    decision = decide(catalog, "openai:gpt-4o", prompt_tokens=1000, max_output_tokens=500)
    assert decision.strategy_used == "force_model"
    assert decision.catalog_version == catalog.version
    (only,) = decision.candidates
    assert (only.provider, only.model, only.upstream_model) == ("openai", "gpt-4o", "gpt-4o")
    assert only.estimated_cost_usd == Decimal("0.0075")
    assert only.output_budget == 500
    assert (only.input_price_per_mtok, only.output_price_per_mtok) == (
        Decimal("2.50"),
        Decimal("10.00"),
    )


def test_alias_routes_to_catalog_id(catalog: Catalog) -> None:
    # OpenAI's and Azure's rows of the model.
    candidates = decide(catalog, "gpt-4o-2024-08-06").candidates
    assert {(c.provider, c.model) for c in candidates} == {("openai", "gpt-4o"), ("azure", "gpt-4o")}


def test_provider_prefix_pins_the_provider(catalog: Catalog) -> None:
    (only,) = decide(catalog, "groq:llama-3.1-8b-instant").candidates
    assert only.provider == "groq"


def test_forced_reasoning_model_carries_its_parameter_rules(catalog: Catalog) -> None:
    (only,) = decide(catalog, "o3-mini").candidates
    assert dict(only.param_renames) == {"max_tokens": "max_completion_tokens"}
    assert "temperature" in only.unsupported_params


def test_stepblend_strategy_does_not_change_a_forced_model(catalog: Catalog) -> None:
    decision = decide(catalog, "deepseek-chat", strategy="fastest")
    assert decision.strategy_used == "force_model"
    assert [c.model for c in decision.candidates] == ["deepseek-chat"]


# --- strategies -------------------------------------------------------------------


def test_strategy_returns_every_eligible_model_ranked(catalog: Catalog) -> None:
    decision = decide(catalog, "lowest-cost", prompt_tokens=100)
    assert decision.strategy_used == "lowest_cost"
    assert len(decision.candidates) == len(catalog.models)
    assert decision.excluded == ()


def test_stepblend_strategy_overrides_the_body_strategy(catalog: Catalog) -> None:
    assert decide(catalog, "lowest-cost", strategy="max_reliability").strategy_used == "max_reliability"
    assert decide(catalog, "balanced", strategy="lowest-cost").strategy_used == "lowest_cost"


# --- eligibility ------------------------------------------------------------------


def test_only_connected_providers(catalog: Catalog) -> None:
    decision = decide(catalog, "balanced", connected_providers=frozenset({"groq"}))
    assert {c.provider for c in decision.candidates} == {"groq"}
    assert {e.reason for e in decision.excluded} == {Reason.NOT_CONNECTED}
    groq_rows = [e for e in catalog.models if e.provider == "groq"]
    assert len(decision.candidates) == len(groq_rows)
    assert len(decision.excluded) == len(catalog.models) - len(groq_rows)


@pytest.mark.parametrize(
    ("feature", "capability"),
    [("needs_vision", "vision"), ("needs_json_schema", "json_schema")],
)
def test_capabilities_filter_strategy_candidates(catalog: Catalog, feature: str, capability: str) -> None:
    decision = decide(catalog, "lowest-cost", **{feature: True})
    assert decision.candidates
    by_key = {e.key: e for e in catalog.models}
    for c in decision.candidates:
        assert getattr(by_key[f"{c.provider}:{c.model}"].capabilities, capability)
    assert all(e.reason.value == f"lacks_{capability}" for e in decision.excluded)


def test_tools_with_a_forced_model(catalog: Catalog) -> None:
    (only,) = decide(catalog, "deepseek-chat", needs_tools=True).candidates
    assert only.model == "deepseek-chat"


def test_context_window_excludes_small_models(catalog: Catalog) -> None:
    decision = decide(catalog, "lowest-cost", prompt_tokens=150_000)
    ids = {c.model for c in decision.candidates}
    assert {"gpt-4.1", "gpt-4.1-nano", "o3-mini", "gpt-5", "mistral-large-latest"} <= ids
    assert not ids & {"gpt-4o", "deepseek-chat", "llama-3.3-70b"}
    # 150K o200k tokens x 1.35 (Claude's margin) = 202,500 > Claude's 200K context.
    assert not any(c.provider == "anthropic" for c in decision.candidates)
    assert all(e.reason is Reason.CONTEXT_TOO_SMALL for e in decision.excluded)


def test_requested_output_over_model_max_excludes(catalog: Catalog) -> None:
    decision = decide(catalog, "lowest-cost", max_output_tokens=20_000)
    assert "gpt-4o" not in {c.model for c in decision.candidates}
    assert {(e.provider, e.model) for e in decision.excluded if e.reason is Reason.OUTPUT_TOO_LARGE} == {
        ("openai", "gpt-4o"), ("openai", "gpt-4o-mini"), ("azure", "gpt-4o"), ("azure", "gpt-4o-mini"),
        ("deepseek", "deepseek-chat"),
        ("anthropic", "claude-3-5-haiku-20241022"), ("anthropic", "claude-3-5-sonnet-20241022"),
        ("groq", "llama-4-scout-17b-16e-instruct"), ("groq", "llama-4-maverick-17b-128e-instruct"),
        ("groq", "kimi-k2"), ("together", "kimi-k2"), ("fireworks", "kimi-k2"),
        ("together", "deepseek-v3"), ("fireworks", "deepseek-v3"),
        ("fireworks", "llama-3.3-70b"), ("openrouter", "llama-3.3-70b"),
        ("perplexity", "sonar"), ("perplexity", "sonar-pro"),
        ("bedrock", "claude-3-5-haiku-20241022"), ("bedrock", "llama-3.3-70b"), ("bedrock", "mistral-large-2407"),
        ("bedrock", "nova-pro"), ("bedrock", "nova-lite"), ("bedrock", "nova-micro"),
    }  # fmt: skip
    # Groq's and Together's llama-3.3-70b write 32K: the same model stays eligible there.
    assert {c.provider for c in decision.candidates if c.model == "llama-3.3-70b"} == {"groq", "together"}


def test_cap_excludes_models_whose_worst_case_exceeds_it(catalog: Catalog) -> None:
    decision = decide(catalog, "lowest-cost", prompt_tokens=1000, max_output_tokens=1000, max_cost_usd="0.005")
    assert all(c.estimated_cost_usd <= Decimal("0.005") for c in decision.candidates)
    over = {e.model for e in decision.excluded if e.reason is Reason.OVER_CAP}
    assert {"gpt-4o", "gpt-4.1", "o3-mini", "o4-mini"} <= over
    assert all(e.min_cost_usd is not None and e.min_cost_usd > Decimal("0.005") for e in decision.excluded)


def test_output_budget_under_a_cap(catalog: Catalog) -> None:
    (only,) = decide(catalog, "openai:gpt-4o", prompt_tokens=1000, max_cost_usd="0.01").candidates
    # $0.0025 of prompt leaves $0.0075, which buys 750 output tokens at $10/M.
    assert only.output_budget == 750
    assert only.estimated_cost_usd == Decimal("0.01")


def test_output_budget_without_cap_is_left_to_provider(catalog: Catalog) -> None:
    (only,) = decide(catalog, "openai:gpt-4o", prompt_tokens=1000).candidates
    assert only.output_budget == 0
    # Estimated with 4096 output tokens: 0.0025 + 0.04096.
    assert only.estimated_cost_usd == Decimal("0.04346")


def test_cap_budget_never_below_minimum(catalog: Catalog) -> None:
    cap = Decimal("0.0025") + MIN_OUTPUT_BUDGET * Decimal("0.00001")
    (only,) = decide(catalog, "openai:gpt-4o", prompt_tokens=1000, max_cost_usd=str(cap)).candidates
    assert only.output_budget == MIN_OUTPUT_BUDGET
    just_under = str(cap - Decimal("0.00000001"))
    assert refuse(catalog, "gpt-4o", prompt_tokens=1000, max_cost_usd=just_under).code is (
        RefusalCode.NO_MODEL_UNDER_COST_CAP
    )


# --- refusals ---------------------------------------------------------------------


def test_model_not_found(catalog: Catalog) -> None:
    refusal = refuse(catalog, "gpt-9-turbo")
    assert refusal.code is RefusalCode.MODEL_NOT_FOUND
    assert "gpt-9-turbo" in refusal.message
    assert refusal.param == "model"


def test_provider_prefix_for_a_provider_without_that_model(catalog: Catalog) -> None:
    assert refuse(catalog, "groq:gpt-4o").code is RefusalCode.MODEL_NOT_FOUND


def test_provider_not_connected(catalog: Catalog) -> None:
    refusal = refuse(catalog, "deepseek-chat", connected_providers=frozenset({"openai"}))
    assert refusal.code is RefusalCode.PROVIDER_NOT_CONNECTED
    assert "deepseek" in refusal.message
    assert "PUT /api/v1/account/keys/deepseek" in refusal.message


def test_no_model_under_cost_cap(catalog: Catalog) -> None:
    refusal = refuse(catalog, "lowest-cost", prompt_tokens=100_000, max_cost_usd="0.001")
    assert refusal.code is RefusalCode.NO_MODEL_UNDER_COST_CAP
    assert refusal.param == "stepblend_max_cost"
    # The cheapest: 100k prompt tokens x $0.05/M + 16 x $0.40/M on gpt-5-nano (o200k is
    # its own tokenizer, no margin); Groq's 8B at $0.05/M pays its 1.30 margin.
    assert "$0.0050064 (gpt-5-nano on openai)" in refusal.message


def test_cost_cap_refusal_with_tied_cheapest(catalog: Catalog) -> None:
    # deepseek-chat and deepseek-reasoner share one price: a tie must not break the message.
    refusal = refuse(
        catalog,
        "lowest-cost",
        prompt_tokens=90_000,
        max_cost_usd="0.001",
        connected_providers=frozenset({"deepseek"}),
    )
    assert refusal.code is RefusalCode.NO_MODEL_UNDER_COST_CAP
    assert "(deepseek-chat on deepseek)" in refusal.message


def test_forced_model_over_cap(catalog: Catalog) -> None:
    refusal = refuse(catalog, "gpt-4o", prompt_tokens=1000, max_output_tokens=1000, max_cost_usd="0.01")
    assert refusal.code is RefusalCode.NO_MODEL_UNDER_COST_CAP


def test_no_eligible_model_without_connected_provider(catalog: Catalog) -> None:
    refusal = refuse(catalog, "balanced", connected_providers=frozenset())
    assert refusal.code is RefusalCode.NO_ELIGIBLE_MODEL
    assert "no connected provider" in refusal.message
    assert "PUT /api/v1/account/keys/{provider}" in refusal.message


def test_no_eligible_model_without_capability(catalog: Catalog) -> None:
    refusal = refuse(
        catalog,
        "fastest",
        needs_vision=True,
        connected_providers=frozenset({"together", "deepseek"}),
    )
    assert refusal.code is RefusalCode.NO_ELIGIBLE_MODEL
    assert "no vision-capable model" in refusal.message
    assert refusal.param == "messages"


def test_no_eligible_forced_model_without_tools(catalog: Catalog) -> None:
    refusal = refuse(catalog, "deepseek-reasoner", needs_tools=True)
    assert refusal.code is RefusalCode.NO_ELIGIBLE_MODEL
    assert "deepseek-reasoner is not tool-capable" in refusal.message
    assert refusal.param == "tools"


def test_no_eligible_model_context_too_small(catalog: Catalog) -> None:
    refusal = refuse(catalog, "lowest-cost", prompt_tokens=2_000_000)
    assert refusal.code is RefusalCode.NO_ELIGIBLE_MODEL
    assert "context too small" in refusal.message
    assert "largest: 1048576 tokens, gemini-2.5-flash" in refusal.message


def test_no_eligible_model_output_too_long(catalog: Catalog) -> None:
    refusal = refuse(catalog, "lowest-cost", max_output_tokens=500_000)
    assert refusal.code is RefusalCode.NO_ELIGIBLE_MODEL
    assert "max output too long" in refusal.message
    assert refusal.param == "max_tokens"


def test_the_furthest_reason_explains_the_refusal(catalog: Catalog) -> None:
    # Vision models exist but are over the cap; the others lack vision: the cap is why.
    refusal = refuse(catalog, "lowest-cost", needs_vision=True, prompt_tokens=10_000, max_cost_usd="0.0005")
    assert refusal.code is RefusalCode.NO_MODEL_UNDER_COST_CAP


def test_tools_with_a_strategy_is_invalid(catalog: Catalog) -> None:
    refusal = refuse(catalog, "lowest-cost", needs_tools=True)
    assert refusal.code is RefusalCode.INVALID_REQUEST
    assert refusal.param == "tools"
    assert "specific model" in refusal.message


def test_unknown_stepblend_strategy_is_invalid(catalog: Catalog) -> None:
    refusal = refuse(catalog, "gpt-4o", strategy="cheapest")
    assert refusal.code is RefusalCode.INVALID_REQUEST
    assert refusal.param == "stepblend_strategy"
    assert "cheapest" in refusal.message


@pytest.mark.parametrize("cap", ["abc", "-1", "0", "NaN", "Infinity", "1e999999999999", "1e-999999999999", "1000001"])
def test_bad_max_cost_is_invalid(catalog: Catalog, cap: str) -> None:
    refusal = refuse(catalog, "lowest-cost", max_cost_usd=cap)
    assert refusal.code is RefusalCode.INVALID_REQUEST
    assert refusal.param == "stepblend_max_cost"


def test_empty_model_is_invalid(catalog: Catalog) -> None:
    refusal = refuse(catalog, "  ")
    assert (refusal.code, refusal.param) == (RefusalCode.INVALID_REQUEST, "model")


# --- parameters a model refuses ---------------------------------------------------


def test_strategy_skips_models_that_refuse_a_set_parameter(catalog: Catalog) -> None:
    plain = decide(catalog, "lowest-cost", prompt_tokens=50, max_output_tokens=100)
    tempered = decide(
        catalog, "lowest-cost", prompt_tokens=50, max_output_tokens=100, params=frozenset({"temperature"})
    )
    assert any("temperature" in c.unsupported_params for c in plain.candidates)
    assert tempered.candidates
    assert all("temperature" not in c.unsupported_params for c in tempered.candidates)
    explained = route(
        catalog,
        RouteRequest(
            model="lowest-cost",
            prompt_tokens=50,
            params=frozenset({"temperature"}),
            connected_providers=ALL_PROVIDERS,
            explain=True,
        ),
    )
    assert isinstance(explained, Decision)
    assert any(e.reason is Reason.UNSUPPORTED_PARAM for e in explained.excluded)


def test_a_strategy_asked_for_json_mode_skips_claude_rather_than_failing_on_it(catalog: Catalog) -> None:
    # Claude's Messages API has no JSON mode: the adapter would answer 400, ending the walk.
    json_mode = frozenset({"response_format"})
    both = frozenset({"anthropic", "openai"})
    asked = decide(catalog, "lowest-cost", prompt_tokens=50, params=json_mode, connected_providers=both)
    assert asked.candidates
    assert {c.provider for c in asked.candidates} == {"openai"}
    only_claude = refuse(
        catalog, "lowest-cost", prompt_tokens=50, params=json_mode, connected_providers=frozenset({"anthropic"})
    )
    assert (only_claude.code, only_claude.param) == (RefusalCode.NO_ELIGIBLE_MODEL, "response_format")
    plain = decide(catalog, "lowest-cost", prompt_tokens=50, connected_providers=frozenset({"anthropic"}))
    assert {c.provider for c in plain.candidates} == {"anthropic"}


def test_forced_model_refusing_a_parameter_is_a_clear_400(catalog: Catalog) -> None:
    refusal = refuse(catalog, "o3-mini", prompt_tokens=50, params=frozenset({"temperature", "seed"}))
    assert refusal.code is RefusalCode.NO_ELIGIBLE_MODEL
    assert refusal.param == "temperature"
    assert "o3-mini does not take temperature" in refusal.message


# --- API keys' allowed models and budgets (SPEC.md §7) -------------------------------


def test_a_strategy_ranks_only_the_models_a_key_allows(catalog: Catalog) -> None:
    allowed = frozenset({"gpt-4o", "groq:llama-3.1-8b-instant"})
    decision = decide(catalog, "lowest-cost", allowed_models=allowed)
    assert {(c.provider, c.model) for c in decision.candidates} == {
        ("openai", "gpt-4o"),
        ("azure", "gpt-4o"),
        ("groq", "llama-3.1-8b-instant"),
    }


def test_a_model_the_key_does_not_list_is_not_allowed(catalog: Catalog) -> None:
    refusal = refuse(catalog, "llama-3.1-8b-instant", allowed_models=frozenset({"together:gpt-4o"}))
    assert (refusal.code, refusal.param) == (RefusalCode.MODEL_NOT_ALLOWED, "model")
    assert "'llama-3.1-8b-instant'" in refusal.message and "together:gpt-4o" in refusal.message
    # Listed on another provider only: that provider's row is not this one.
    refusal = refuse(catalog, "openai:gpt-4o", allowed_models=frozenset({"azure:gpt-4o"}))
    assert refusal.code == RefusalCode.MODEL_NOT_ALLOWED


def test_a_key_allows_a_model_by_any_of_its_names(catalog: Catalog) -> None:
    # `gpt-4o-2024-08-06` is an alias of gpt-4o's rows: listing either name allows both.
    by_alias = decide(catalog, "gpt-4o-2024-08-06", allowed_models=frozenset({"gpt-4o"}))
    assert {(c.provider, c.model) for c in by_alias.candidates} == {("openai", "gpt-4o"), ("azure", "gpt-4o")}
    by_id = decide(catalog, "gpt-4o", allowed_models=frozenset({"openai:gpt-4o-2024-08-06"}))
    assert [(c.provider, c.model) for c in by_id.candidates] == [("openai", "gpt-4o")]


def test_the_worst_case_without_max_tokens_is_the_models_whole_output(catalog: Catalog) -> None:
    # No max_tokens and no cap: the estimate assumes a typical answer, the worst case
    # (what a budget reserves) the most the model can write.
    (only,) = decide(catalog, "openai:gpt-4o", prompt_tokens=1000).candidates
    entry = next(e for e in catalog.models if e.provider == "openai" and e.id == "gpt-4o")
    whole = (1000 * entry.input_per_mtok + entry.max_output_tokens * entry.output_per_mtok) / Decimal(1_000_000)
    assert only.worst_cost_usd == whole > only.estimated_cost_usd
    (capped,) = decide(catalog, "openai:gpt-4o", prompt_tokens=1000, max_output_tokens=500).candidates
    assert capped.worst_cost_usd == capped.estimated_cost_usd == Decimal("0.0075")


# --- embeddings (SPEC.md §9) ------------------------------------------------------


def _embed(catalog: Catalog, model: str, **features: object) -> Decision | Refusal:
    features.setdefault("connected_providers", ALL_PROVIDERS)
    features.setdefault("inputs", 1)
    return route_embedding(catalog, RouteRequest(model=model, kind="embedding", **features))  # type: ignore[arg-type]


def test_an_embedding_model_is_routed_at_its_input_price(catalog: Catalog) -> None:
    decision = _embed(catalog, "text-embedding-3-small", prompt_tokens=1000, longest_input_tokens=600)
    assert isinstance(decision, Decision)
    (only,) = decision.candidates
    assert (only.provider, only.model, only.output_budget) == ("openai", "text-embedding-3-small", 0)
    assert only.estimated_cost_usd == only.worst_cost_usd == Decimal("0.00002")


def test_embeddings_refuse_strategies_chat_models_and_inputs_over_the_limit(catalog: Catalog) -> None:
    strategy = _embed(catalog, "lowest-cost")
    assert isinstance(strategy, Refusal) and strategy.code == RefusalCode.STRATEGY_NOT_SUPPORTED
    chat = _embed(catalog, "gpt-4o")
    assert isinstance(chat, Refusal) and chat.code == RefusalCode.INVALID_REQUEST and "chat model" in chat.message
    long = _embed(catalog, "text-embedding-3-small", prompt_tokens=9000, longest_input_tokens=9000)
    assert isinstance(long, Refusal) and (long.code, long.param) == (RefusalCode.NO_ELIGIBLE_MODEL, "input")
    assert "8191 tokens per input" in long.message
    shorter = _embed(catalog, "mistral-embed", params=frozenset({"dimensions"}))
    assert isinstance(shorter, Refusal) and shorter.param == "dimensions"
    assert isinstance(_embed(catalog, "text-embedding-3-large", params=frozenset({"dimensions"})), Decision)


def test_a_key_allows_an_embedding_model_by_any_of_its_names(catalog: Catalog) -> None:
    listed = _embed(catalog, "text-embedding-3-small", allowed_models=frozenset({"openai:text-embedding-3-small"}))
    assert isinstance(listed, Decision) and [c.model for c in listed.candidates] == ["text-embedding-3-small"]
    other = _embed(catalog, "text-embedding-3-small", allowed_models=frozenset({"text-embedding-3-large"}))
    assert isinstance(other, Refusal) and (other.code, other.param) == (RefusalCode.MODEL_NOT_ALLOWED, "model")
    assert "text-embedding-3-large" in other.message


def test_chat_routing_never_offers_an_embedding_model(catalog: Catalog) -> None:
    assert all(not c.model.startswith("text-embedding") for c in decide(catalog, "lowest-cost").candidates)
    refusal = refuse(catalog, "text-embedding-3-small")
    assert (refusal.code, refusal.param) == (RefusalCode.INVALID_REQUEST, "model")
    assert "/embeddings" in refusal.message


def test_a_key_allowing_a_hosts_own_name_still_reaches_that_row(catalog: Catalog) -> None:
    # `llama-3.3-70b-versatile` is Groq's name for the row of `llama-3.3-70b`.
    decision = decide(catalog, "lowest-cost", allowed_models=frozenset({"llama-3.3-70b-versatile"}))
    assert {(c.provider, c.model) for c in decision.candidates} == {("groq", "llama-3.3-70b")}
