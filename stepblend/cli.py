"""The `stepblend` command line (SPEC.md §6). Output is the bare value, so
scripts can capture it; errors go to stderr with a non-zero exit."""

from __future__ import annotations

import argparse
import getpass
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .control import Control


def _data_dir(args: argparse.Namespace) -> Path:
    return Path(args.data_dir or os.environ.get("STEPBLEND_DATA_DIR") or ".stepblend")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stepblend", description="StepBlend, the LLM routing gateway.")
    parser.add_argument("--data-dir", help="data dir (default $STEPBLEND_DATA_DIR or .stepblend)")
    commands = parser.add_subparsers(dest="command", required=True)

    up = commands.add_parser("up", help="run the whole system on this machine")
    up.add_argument("--port", type=int, default=int(os.environ.get("STEPBLEND_PORT") or 8080))
    up.add_argument("--data-dir", dest="data_dir_up")
    up.add_argument("--demo", action="store_true", help="also run a local demo provider and print a demo token")
    up.add_argument(
        "--workers",
        help="gateway and providers processes (default $STEPBLEND_WORKERS or the machine's cores)",
    )

    serve = commands.add_parser("serve", help="run one service in the foreground")
    serve.add_argument("service", choices=["gateway", "router", "providers", "billing"])

    account = commands.add_parser("account", help="manage accounts").add_subparsers(dest="action", required=True)
    create = account.add_parser("create", help="create an account and print its token")
    create.add_argument("email")
    create.add_argument("--plan", default="free")
    create.add_argument("--password", action="store_true", help="ask for a password so the account can sign in")

    set_plan = account.add_parser("set-plan", help="change an account's plan")
    set_plan.add_argument("email")
    set_plan.add_argument("plan")
    disable = account.add_parser("disable", help="disable an account: its tokens stop working at once")
    disable.add_argument("email")
    enable = account.add_parser("enable", help="enable a disabled account again")
    enable.add_argument("email")

    token = commands.add_parser("token", help="print a fresh token for an account")
    token.add_argument("email")

    keys = commands.add_parser("keys", help="manage provider keys").add_subparsers(dest="action", required=True)
    key_set = keys.add_parser("set", help="connect a provider key for an account")
    key_set.add_argument("email")
    key_set.add_argument("provider")
    key_set.add_argument(
        "api_key",
        help="the key, or - to read it from standard input (out of ps and shell history); for azure, "
        'the JSON object {"api_key", "endpoint", "deployments"}',
    )
    key_list = keys.add_parser("list", help="list an account's connected providers, keys masked")
    key_list.add_argument("email")
    key_delete = keys.add_parser("delete", help="disconnect a provider key from an account")
    key_delete.add_argument("email")
    key_delete.add_argument("provider")
    rotate = keys.add_parser(
        "rotate", help="re-encrypt every stored key under a new key-encryption key", add_help=False
    )
    rotate.add_argument("rotate_args", nargs=argparse.REMAINDER)

    vendor = commands.add_parser(
        "vendor", help="allow an account the operator's own vendors (STEPBLEND_VENDORS_FILE, local)"
    ).add_subparsers(dest="action", required=True)
    allow = vendor.add_parser("allow", help="offer an operator-only vendor to an account")
    allow.add_argument("email")
    allow.add_argument("name")
    allow.add_argument("--key", default="", help="the server's key, or - to read it from standard input (default none)")
    vendor_revoke = vendor.add_parser("revoke", help="stop offering an operator-only vendor to an account")
    vendor_revoke.add_argument("email")
    vendor_revoke.add_argument("name")
    vendor_list = vendor.add_parser("list", help="the operator-only vendors an account is allowed")
    vendor_list.add_argument("email")

    apikey = commands.add_parser("apikey", help="manage an account's API keys").add_subparsers(
        dest="action", required=True
    )
    apikey_create = apikey.add_parser("create", help="create an API key and print it (shown this once)")
    apikey_create.add_argument("email")
    apikey_create.add_argument("--name", required=True)
    apikey_create.add_argument("--budget", default="", help="monthly budget in USD")
    apikey_create.add_argument("--limit", type=int, default=0, help="monthly request limit")
    apikey_create.add_argument("--rpm", type=int, default=0, help="requests per rolling minute")
    apikey_create.add_argument("--models", default="", help="allowed model ids and strategies, comma-separated")
    apikey_create.add_argument("--expires-days", type=int, default=0, help="days until the key expires")
    apikey_list = apikey.add_parser("list", help="list an account's API keys with this month's requests and spend")
    apikey_list.add_argument("email")
    apikey_revoke = apikey.add_parser("revoke", help="revoke an API key: it stops working within a second")
    apikey_revoke.add_argument("email")
    apikey_revoke.add_argument("id")

    migrate = commands.add_parser("migrate", help="apply a service's database migrations")
    migrate.add_argument("service", choices=["billing"])
    return parser


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    if args.command == "serve":
        from .serve import run

        run(args.service)
        return
    if args.command == "up":
        from .up import up
        from .workers import WorkersError, default_workers, parse_workers

        data_dir = Path(args.data_dir_up or _data_dir(args))
        try:
            workers = parse_workers(args.workers, "--workers") if args.workers else default_workers()
        except WorkersError as exc:
            raise SystemExit(f"stepblend up: {exc}") from None
        sys.exit(up(data_dir, args.port, args.demo, workers))

    if args.command == "keys" and args.action == "rotate":
        from services.providers.rotate import main as rotate

        sys.exit(rotate(args.rotate_args))
    if args.command == "migrate":
        from services.billing.migrate import main as migrate

        sys.exit(migrate())

    import grpc

    from .control import Control

    control = Control.find(_data_dir(args))
    try:
        if args.command == "account" and args.action == "create":
            password = getpass.getpass("Password: ") if args.password else ""
            print(control.token(control.create_account(args.email, args.plan, password)))
        elif args.command == "account" and args.action == "set-plan":
            print(control.set_plan(args.email, args.plan))
        elif args.command == "account" and args.action in ("disable", "enable"):
            control.set_disabled(args.email, args.action == "disable")
            print(f"{args.email} {args.action}d")
        elif args.command == "token":
            print(control.token(control.account_id(args.email)))
        elif args.command == "keys" and args.action == "set":
            # All of standard input: a multi-field key (azure) is a JSON object, maybe over several lines.
            api_key = sys.stdin.read().strip() if args.api_key == "-" else args.api_key
            if not api_key:
                raise SystemExit("stepblend: no key given (with -, the key is read from standard input)")
            print(control.set_key(control.account_id(args.email), args.provider, api_key))
        elif args.command == "keys" and args.action == "list":
            for provider, masked in control.list_keys(control.account_id(args.email)):
                print(f"{provider}\t{masked}")
        elif args.command == "keys" and args.action == "delete":
            if not control.delete_key(control.account_id(args.email), args.provider):
                raise SystemExit(f"stepblend: no {args.provider} key is connected for {args.email}")
            print(f"{args.provider} key deleted for {args.email}")
        elif args.command == "vendor":
            _vendor(control, args)
        elif args.command == "apikey":
            _apikey(control, args)
    except grpc.RpcError as exc:
        print(f"stepblend: {exc.details()}", file=sys.stderr)
        sys.exit(1)


