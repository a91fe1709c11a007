from tests.ledger.fixtures import ledger, payer, rpc

__all__ = ["ledger", "payer", "rpc"]
