from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ApiKeyLimits(_message.Message):
    __slots__ = ("expires_at", "monthly_request_limit", "monthly_budget_usd", "rpm", "allowed_models")
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    MONTHLY_REQUEST_LIMIT_FIELD_NUMBER: _ClassVar[int]
    MONTHLY_BUDGET_USD_FIELD_NUMBER: _ClassVar[int]
    RPM_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_MODELS_FIELD_NUMBER: _ClassVar[int]
    expires_at: int
    monthly_request_limit: int
    monthly_budget_usd: str
    rpm: int
    allowed_models: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, expires_at: _Optional[int] = ..., monthly_request_limit: _Optional[int] = ..., monthly_budget_usd: _Optional[str] = ..., rpm: _Optional[int] = ..., allowed_models: _Optional[_Iterable[str]] = ...) -> None: ...

class ApiKey(_message.Message):
    __slots__ = ("id", "account_id", "name", "hint", "created", "limits", "last_used", "revoked", "requests_this_month", "spend_this_month_usd")
    ID_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    HINT_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    LAST_USED_FIELD_NUMBER: _ClassVar[int]
    REVOKED_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_THIS_MONTH_FIELD_NUMBER: _ClassVar[int]
    SPEND_THIS_MONTH_USD_FIELD_NUMBER: _ClassVar[int]
    id: str
    account_id: str
    name: str
    hint: str
    created: int
    limits: ApiKeyLimits
    last_used: int
    revoked: bool
    requests_this_month: int
    spend_this_month_usd: str
    def __init__(self, id: _Optional[str] = ..., account_id: _Optional[str] = ..., name: _Optional[str] = ..., hint: _Optional[str] = ..., created: _Optional[int] = ..., limits: _Optional[_Union[ApiKeyLimits, _Mapping]] = ..., last_used: _Optional[int] = ..., revoked: _Optional[bool] = ..., requests_this_month: _Optional[int] = ..., spend_this_month_usd: _Optional[str] = ...) -> None: ...

class CreateApiKeyRequest(_message.Message):
    __slots__ = ("account_id", "name", "digest", "hint", "limits")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    HINT_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    name: str
    digest: str
    hint: str
    limits: ApiKeyLimits
    def __init__(self, account_id: _Optional[str] = ..., name: _Optional[str] = ..., digest: _Optional[str] = ..., hint: _Optional[str] = ..., limits: _Optional[_Union[ApiKeyLimits, _Mapping]] = ...) -> None: ...

class ListApiKeysRequest(_message.Message):
    __slots__ = ("account_id",)
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    def __init__(self, account_id: _Optional[str] = ...) -> None: ...

class ListApiKeysResponse(_message.Message):
    __slots__ = ("keys",)
    KEYS_FIELD_NUMBER: _ClassVar[int]
    keys: _containers.RepeatedCompositeFieldContainer[ApiKey]
    def __init__(self, keys: _Optional[_Iterable[_Union[ApiKey, _Mapping]]] = ...) -> None: ...

class RevokeApiKeyRequest(_message.Message):
    __slots__ = ("account_id", "id")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    id: str
    def __init__(self, account_id: _Optional[str] = ..., id: _Optional[str] = ...) -> None: ...

class VerifyApiKeyRequest(_message.Message):
    __slots__ = ("digest",)
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    digest: str
    def __init__(self, digest: _Optional[str] = ...) -> None: ...

class VerifiedApiKey(_message.Message):
    __slots__ = ("key", "account_disabled")
    KEY_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_DISABLED_FIELD_NUMBER: _ClassVar[int]
    key: ApiKey
    account_disabled: bool
    def __init__(self, key: _Optional[_Union[ApiKey, _Mapping]] = ..., account_disabled: _Optional[bool] = ...) -> None: ...

class SetBudgetRequest(_message.Message):
    __slots__ = ("account_id", "monthly_budget_usd")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    MONTHLY_BUDGET_USD_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    monthly_budget_usd: str
    def __init__(self, account_id: _Optional[str] = ..., monthly_budget_usd: _Optional[str] = ...) -> None: ...

class VerifyPasswordRequest(_message.Message):
    __slots__ = ("email", "password", "client_address")
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    PASSWORD_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    email: str
    password: str
    client_address: str
    def __init__(self, email: _Optional[str] = ..., password: _Optional[str] = ..., client_address: _Optional[str] = ...) -> None: ...

class VerifyPasswordResponse(_message.Message):
    __slots__ = ("account",)
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    account: Account
    def __init__(self, account: _Optional[_Union[Account, _Mapping]] = ...) -> None: ...

class SetPlanRequest(_message.Message):
    __slots__ = ("account_id", "email", "plan")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    PLAN_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    email: str
    plan: str
    def __init__(self, account_id: _Optional[str] = ..., email: _Optional[str] = ..., plan: _Optional[str] = ...) -> None: ...

class SetPlanResponse(_message.Message):
    __slots__ = ("account",)
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    account: Account
    def __init__(self, account: _Optional[_Union[Account, _Mapping]] = ...) -> None: ...

