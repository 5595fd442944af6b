from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RequestFeatures(_message.Message):
    __slots__ = ("prompt_tokens", "max_output_tokens", "needs_tools", "needs_vision", "needs_json_schema")
    PROMPT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    MAX_OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    NEEDS_TOOLS_FIELD_NUMBER: _ClassVar[int]
    NEEDS_VISION_FIELD_NUMBER: _ClassVar[int]
    NEEDS_JSON_SCHEMA_FIELD_NUMBER: _ClassVar[int]
    prompt_tokens: int
    max_output_tokens: int
    needs_tools: bool
    needs_vision: bool
    needs_json_schema: bool
    def __init__(self, prompt_tokens: _Optional[int] = ..., max_output_tokens: _Optional[int] = ..., needs_tools: _Optional[bool] = ..., needs_vision: _Optional[bool] = ..., needs_json_schema: _Optional[bool] = ...) -> None: ...

class RouteRequest(_message.Message):
    __slots__ = ("model", "strategy", "features", "max_cost_usd", "connected_providers")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    MAX_COST_USD_FIELD_NUMBER: _ClassVar[int]
    CONNECTED_PROVIDERS_FIELD_NUMBER: _ClassVar[int]
    model: str
    strategy: str
    features: RequestFeatures
    max_cost_usd: str
    connected_providers: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, model: _Optional[str] = ..., strategy: _Optional[str] = ..., features: _Optional[_Union[RequestFeatures, _Mapping]] = ..., max_cost_usd: _Optional[str] = ..., connected_providers: _Optional[_Iterable[str]] = ...) -> None: ...

class Candidate(_message.Message):
    __slots__ = ("provider", "model", "upstream_model", "estimated_cost_usd", "input_price_per_mtok", "output_price_per_mtok", "output_budget", "param_renames", "unsupported_params")
    class ParamRenamesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    UPSTREAM_MODEL_FIELD_NUMBER: _ClassVar[int]
    ESTIMATED_COST_USD_FIELD_NUMBER: _ClassVar[int]
    INPUT_PRICE_PER_MTOK_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_PRICE_PER_MTOK_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_BUDGET_FIELD_NUMBER: _ClassVar[int]
    PARAM_RENAMES_FIELD_NUMBER: _ClassVar[int]
    UNSUPPORTED_PARAMS_FIELD_NUMBER: _ClassVar[int]
    provider: str
    model: str
    upstream_model: str
    estimated_cost_usd: str
    input_price_per_mtok: str
    output_price_per_mtok: str
    output_budget: int
    param_renames: _containers.ScalarMap[str, str]
    unsupported_params: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, provider: _Optional[str] = ..., model: _Optional[str] = ..., upstream_model: _Optional[str] = ..., estimated_cost_usd: _Optional[str] = ..., input_price_per_mtok: _Optional[str] = ..., output_price_per_mtok: _Optional[str] = ..., output_budget: _Optional[int] = ..., param_renames: _Optional[_Mapping[str, str]] = ..., unsupported_params: _Optional[_Iterable[str]] = ...) -> None: ...

class RouteRefusal(_message.Message):
    __slots__ = ("code", "message", "param")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    PARAM_FIELD_NUMBER: _ClassVar[int]
    code: str
    message: str
    param: str
    def __init__(self, code: _Optional[str] = ..., message: _Optional[str] = ..., param: _Optional[str] = ...) -> None: ...

class RouteDecision(_message.Message):
    __slots__ = ("strategy_used", "candidates", "catalog_version")
    STRATEGY_USED_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    CATALOG_VERSION_FIELD_NUMBER: _ClassVar[int]
    strategy_used: str
    candidates: _containers.RepeatedCompositeFieldContainer[Candidate]
    catalog_version: str
    def __init__(self, strategy_used: _Optional[str] = ..., candidates: _Optional[_Iterable[_Union[Candidate, _Mapping]]] = ..., catalog_version: _Optional[str] = ...) -> None: ...

class RouteResponse(_message.Message):
    __slots__ = ("decision", "refusal")
    DECISION_FIELD_NUMBER: _ClassVar[int]
    REFUSAL_FIELD_NUMBER: _ClassVar[int]
    decision: RouteDecision
    refusal: RouteRefusal
    def __init__(self, decision: _Optional[_Union[RouteDecision, _Mapping]] = ..., refusal: _Optional[_Union[RouteRefusal, _Mapping]] = ...) -> None: ...
