"""One open model, several hosts (SPEC.md §11): a bare id such as gpt-oss-120b is
served by every connected host that has a row for it, ranked by the strategy (the
order the executor falls back in), and by one host alone when only that one is
connected."""

from __future__ import annotations

import pytest

from services.router.catalog import Catalog
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


GPT_OSS_HOSTS = {
    "groq": "openai/gpt-oss-120b",
    "together": "openai/gpt-oss-120b",
    "fireworks": "accounts/fireworks/models/gpt-oss-120b",
    "cerebras": "gpt-oss-120b",
    "openrouter": "openai/gpt-oss-120b",
}


def test_a_bare_id_is_served_by_every_connected_host(catalog: Catalog) -> None:
    decision = decide(catalog, "gpt-oss-120b", prompt_tokens=500)
    assert decision.strategy_used == "force_model"
    # One candidate per host, in the order the executor falls back through them.
    assert {c.provider: c.upstream_model for c in decision.candidates} == GPT_OSS_HOSTS
    assert len(decision.candidates) == len(GPT_OSS_HOSTS)
    # Whichever host serves it, the client is answered as the model it named.
    assert {c.model for c in decision.candidates} == {"gpt-oss-120b"}
    llama = decide(catalog, "llama-3.3-70b")
    assert {c.provider for c in llama.candidates} == {"groq", "together", "fireworks", "openrouter", "bedrock"}
    assert {c.provider for c in decide(catalog, "kimi-k2").candidates} == {"groq", "together", "fireworks"}
    assert {c.provider for c in decide(catalog, "deepseek-v3").candidates} == {"together", "fireworks"}


@pytest.mark.parametrize(
    ("strategy", "first"), [("lowest_cost", None), ("fastest", "cerebras"), ("max_reliability", "groq")]
)
def test_the_strategy_orders_the_hosts_of_a_bare_id(catalog: Catalog, strategy: str, first: str | None) -> None:
    candidates = decide(catalog, "gpt-oss-120b", strategy=strategy, prompt_tokens=500).candidates
    assert {c.provider for c in candidates} == set(GPT_OSS_HOSTS)
    if first is not None:
        assert candidates[0].provider == first
    else:
        # Cheapest host first; the dearest (Cerebras' and OpenRouter's bound) last.
        costs = [c.estimated_cost_usd for c in candidates]
        assert costs == sorted(costs) and costs[0] < costs[-1]
        assert {c.provider for c in candidates[-2:]} == {"cerebras", "openrouter"}


@pytest.mark.parametrize(
    ("model", "host", "upstream"),
    [
        ("gpt-oss-120b", "cerebras", "gpt-oss-120b"),
        ("gpt-oss-120b", "openrouter", "openai/gpt-oss-120b"),
        ("llama-3.3-70b", "groq", "llama-3.3-70b-versatile"),
        ("llama-3.3-70b", "fireworks", "accounts/fireworks/models/llama-v3p3-70b-instruct"),
        ("deepseek-v3", "fireworks", "accounts/fireworks/models/deepseek-v3-0324"),
        ("kimi-k2", "together", "moonshotai/Kimi-K2-Instruct-0905"),
    ],
)
def test_one_connected_host_still_serves_the_bare_id(catalog: Catalog, model: str, host: str, upstream: str) -> None:
    decision = decide(catalog, model, connected_providers=frozenset({host}))
    (only,) = decision.candidates
    assert (only.provider, only.model, only.upstream_model) == (host, model, upstream)


def test_a_bare_id_on_no_connected_host_names_every_host(catalog: Catalog) -> None:
    refusal = refuse(catalog, "deepseek-v3", connected_providers=frozenset({"perplexity", "groq"}))
    assert refusal.code is RefusalCode.PROVIDER_NOT_CONNECTED
    assert "PUT /api/v1/account/keys/together" in refusal.message
    assert "PUT /api/v1/account/keys/fireworks" in refusal.message


def test_a_host_that_refuses_a_parameter_is_skipped_not_the_model(catalog: Catalog) -> None:
    # Cerebras refuses frequency_penalty; the other hosts of gpt-oss-120b take it.
    decision = decide(catalog, "gpt-oss-120b", params=frozenset({"frequency_penalty"}), explain=True)
    assert {c.provider for c in decision.candidates} == set(GPT_OSS_HOSTS) - {"cerebras"}
    assert [(e.provider, e.reason) for e in decision.excluded if e.model == "gpt-oss-120b"] == [
        ("cerebras", Reason.UNSUPPORTED_PARAM)
    ]


def test_a_hosts_own_id_and_a_pin_choose_one_host(catalog: Catalog) -> None:
    (groq,) = decide(catalog, "llama-3.3-70b-versatile").candidates
    assert (groq.provider, groq.model, groq.upstream_model) == ("groq", "llama-3.3-70b", "llama-3.3-70b-versatile")
    (pinned,) = decide(catalog, "cerebras:gpt-oss-120b").candidates
    assert (pinned.provider, pinned.upstream_model) == ("cerebras", "gpt-oss-120b")


def test_perplexity_sonar_is_routed_without_tools(catalog: Catalog) -> None:
    (sonar,) = decide(catalog, "sonar", prompt_tokens=100).candidates
    assert (sonar.provider, sonar.upstream_model) == ("perplexity", "sonar")
    refusal = refuse(catalog, "sonar-pro", needs_tools=True)
    assert (refusal.code, refusal.param) == (RefusalCode.NO_ELIGIBLE_MODEL, "tools")


def test_without_a_strategy_the_hosts_are_ranked_balanced(catalog: Catalog) -> None:
    # SPEC §11: `stepblend_strategy` (default `balanced`) ranks a bare id's hosts.
    def order(**features: object) -> list[str]:
        return [c.provider for c in decide(catalog, "gpt-oss-120b", prompt_tokens=500, **features).candidates]

    assert order() == order(strategy="balanced")
    assert order() != order(strategy="lowest_cost")  # else this test could not tell them apart
