"""The OpenAI Responses API front door (SPEC.md §10) as a `Codec`.

Stateless: a request is translated into the internal chat completions request
(`responses_parse`, whose docstring lists what is translated and what refused), so
any model of any provider serves it through the one pipeline; a stream's events
are made by `responses_stream`. This module renders a whole answer — providers'
`chat.completion` as a `response` object — and errors, in OpenAI's shape.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response

from services.gateway.codecs.base import Answer, Parsed
from services.gateway.codecs.responses_parse import parse
from services.gateway.codecs.responses_render import call_item, incomplete_reason, message_item, response_object, usage
from services.gateway.codecs.responses_stream import ResponsesStream
from services.gateway.errors import ApiError

__all__ = ["ResponsesCodec"]


class ResponsesCodec:
    dialect = "openai_responses"

    def parse(self, raw: bytes) -> Parsed:
        return parse(raw)

    def completion(self, body: bytes, answer: Answer, parsed: Parsed) -> bytes:
        completion = orjson.loads(body)
        choice = (completion.get("choices") or [{}])[0]
        message = choice.get("message") or {}
        finish = choice.get("finish_reason")
        status = "incomplete" if incomplete_reason(finish) else "completed"
        output: list[dict[str, Any]] = []
        calls = message.get("tool_calls") or []
        if message.get("content") or not calls:
            output.append(message_item(answer, message.get("content") or "", status))
        for call in calls:
            function = call.get("function") or {}
            output.append(
                call_item(
                    answer,
                    len(output),
                    call.get("id") or "",
                    function.get("name") or "",
                    function.get("arguments") or "",
                    status,
                )
            )
        result = response_object(
            answer,
            parsed,
            status,
            output,
            finish_reason=finish,
            usage=usage(answer.tokens, completion.get("usage")),
        )
        return orjson.dumps(result)

    def stream(self, answer: Answer, parsed: Parsed) -> ResponsesStream:
        return ResponsesStream(answer, parsed)

    def error(self, error: ApiError) -> Response:
        return error.response()
