"""NFT minting and collections over REST. The policy lives in `roomserver.nft.minting.NftService`.

Mint endpoints answer 200 with a `MintResult`: `pending` with a base64 transaction for the
wallet to sign as fee payer and send (wallet mode), or `confirmed` (sponsored mode).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from roomserver import errors
from roomserver.api.guard import app_state, require_user
from roomserver.api.http import Endpoint, client_key, read_body, reply
from roomserver.nft.minting import NftService
from roomserver.nft.models import (
    CollectionDetail,
    CollectionList,
    ConfirmRequest,
    MintHighlightRequest,
    MintResult,
    MintRoomRequest,
)


def _service(request: Request) -> NftService:
    service = app_state(request).nft
    if service is None:
        raise errors.Unavailable("minting is not configured on this server", code="nft_unavailable")
    return service


async def mint_highlight(request: Request) -> Response:
    session = await require_user(request)
    body = await read_body(request, MintHighlightRequest)
    return reply(await _service(request).mint_highlight(body.highlight_id, session.user_id, session.wallet_address))


async def mint_room(request: Request) -> Response:
    session = await require_user(request)
    body = await read_body(request, MintRoomRequest)
    return reply(await _service(request).mint_room(body.room_id, session.user_id, session.wallet_address))


async def confirm(request: Request) -> Response:
    session = await require_user(request)
    body = await read_body(request, ConfirmRequest)
    return reply(await _service(request).confirm(body.signature, session.user_id))


async def _public(request: Request) -> None:
    await app_state(request).ip_limiter.hit(client_key(request))


async def list_collections(request: Request) -> Response:
    await _public(request)
    return reply(CollectionList(collections=await _service(request).collections()))


async def get_collection(request: Request) -> Response:
    await _public(request)
    return reply(await _service(request).collection(request.path_params["mint"]))


ENDPOINTS = [
    Endpoint("POST", "/api/v1/nft/mint-highlight", mint_highlight,
             "Mint one of your highlights as an NFT of its room's collection", "nft",
             body=MintHighlightRequest, response=MintResult, errors=(403, 404, 409, 429, 503)),
    Endpoint("POST", "/api/v1/nft/mint-room", mint_room,
             "Mint your room as an NFT collection", "nft",
             body=MintRoomRequest, response=MintResult, errors=(403, 404, 409, 429, 503)),
    Endpoint("POST", "/api/v1/nft/confirm", confirm,
             "Record a wallet-signed mint once its transaction is confirmed on the ledger", "nft",
             body=ConfirmRequest, response=MintResult, errors=(409, 503)),
    Endpoint("GET", "/api/v1/nft/collections", list_collections,
             "Room collections, as the ledger holds them", "nft", response=CollectionList,
             auth=False, errors=(503,)),
    Endpoint("GET", "/api/v1/nft/collections/{mint}", get_collection,
             "One collection and its members with their metadata, read from the ledger", "nft",
             response=CollectionDetail, auth=False, errors=(400, 404, 503)),
]
