"""The router service: picks the model (and provider) for a request from its features.

`catalog` loads the model table (prices, limits, capabilities, tokenizer margins),
`budget` prices a request on one model, `strategies` ranks eligible models,
`decision` holds the decision's types, `routing` makes the decision and `refusals`
explains a refusal; `stats` folds usage events into live statistics and `breaker`
keeps a circuit per provider:model; `consumer` reads those events from JetStream;
`servicer` puts it all on the wire (`stepblend.v1.Router`) and `main` runs it.
"""