def _vendor(control: Control, args: argparse.Namespace) -> None:
    account_id = control.account_id(args.email)
    if args.action == "allow":
        api_key = sys.stdin.readline().strip() if args.key == "-" else args.key
        if args.key == "-" and not api_key:
            raise SystemExit("stepblend: no key on standard input (leave --key out for a server that checks none)")
        control.allow_vendor(account_id, args.name, api_key)
        print(f"{args.name} allowed for {args.email}")
    elif args.action == "revoke":
        if not control.revoke_vendor(account_id, args.name):
            raise SystemExit(f"stepblend: {args.name} is not allowed for {args.email}")
        print(f"{args.name} revoked for {args.email}")
    else:
        for name in control.allowed_vendors(account_id):
            print(name)


def _apikey(control: Control, args: argparse.Namespace) -> None:
    from stepblend.v1 import billing_pb2

    account_id = control.account_id(args.email)
    if args.action == "create":
        limits = billing_pb2.ApiKeyLimits(
            expires_at=int(time.time()) + args.expires_days * 86_400 if args.expires_days > 0 else 0,
            monthly_request_limit=max(args.limit, 0),
            monthly_budget_usd=args.budget,
            rpm=max(args.rpm, 0),
            allowed_models=[m.strip() for m in args.models.split(",") if m.strip()],
        )
        key_id, secret = control.create_api_key(account_id, args.name, limits)
        print(secret)
        print(f"(id {key_id}; the key is shown this once)", file=sys.stderr)
    elif args.action == "list":
        for key in control.list_api_keys(account_id):
            state = "revoked" if key["revoked"] else "active"
            spend = key["spend_this_month_usd"]
            print(
                f"{key['id']}\t{key['name']}\t{key['hint']}\t{state}\t{key['requests_this_month']} requests\t${spend}"
            )
    else:
        control.revoke_api_key(account_id, args.id)
        print(f"{args.id} revoked")
