"""The router service: picks the model (and provider) for a request from its features.

`catalog` loads the model table, `budget` prices a request on one model,
`strategies` ranks eligible models, `routing` makes the decision, `servicer` puts it
on the wire (`stepblend.v1.Router.Route`) and `main` runs the gRPC server.
"""
