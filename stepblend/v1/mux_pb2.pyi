from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class MuxRequest(_message.Message):
    __slots__ = ("id", "payload", "timeout_s", "trace", "cancel", "more")
    class TraceEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    TRACE_FIELD_NUMBER: _ClassVar[int]
    CANCEL_FIELD_NUMBER: _ClassVar[int]
    MORE_FIELD_NUMBER: _ClassVar[int]
    id: int
    payload: bytes
    timeout_s: float
    trace: _containers.ScalarMap[str, str]
    cancel: bool
    more: _containers.RepeatedCompositeFieldContainer[MuxRequest]
    def __init__(self, id: _Optional[int] = ..., payload: _Optional[bytes] = ..., timeout_s: _Optional[float] = ..., trace: _Optional[_Mapping[str, str]] = ..., cancel: _Optional[bool] = ..., more: _Optional[_Iterable[_Union[MuxRequest, _Mapping]]] = ...) -> None: ...

class MuxResponse(_message.Message):
    __slots__ = ("id", "payload", "code", "detail", "more", "draining")
    ID_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    MORE_FIELD_NUMBER: _ClassVar[int]
    DRAINING_FIELD_NUMBER: _ClassVar[int]
    id: int
    payload: bytes
    code: int
    detail: str
    more: _containers.RepeatedCompositeFieldContainer[MuxResponse]
    draining: bool
    def __init__(self, id: _Optional[int] = ..., payload: _Optional[bytes] = ..., code: _Optional[int] = ..., detail: _Optional[str] = ..., more: _Optional[_Iterable[_Union[MuxResponse, _Mapping]]] = ..., draining: _Optional[bool] = ...) -> None: ...