class SetDisabledRequest(_message.Message):
    __slots__ = ("account_id", "email", "disabled")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    DISABLED_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    email: str
    disabled: bool
    def __init__(self, account_id: _Optional[str] = ..., email: _Optional[str] = ..., disabled: _Optional[bool] = ...) -> None: ...

class SetDisabledResponse(_message.Message):
    __slots__ = ("account",)
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    account: Account
    def __init__(self, account: _Optional[_Union[Account, _Mapping]] = ...) -> None: ...

class AdmitRequest(_message.Message):
    __slots__ = ("account_id", "request_id", "api_key_id", "worst_cost_usd")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    API_KEY_ID_FIELD_NUMBER: _ClassVar[int]
    WORST_COST_USD_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    request_id: str
    api_key_id: str
    worst_cost_usd: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, account_id: _Optional[str] = ..., request_id: _Optional[str] = ..., api_key_id: _Optional[str] = ..., worst_cost_usd: _Optional[_Iterable[str]] = ...) -> None: ...

class AdmitResponse(_message.Message):
    __slots__ = ("allowed", "plan", "limit", "remaining", "reason", "month_start", "fits", "retry_after_s", "budget_owner", "budget_left_usd")
    ALLOWED_FIELD_NUMBER: _ClassVar[int]
    PLAN_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    REMAINING_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    MONTH_START_FIELD_NUMBER: _ClassVar[int]
    FITS_FIELD_NUMBER: _ClassVar[int]
    RETRY_AFTER_S_FIELD_NUMBER: _ClassVar[int]
    BUDGET_OWNER_FIELD_NUMBER: _ClassVar[int]
    BUDGET_LEFT_USD_FIELD_NUMBER: _ClassVar[int]
    allowed: bool
    plan: str
    limit: int
    remaining: int
    reason: str
    month_start: int
    fits: _containers.RepeatedScalarFieldContainer[bool]
    retry_after_s: int
    budget_owner: str
    budget_left_usd: str
    def __init__(self, allowed: _Optional[bool] = ..., plan: _Optional[str] = ..., limit: _Optional[int] = ..., remaining: _Optional[int] = ..., reason: _Optional[str] = ..., month_start: _Optional[int] = ..., fits: _Optional[_Iterable[bool]] = ..., retry_after_s: _Optional[int] = ..., budget_owner: _Optional[str] = ..., budget_left_usd: _Optional[str] = ...) -> None: ...

class LeaseRequest(_message.Message):
    __slots__ = ("lease_id", "account_id", "api_key_id", "gateway", "want", "worst_cost_usd")
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    API_KEY_ID_FIELD_NUMBER: _ClassVar[int]
    GATEWAY_FIELD_NUMBER: _ClassVar[int]
    WANT_FIELD_NUMBER: _ClassVar[int]
    WORST_COST_USD_FIELD_NUMBER: _ClassVar[int]
    lease_id: str
    account_id: str
    api_key_id: str
    gateway: str
    want: int
    worst_cost_usd: str
    def __init__(self, lease_id: _Optional[str] = ..., account_id: _Optional[str] = ..., api_key_id: _Optional[str] = ..., gateway: _Optional[str] = ..., want: _Optional[int] = ..., worst_cost_usd: _Optional[str] = ...) -> None: ...

class LeaseResponse(_message.Message):
    __slots__ = ("granted", "reason", "per_request", "plan", "limit", "remaining", "month_start", "admit_until", "granted_usd")
    GRANTED_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    PER_REQUEST_FIELD_NUMBER: _ClassVar[int]
    PLAN_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    REMAINING_FIELD_NUMBER: _ClassVar[int]
    MONTH_START_FIELD_NUMBER: _ClassVar[int]
    ADMIT_UNTIL_FIELD_NUMBER: _ClassVar[int]
    GRANTED_USD_FIELD_NUMBER: _ClassVar[int]
    granted: int
    reason: str
    per_request: bool
    plan: str
    limit: int
    remaining: int
    month_start: int
    admit_until: float
    granted_usd: str
    def __init__(self, granted: _Optional[int] = ..., reason: _Optional[str] = ..., per_request: _Optional[bool] = ..., plan: _Optional[str] = ..., limit: _Optional[int] = ..., remaining: _Optional[int] = ..., month_start: _Optional[int] = ..., admit_until: _Optional[float] = ..., granted_usd: _Optional[str] = ...) -> None: ...

class ReturnLeaseRequest(_message.Message):
    __slots__ = ("lease_id", "account_id", "admitted", "admitted_usd")
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    ADMITTED_FIELD_NUMBER: _ClassVar[int]
    ADMITTED_USD_FIELD_NUMBER: _ClassVar[int]
    lease_id: str
    account_id: str
    admitted: int
    admitted_usd: str
    def __init__(self, lease_id: _Optional[str] = ..., account_id: _Optional[str] = ..., admitted: _Optional[int] = ..., admitted_usd: _Optional[str] = ...) -> None: ...

class ReturnLeaseResponse(_message.Message):
    __slots__ = ("freed",)
    FREED_FIELD_NUMBER: _ClassVar[int]
    freed: int
    def __init__(self, freed: _Optional[int] = ...) -> None: ...

