"""The providers service: runs requests on the providers' APIs with the account's
stored key (`Providers.Execute`) and keeps those keys encrypted (`Keys.*`).

Modules: `vendors` (the provider table, data in `vendors.toml`), `adapters` (pure
wire-format translators: openai_compatible, anthropic), `executor` (the only network
I/O), `outcomes` (how attempts end, the final error), `timeouts`, `vault` (keys at
rest), `rotate` (re-encryption under a new key-encryption key), `servicer` (gRPC
edges), `main` (wiring).
"""
