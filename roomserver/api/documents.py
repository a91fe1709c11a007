"""The document library over REST: upload, jobs, library search/listing, details, download,
changes, deletion, sharing and highlights. Policy lives in `roomserver.library.documents`,
`roomserver.library.highlights` and `roomserver.library.search`; this module only translates.

A path id that is not a UUID names nothing: 404 `document_not_found` / `job_not_found`.
"""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import FileResponse, Response, StreamingResponse

from roomserver import errors
from roomserver.api.guard import app_state, require_user
from roomserver.api.http import Endpoint, path_uuid, read_body, read_query, reply
from roomserver.library.documents import Library
from roomserver.library.highlights import Highlights
from roomserver.library.models import (
    Document,
    DocumentChanges,
    Highlight,
    HighlightDraft,
    HighlightList,
    Job,
    LibraryPage,
    LibraryQuery,
    Share,
    ShareRequest,
    ShareTarget,
)
from roomserver.library.sniff import sanitize_filename

MAX_FORM_FIELDS = 20


class UploadForm(BaseModel):
    """multipart/form-data: `file` (required), `title`, `tags` (comma-separated or repeated),
    `is_public` (true/false)."""

    file: str = Field(json_schema_extra={"format": "binary"})
    title: str | None = Field(None, max_length=300)
    tags: str | None = None
    is_public: bool = False


class UploadResponse(BaseModel):
    document: Document
    job: Job
    duplicate: bool = Field(description="true: the same file was already in your library (status 200)")


class ShareList(BaseModel):
    shares: list[Share]


class Revoked(BaseModel):
    revoked: bool


class Deleted(BaseModel):
    deleted: bool


class HighlightQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    room_id: uuid.UUID | None = None


def _library(request: Request) -> Library:
    return app_state(request).library


def _highlights(request: Request) -> Highlights:
    return app_state(request).highlights


def _path_id(request: Request, name: str = "document_id", code: str = "document_not_found") -> uuid.UUID:
    return path_uuid(request, name, code)


async def upload(request: Request) -> Response:
    session = await require_user(request)
    async with request.form(max_files=1, max_fields=MAX_FORM_FIELDS, max_part_size=64 * 1024) as form:
        file = form.get("file")
        if not isinstance(file, UploadFile):
            raise errors.BadRequest("send the document in the multipart field `file`", code="missing_file")
        title = _text_field(form.get("title"), "title")
        tags = [_text_field(value, "tags") or "" for value in form.getlist("tags")]
        is_public = _bool_field(form.get("is_public"))
        result = await _library(request).upload(session.user_id, file.file, file.filename,
                                                title=title, tags=tags, is_public=is_public)
    body = UploadResponse(document=result.document, job=result.job, duplicate=result.duplicate)
    return reply(body, status=200 if result.duplicate else 202)


