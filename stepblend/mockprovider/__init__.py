"""A mock provider, faithful to OpenAI's Chat Completions wire format (and each
OpenAI-compatible vendor's variant of it) and to Anthropic's Messages API.

Used by the tests, by `stepblend up --demo` and by the benchmark:

    python -m stepblend.mockprovider --port 9001          # blocking, prints nothing
    run(host, port, prefix)                               # the same from Python
    await serve(host, port, prefix, ready=callback)       # in the running event loop
    mock = start_in_thread(port=0); mock.base_url; mock.stop()

Point a provider at it with `STEPBLEND_OPENAI_BASE_URL=http://127.0.0.1:9001/v1`,
`STEPBLEND_GROQ_BASE_URL=http://127.0.0.1:9001/groq/v1` (likewise deepseek, mistral,
together, xai, local) and `STEPBLEND_ANTHROPIC_BASE_URL=http://127.0.0.1:9001`.
The control API for tests is described in `stepblend.mockprovider.app`.
"""

from stepblend.mockprovider.app import MockProvider
from stepblend.mockprovider.behaviour import Behaviour
from stepblend.mockprovider.server import (
    RunningMockProvider,
    run,
    serve,
    start_in_thread,
)

__all__ = ["Behaviour", "MockProvider", "RunningMockProvider", "run", "serve", "start_in_thread"]
