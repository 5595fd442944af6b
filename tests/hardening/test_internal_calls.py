"""Internal gRPC is closed to callers without the internal token (issue 9, item 4).

On a running system (`stepblend up`'s supervisor, which generates
STEPBLEND_INTERNAL_TOKEN into the data dir), every RPC of router, providers and
billing — `Keys.Put`, `Providers.Execute`, `Billing.Admit` and `Router.Route` among
them — answers UNAUTHENTICATED without the token and with a wrong one, and does
nothing: a key "stored" that way is not there. Only the standard health service
stays open, for probes.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import message_factory
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.common.grpcio import TOKEN_HEADER
from stepblend.v1 import (
    billing_pb2,
    billing_pb2_grpc,
    mux_pb2,
    providers_pb2,
    providers_pb2_grpc,
    router_pb2,
    router_pb2_grpc,
)
from tests.hardening.stack import Stack, running

SERVICES = {
    "router": [(router_pb2, router_pb2_grpc, "Router")],
    "providers": [(providers_pb2, providers_pb2_grpc, "Providers"), (providers_pb2, providers_pb2_grpc, "Keys")],
    "billing": [(billing_pb2, billing_pb2_grpc, "Billing")],
}
METHODS = [
    (address, module, grpc_module, service, method)
    for address, services in SERVICES.items()
    for module, grpc_module, service in services
    for method in module.DESCRIPTOR.services_by_name[service].methods
]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running(Path(tmp_path_factory.mktemp("internal"))) as system:
        yield system


@pytest.fixture(scope="module")
def victim(stack: Stack) -> str:
    """An account with no key stored, on the free plan: forged calls must leave it so."""
    return stack.control().create_account("victim@example.com", "free")


def _example(module: Any, method: Any, account_id: str) -> Any:
    """A plausible request for `method`, so that only the token is wrong."""
    execute = providers_pb2.ExecuteRequest(
        request_id="forged-1",
        account_id=account_id,
        candidates=[router_pb2.Candidate(provider="openai", model="gpt-4o-mini", upstream_model="gpt-4o-mini")],
        body=b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}',
    )
    route = router_pb2.RouteRequest(model="gpt-4o-mini", connected_providers=["openai"])
    examples: dict[str, Any] = {
        "Put": providers_pb2.PutKeyRequest(account_id=account_id, provider="openai", api_key="sk-forged-0000000000"),
        "Execute": execute,
        "CompleteStream": mux_pb2.MuxRequest(id=1, payload=execute.SerializeToString(), timeout_s=10),
        "RouteStream": mux_pb2.MuxRequest(id=1, payload=route.SerializeToString(), timeout_s=10),
        "Admit": billing_pb2.AdmitRequest(account_id=account_id, request_id="forged-2"),
        "Route": route,
        "SetPlan": billing_pb2.SetPlanRequest(account_id=account_id, plan="enterprise"),
        "SetDisabled": billing_pb2.SetDisabledRequest(account_id=account_id, disabled=True),
        "GetAccount": billing_pb2.GetAccountRequest(account_id=account_id),
    }
    if method.name in examples:
        return examples[method.name]
    return message_factory.GetMessageClass(method.input_type)()


def _call(stack: Stack, address: str, grpc_module: Any, service: str, method: Any, request: Any, metadata: Any) -> Any:
    with grpc.insecure_channel(stack.addresses[address]) as channel:
        stub = getattr(grpc_module, f"{service}Stub")(channel)
        call = getattr(stub, method.name)
        if method.client_streaming:
            request = iter([request])
        if method.server_streaming:
            return list(call(request, metadata=metadata, timeout=10))
        return call(request, metadata=metadata, timeout=10)


@pytest.mark.parametrize(
    "metadata",
    [None, ((TOKEN_HEADER, "wrong-token"),), ((TOKEN_HEADER, ""),)],
    ids=["no-token", "wrong-token", "empty-token"],
)
@pytest.mark.parametrize(
    ("address", "module", "grpc_module", "service", "method"),
    METHODS,
    ids=[f"{service}.{method.name}" for _, _, _, service, method in METHODS],
)
def test_every_internal_rpc_refuses_a_caller_without_the_token(
    stack: Stack, victim: str, address: str, module: Any, grpc_module: Any, service: str, method: Any, metadata: Any
) -> None:
    account_id = victim
    with pytest.raises(grpc.RpcError) as refused:
        _call(stack, address, grpc_module, service, method, _example(module, method, account_id), metadata)
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED, refused.value


def test_forged_calls_changed_nothing_and_the_token_opens_the_door(stack: Stack, victim: str) -> None:
    account_id = victim
    good = ((TOKEN_HEADER, stack.internal_token),)
    with grpc.insecure_channel(stack.addresses["providers"]) as channel:
        keys = providers_pb2_grpc.KeysStub(channel)
        assert (
            list(keys.List(providers_pb2.ListKeysRequest(account_id=account_id), metadata=good, timeout=10).keys) == []
        )
    with grpc.insecure_channel(stack.addresses["billing"]) as channel:
        account = (
            billing_pb2_grpc.BillingStub(channel)
            .GetAccount(billing_pb2.GetAccountRequest(account_id=account_id), metadata=good, timeout=10)
            .account
        )
        assert account.plan == "free" and not account.disabled and account.requests_this_month == 0
    with grpc.insecure_channel(stack.addresses["router"]) as channel:
        decision = router_pb2_grpc.RouterStub(channel).Route(
            router_pb2.RouteRequest(model="gpt-4o-mini", connected_providers=["openai"]), metadata=good, timeout=10
        )
        assert decision.WhichOneof("result") == "decision"
    # Health stays open, for probes.
    for address in SERVICES:
        with grpc.insecure_channel(stack.addresses[address]) as channel:
            status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10).status
            assert status == health_pb2.HealthCheckResponse.SERVING


def test_an_internal_service_will_not_start_without_the_token() -> None:
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("STEPBLEND_")}
    for name in ("router", "providers", "billing"):
        result = subprocess.run(
            [sys.executable, "-m", "stepblend", "serve", name], env=env, capture_output=True, text=True, timeout=60
        )
        assert result.returncode != 0
        assert "STEPBLEND_INTERNAL_TOKEN is not set" in result.stderr
