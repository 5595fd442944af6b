"""The providers service: runs requests on the providers' APIs with the account's
stored key (`Providers.Execute`) and keeps those keys encrypted (`Keys.*`).

Modules: `vendors` (the provider table, data in `vendors.toml`), `adapters` (pure
wire-format translators), `vault` (keys at rest), `executor` (the only network I/O),
`servicer` (gRPC edges), `main` (wiring).
"""