def _text_field(value: Any, name: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise errors.BadRequest(f"`{name}` must be a text field, not a file", code="validation_error")


def _bool_field(value: Any) -> bool:
    text = (_text_field(value, "is_public") or "false").strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off", ""):
        return False
    raise errors.BadRequest("is_public must be true or false", code="validation_error")


async def get_job(request: Request) -> Response:
    session = await require_user(request)
    job_id = _path_id(request, "job_id", "job_not_found")
    return reply(await _library(request).job(job_id, session.user_id))


async def library(request: Request) -> Response:
    session = await require_user(request)
    query = read_query(request, LibraryQuery)
    return reply(await _library(request).list(session.user_id, query))


async def get_document(request: Request) -> Response:
    session = await require_user(request)
    return reply(await _library(request).get(_path_id(request), session.user_id))


async def download(request: Request) -> Response:
    """The original bytes from the private store, after the read check; never cached publicly."""
    session = await require_user(request)
    lib = _library(request)
    doc, cid = await lib.download(_path_id(request), session.user_id)
    headers = {"Content-Disposition": content_disposition(doc.filename),
               "X-Content-Type-Options": "nosniff", "Cache-Control": "private, no-store"}
    path = lib.blobs.path(cid)
    if path is not None and path.is_file():
        return FileResponse(path, media_type=doc.content_type, headers=headers)
    return StreamingResponse(await lib.blobs.stream(cid), media_type=doc.content_type, headers=headers)


def content_disposition(filename: str) -> str:
    """`attachment` with an ASCII fallback name and the RFC 5987 UTF-8 name."""
    from urllib.parse import quote

    name = sanitize_filename(filename)
    fallback = "".join(ch if ch.isascii() and ch.isprintable() and ch not in '"\\;' else "_" for ch in name)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"


async def update_document(request: Request) -> Response:
    session = await require_user(request)
    document_id = _path_id(request)
    body = await read_body(request, DocumentChanges)
    return reply(await _library(request).update(document_id, session.user_id, body))


async def delete_document(request: Request) -> Response:
    session = await require_user(request)
    await _library(request).delete(_path_id(request), session.user_id)
    return reply(Deleted(deleted=True))


async def share(request: Request) -> Response:
    session = await require_user(request)
    document_id = _path_id(request)
    body = await read_body(request, ShareRequest)
    return reply(await _library(request).share(document_id, session.user_id, body), status=201)


async def list_shares(request: Request) -> Response:
    session = await require_user(request)
    shares = await _library(request).shares(_path_id(request), session.user_id)
    return reply(ShareList(shares=shares))


async def revoke(request: Request) -> Response:
    session = await require_user(request)
    document_id = _path_id(request)
    target = read_query(request, ShareTarget)
    await _library(request).revoke(document_id, session.user_id, target)
    return reply(Revoked(revoked=True))


async def create_highlight(request: Request) -> Response:
    session = await require_user(request)
    document_id = _path_id(request)
    body = await read_body(request, HighlightDraft)
    made = await _highlights(request).create(document_id, session.user_id, body)
    return reply(made, status=201)


async def list_highlights(request: Request) -> Response:
    session = await require_user(request)
    document_id = _path_id(request)
    query = read_query(request, HighlightQuery)
    found = await _highlights(request).list(document_id, session.user_id, query.room_id)
    return reply(HighlightList(highlights=found))


_DOC = "/api/v1/documents/{document_id}"
ENDPOINTS = [
    Endpoint("POST", "/api/v1/documents/upload", upload,
             "Upload a PDF, text, Markdown or CSV file; 202 queues its ingestion, 200 for a duplicate",
             "documents", body=UploadForm, response=UploadResponse, status=202, also=(200,),
             errors=(413, 415, 429, 503), content_type="multipart/form-data"),
    Endpoint("GET", "/api/v1/ingest/jobs/{job_id}", get_job, "An ingestion job's status and progress (owner)",
             "documents", response=Job, errors=(404,)),
    Endpoint("GET", "/api/v1/documents/library", library,
             "Search passages (with q) or list documents by recency (without q) you may read",
             "documents", query=LibraryQuery, response=LibraryPage, errors=(403,)),
    Endpoint("GET", _DOC, get_document, "A document's details", "documents", response=Document,
             errors=(404,)),
    Endpoint("GET", f"{_DOC}/download", download,
             "The original file, for readers only (the one way to an upload's bytes; counts a download)", "documents",
             errors=(404, 503), produces="application/octet-stream"),
    Endpoint("PATCH", _DOC, update_document, "Change title, tags or is_public (owner)", "documents",
             body=DocumentChanges, response=Document, errors=(403, 404)),
    Endpoint("DELETE", _DOC, delete_document, "Delete a document (owner); chunks go, the audit stays",
             "documents", response=Deleted, errors=(403, 404)),
    Endpoint("POST", f"{_DOC}/share", share, "Share to a user or a room (owner or admin)", "documents",
             body=ShareRequest, response=Share, status=201, errors=(403, 404)),
    Endpoint("GET", f"{_DOC}/share", list_shares, "A document's shares (owner or admin)", "documents",
             response=ShareList, errors=(403, 404)),
    Endpoint("DELETE", f"{_DOC}/share", revoke, "Revoke a share: ?user_id= or ?room_id= (owner or admin)",
             "documents", query=ShareTarget, response=Revoked, errors=(403, 404)),
    Endpoint("POST", f"{_DOC}/highlights", create_highlight, "Highlight a passage (checked against the text)",
             "documents", body=HighlightDraft, response=Highlight, status=201, errors=(403, 404, 409)),
    Endpoint("GET", f"{_DOC}/highlights", list_highlights,
             "Highlights you may see: yours and those made in your rooms", "documents",
             query=HighlightQuery, response=HighlightList, errors=(404,)),
]
