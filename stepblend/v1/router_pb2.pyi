from stepblend.v1 import mux_pb2 as _mux_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RequestFeatures(_message.Message):
    __slots__ = ("prompt_tokens", "max_output_tokens", "needs_tools", "needs_vision", "needs_json_schema", "params", "longest_input_tokens", "inputs")
    PROMPT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    MAX_OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    NEEDS_TOOLS_FIELD_NUMBER: _ClassVar[int]
    NEEDS_VISION_FIELD_NUMBER: _ClassVar[int]
    NEEDS_JSON_SCHEMA_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    LONGEST_INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    prompt_tokens: int
    max_output_tokens: int
    needs_tools: bool
    needs_vision: bool
    needs_json_schema: bool
    params: _containers.RepeatedScalarFieldContainer[str]
    longest_input_tokens: int
    inputs: int
    def __init__(self, prompt_tokens: _Optional[int] = ..., max_output_tokens: _Optional[int] = ..., needs_tools: _Optional[bool] = ..., needs_vision: _Optional[bool] = ..., needs_json_schema: _Optional[bool] = ..., params: _Optional[_Iterable[str]] = ..., longest_input_tokens: _Optional[int] = ..., inputs: _Optional[int] = ...) -> None: ...

class RouteRequest(_message.Message):
    __slots__ = ("model", "strategy", "features", "max_cost_usd", "connected_providers", "explain", "allowed_models", "kind")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    STRATEGY_FIELD_NUMBER: _ClassVar[int]
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    MAX_COST_USD_FIELD_NUMBER: _ClassVar[int]
    CONNECTED_PROVIDERS_FIELD_NUMBER: _ClassVar[int]
    EXPLAIN_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_MODELS_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    model: str
    strategy: str
    features: RequestFeatures
    max_cost_usd: str
    connected_providers: _containers.RepeatedScalarFieldContainer[str]
    explain: bool
    allowed_models: _containers.RepeatedScalarFieldContainer[str]
    kind: str
    def __init__(self, model: _Optional[str] = ..., strategy: _Optional[str] = ..., features: _Optional[_Union[RequestFeatures, _Mapping]] = ..., max_cost_usd: _Optional[str] = ..., connected_providers: _Optional[_Iterable[str]] = ..., explain: _Optional[bool] = ..., allowed_models: _Optional[_Iterable[str]] = ..., kind: _Optional[str] = ...) -> None: ...

class Candidate(_message.Message):
    __slots__ = ("provider", "model", "upstream_model", "estimated_cost_usd", "input_price_per_mtok", "output_price_per_mtok", "output_budget", "param_renames", "unsupported_params", "score", "cached_input_price_per_mtok", "prompt_tokens", "worst_cost_usd")
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
    SCORE_FIELD_NUMBER: _ClassVar[int]
    CACHED_INPUT_PRICE_PER_MTOK_FIELD_NUMBER: _ClassVar[int]
    PROMPT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    WORST_COST_USD_FIELD_NUMBER: _ClassVar[int]
    provider: str
    model: str
    upstream_model: str
    estimated_cost_usd: str
    input_price_per_mtok: str
    output_price_per_mtok: str
    output_budget: int
    param_renames: _containers.ScalarMap[str, str]
    unsupported_params: _containers.RepeatedScalarFieldContainer[str]
    score: float
    cached_input_price_per_mtok: str
    prompt_tokens: int
    worst_cost_usd: str
    def __init__(self, provider: _Optional[str] = ..., model: _Optional[str] = ..., upstream_model: _Optional[str] = ..., estimated_cost_usd: _Optional[str] = ..., input_price_per_mtok: _Optional[str] = ..., output_price_per_mtok: _Optional[str] = ..., output_budget: _Optional[int] = ..., param_renames: _Optional[_Mapping[str, str]] = ..., unsupported_params: _Optional[_Iterable[str]] = ..., score: _Optional[float] = ..., cached_input_price_per_mtok: _Optional[str] = ..., prompt_tokens: _Optional[int] = ..., worst_cost_usd: _Optional[str] = ...) -> None: ...

class Exclusion(_message.Message):
    __slots__ = ("provider", "model", "reason", "detail")
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    provider: str
    model: str
    reason: str
    detail: str
    def __init__(self, provider: _Optional[str] = ..., model: _Optional[str] = ..., reason: _Optional[str] = ..., detail: _Optional[str] = ...) -> None: ...

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
    __slots__ = ("strategy_used", "candidates", "catalog_version", "excluded")
    STRATEGY_USED_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    CATALOG_VERSION_FIELD_NUMBER: _ClassVar[int]
    EXCLUDED_FIELD_NUMBER: _ClassVar[int]
    strategy_used: str
    candidates: _containers.RepeatedCompositeFieldContainer[Candidate]
    catalog_version: str
    excluded: _containers.RepeatedCompositeFieldContainer[Exclusion]
    def __init__(self, strategy_used: _Optional[str] = ..., candidates: _Optional[_Iterable[_Union[Candidate, _Mapping]]] = ..., catalog_version: _Optional[str] = ..., excluded: _Optional[_Iterable[_Union[Exclusion, _Mapping]]] = ...) -> None: ...

class RouteResponse(_message.Message):
    __slots__ = ("decision", "refusal")
    DECISION_FIELD_NUMBER: _ClassVar[int]
    REFUSAL_FIELD_NUMBER: _ClassVar[int]
    decision: RouteDecision
    refusal: RouteRefusal
    def __init__(self, decision: _Optional[_Union[RouteDecision, _Mapping]] = ..., refusal: _Optional[_Union[RouteRefusal, _Mapping]] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("id", "provider", "upstream_model", "input_price_per_mtok", "output_price_per_mtok", "context_window", "max_output_tokens", "tools", "vision", "json_schema", "aliases", "kind", "dimensions")
    ID_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    UPSTREAM_MODEL_FIELD_NUMBER: _ClassVar[int]
    INPUT_PRICE_PER_MTOK_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_PRICE_PER_MTOK_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_WINDOW_FIELD_NUMBER: _ClassVar[int]
    MAX_OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    TOOLS_FIELD_NUMBER: _ClassVar[int]
    VISION_FIELD_NUMBER: _ClassVar[int]
    JSON_SCHEMA_FIELD_NUMBER: _ClassVar[int]
    ALIASES_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    DIMENSIONS_FIELD_NUMBER: _ClassVar[int]
    id: str
    provider: str
    upstream_model: str
    input_price_per_mtok: str
    output_price_per_mtok: str
    context_window: int
    max_output_tokens: int
    tools: bool
    vision: bool
    json_schema: bool
    aliases: _containers.RepeatedScalarFieldContainer[str]
    kind: str
    dimensions: int
    def __init__(self, id: _Optional[str] = ..., provider: _Optional[str] = ..., upstream_model: _Optional[str] = ..., input_price_per_mtok: _Optional[str] = ..., output_price_per_mtok: _Optional[str] = ..., context_window: _Optional[int] = ..., max_output_tokens: _Optional[int] = ..., tools: _Optional[bool] = ..., vision: _Optional[bool] = ..., json_schema: _Optional[bool] = ..., aliases: _Optional[_Iterable[str]] = ..., kind: _Optional[str] = ..., dimensions: _Optional[int] = ...) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models", "catalog_version")
    MODELS_FIELD_NUMBER: _ClassVar[int]
    CATALOG_VERSION_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[ModelInfo]
    catalog_version: str
    def __init__(self, models: _Optional[_Iterable[_Union[ModelInfo, _Mapping]]] = ..., catalog_version: _Optional[str] = ...) -> None: ...
