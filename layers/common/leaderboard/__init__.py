"""The leaderboard's shared package, shipped to every function in the common Lambda layer.

Domain modules (auth, users, token_families, login_throttle, tokens, passwords) know nothing of API Gateway;
`http` turns events into requests and problems into responses; `config` is the one module that reads the
environment.
"""
