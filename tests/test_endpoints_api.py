"""Every endpoint the app declares authenticated answers a typed 401 without a session, on the
real app: the route wrapper checks it whatever the handler does."""

from __future__ import annotations

import re
import uuid

import httpx

from roomserver.app import all_endpoints


async def test_every_declared_auth_endpoint_refuses_a_caller_without_a_session(http: httpx.AsyncClient) -> None:
    declared = [ep for ep in all_endpoints() if ep.auth]
    assert len(declared) > 20
    for ep in declared:
        path = re.sub(r"\{\w+(:\w+)?\}", str(uuid.uuid4()), ep.path)
        for headers in ({}, {"Authorization": "Bearer rs1_not-a-session"}):
            answer = await http.request(ep.method, path, headers=headers, content=b"{not json")
            assert answer.status_code == 401, (ep.method, ep.path, answer.text)
            assert answer.json()["error"]["code"] in ("not_authenticated", "session_invalid")
