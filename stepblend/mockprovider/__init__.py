"""A mock OpenAI-compatible provider, faithful to OpenAI's Chat Completions wire format.

Used by the tests, by `stepblend up --demo` and by the benchmark:

    python -m stepblend.mockprovider --port 9001          # blocking, prints nothing
    run(host, port, prefix)                               # the same from Python
    await serve(host, port, prefix, ready=callback)       # in the running event loop
    mock = start_in_thread(port=0); mock.base_url; mock.stop()

Point a provider at it with `STEPBLEND_OPENAI_BASE_URL=http://127.0.0.1:9001/v1`.
The control API for tests is described in `stepblend.mockprovider.app`.
"""

from stepblend.mockprovider.app import Behaviour, MockProvider
from stepblend.mockprovider.server import (
    RunningMockProvider,
    run,
    serve,
    start_in_thread,
)

__all__ = ["Behaviour", "MockProvider", "RunningMockProvider", "run", "serve", "start_in_thread"]
