"""`python -m stepblend.mockprovider [--host H] [--port N] [--prefix /v1] [--reject-key K ...]`"""

from __future__ import annotations

import argparse

from stepblend.mockprovider.server import run


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m stepblend.mockprovider", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9001)
    parser.add_argument("--prefix", default="/v1", help="path prefix before /chat/completions")
    parser.add_argument(
        "--reject-key", action="append", default=[], help="an API key answered with 401 invalid_api_key"
    )
    args = parser.parse_args(argv)
    run(args.host, args.port, args.prefix, reject_keys=args.reject_key)


if __name__ == "__main__":
    main()