class CreateAccountRequest(_message.Message):
    __slots__ = ("email", "plan", "password", "client_address")
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    PLAN_FIELD_NUMBER: _ClassVar[int]
    PASSWORD_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    email: str
    plan: str
    password: str
    client_address: str
    def __init__(self, email: _Optional[str] = ..., plan: _Optional[str] = ..., password: _Optional[str] = ..., client_address: _Optional[str] = ...) -> None: ...

class CreateAccountResponse(_message.Message):
    __slots__ = ("account",)
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    account: Account
    def __init__(self, account: _Optional[_Union[Account, _Mapping]] = ...) -> None: ...

class GetAccountRequest(_message.Message):
    __slots__ = ("account_id", "email")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    email: str
    def __init__(self, account_id: _Optional[str] = ..., email: _Optional[str] = ...) -> None: ...

class GetAccountResponse(_message.Message):
    __slots__ = ("account",)
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    account: Account
    def __init__(self, account: _Optional[_Union[Account, _Mapping]] = ...) -> None: ...

class Account(_message.Message):
    __slots__ = ("account_id", "email", "plan", "disabled", "requests_this_month", "monthly_limit", "spend_this_month_usd", "monthly_budget_usd")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    EMAIL_FIELD_NUMBER: _ClassVar[int]
    PLAN_FIELD_NUMBER: _ClassVar[int]
    DISABLED_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_THIS_MONTH_FIELD_NUMBER: _ClassVar[int]
    MONTHLY_LIMIT_FIELD_NUMBER: _ClassVar[int]
    SPEND_THIS_MONTH_USD_FIELD_NUMBER: _ClassVar[int]
    MONTHLY_BUDGET_USD_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    email: str
    plan: str
    disabled: bool
    requests_this_month: int
    monthly_limit: int
    spend_this_month_usd: str
    monthly_budget_usd: str
    def __init__(self, account_id: _Optional[str] = ..., email: _Optional[str] = ..., plan: _Optional[str] = ..., disabled: _Optional[bool] = ..., requests_this_month: _Optional[int] = ..., monthly_limit: _Optional[int] = ..., spend_this_month_usd: _Optional[str] = ..., monthly_budget_usd: _Optional[str] = ...) -> None: ...

class ListUsageRequest(_message.Message):
    __slots__ = ("account_id", "limit", "api_key_id")
    ACCOUNT_ID_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    API_KEY_ID_FIELD_NUMBER: _ClassVar[int]
    account_id: str
    limit: int
    api_key_id: str
    def __init__(self, account_id: _Optional[str] = ..., limit: _Optional[int] = ..., api_key_id: _Optional[str] = ...) -> None: ...

class ListUsageResponse(_message.Message):
    __slots__ = ("account", "requests", "daily", "month")
    ACCOUNT_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    DAILY_FIELD_NUMBER: _ClassVar[int]
    MONTH_FIELD_NUMBER: _ClassVar[int]
    account: Account
    requests: _containers.RepeatedCompositeFieldContainer[UsageRecord]
    daily: _containers.RepeatedCompositeFieldContainer[DailyUsage]
    month: str
    def __init__(self, account: _Optional[_Union[Account, _Mapping]] = ..., requests: _Optional[_Iterable[_Union[UsageRecord, _Mapping]]] = ..., daily: _Optional[_Iterable[_Union[DailyUsage, _Mapping]]] = ..., month: _Optional[str] = ...) -> None: ...

class UsageRecord(_message.Message):
    __slots__ = ("request_id", "created", "model", "provider", "prompt_tokens", "completion_tokens", "cost_usd", "latency_ms", "outcome", "counted", "error_code", "dialect", "stream", "api_key_id")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    PROMPT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_TOKENS_FIELD_NUMBER: _ClassVar[int]
    COST_USD_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    COUNTED_FIELD_NUMBER: _ClassVar[int]
    ERROR_CODE_FIELD_NUMBER: _ClassVar[int]
    DIALECT_FIELD_NUMBER: _ClassVar[int]
    STREAM_FIELD_NUMBER: _ClassVar[int]
    API_KEY_ID_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    created: int
    model: str
    provider: str
    prompt_tokens: int
    completion_tokens: int
    cost_usd: str
    latency_ms: int
    outcome: str
    counted: bool
    error_code: str
    dialect: str
    stream: bool
    api_key_id: str
    def __init__(self, request_id: _Optional[str] = ..., created: _Optional[int] = ..., model: _Optional[str] = ..., provider: _Optional[str] = ..., prompt_tokens: _Optional[int] = ..., completion_tokens: _Optional[int] = ..., cost_usd: _Optional[str] = ..., latency_ms: _Optional[int] = ..., outcome: _Optional[str] = ..., counted: _Optional[bool] = ..., error_code: _Optional[str] = ..., dialect: _Optional[str] = ..., stream: _Optional[bool] = ..., api_key_id: _Optional[str] = ...) -> None: ...

class DailyUsage(_message.Message):
    __slots__ = ("date", "requests")
    DATE_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    date: str
    requests: int
    def __init__(self, date: _Optional[str] = ..., requests: _Optional[int] = ...) -> None: ...
