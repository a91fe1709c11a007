"""GET /ipfs/{cid}: the PUBLIC blob store, read-only, like an IPFS gateway path.

It serves only what was published on purpose (NFT metadata and card images, written by
nft/); user uploads live in the private store, which this module never sees (404
`blob_not_found` for their CIDs, exactly as for unknown ones). Published blobs are immutable,
so answers are cacheable forever and the CID is the ETag. Every answer carries a sandboxing
Content-Security-Policy and nosniff: the cards are SVG, which must never run script on this
origin.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import FileResponse, Response, StreamingResponse

from roomserver.api.guard import app_state
from roomserver.api.http import Endpoint, client_key
from roomserver.store.cid import parse_cid

IMMUTABLE = "public, max-age=31536000, immutable"
SAFE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; img-src data:; style-src 'unsafe-inline'; sandbox",
    "X-Content-Type-Options": "nosniff",
}


async def get_blob(request: Request) -> Response:
    state = app_state(request)
    await state.ip_limiter.hit(client_key(request))
    cid = request.path_params["cid"]
    parse_cid(cid)  # 400 invalid_cid
    content_type = await state.public_blobs.content_type(cid)  # 404 blob_not_found
    headers = {"Cache-Control": IMMUTABLE, "ETag": f'"{cid}"', **SAFE_HEADERS}
    if cid in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    path = state.public_blobs.path(cid)
    if path is not None:
        return FileResponse(path, media_type=content_type, headers=headers, stat_result=None)
    return StreamingResponse(await state.public_blobs.stream(cid), media_type=content_type, headers=headers)


ENDPOINTS = [
    Endpoint("GET", "/ipfs/{cid}", get_blob, "A published blob (NFT metadata or card image) by its CIDv1 (raw, sha2-256, base32); never an upload", "ipfs",
             auth=False, also=(304,), errors=(400, 404, 503), produces="application/octet-stream"),
]
