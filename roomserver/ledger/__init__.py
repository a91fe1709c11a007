"""The local Solana ledger: a JSON-RPC server over LiteSVM that the app talks to over HTTP
(it never imports this package). Run with `python -m roomserver.ledger` or `main(argv)`."""
