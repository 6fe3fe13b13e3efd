"""Streaming multipart/form-data parsing with hard byte caps.

Starlette's `request.form()` keeps whole parts in memory; here the body is read chunk by chunk
through python-multipart's streaming parser, file parts are spooled to a temporary file
(memory up to `SPOOL_MEMORY_BYTES`, disk beyond) and the request is rejected with 413 the
moment a cap is passed, or before a byte is read when Content-Length already says so.
"""

from __future__ import annotations

import asyncio
import tempfile
from dataclasses import dataclass, field
from typing import IO, Self

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from app.errors import InvalidRequest, PayloadTooLarge

SPOOL_MEMORY_BYTES = 1024 * 1024  # per file part; beyond this it goes to a temporary file
MAX_FIELD_BYTES = 64 * 1024  # one text field
MAX_PARTS = 32
# Room for the text fields, part headers and boundaries on top of the file cap.
FORM_OVERHEAD_BYTES = MAX_PARTS * 1024 + 4 * MAX_FIELD_BYTES


@dataclass
class UploadedFile:
    """One file part, spooled. `size` is in bytes; the file is positioned at its start."""

    field_name: str
    filename: str
    content_type: str
    file: IO[bytes]
    size: int = 0


@dataclass
class MultipartForm:
    fields: dict[str, str] = field(default_factory=dict)
    files: dict[str, UploadedFile] = field(default_factory=dict)

    def file(self, name: str) -> UploadedFile:
        """The named file part; 400 if the client did not send one."""
        upload = self.files.get(name)
        if upload is None:
            if name in self.fields:
                raise InvalidRequest(f"{name} must be a file upload, not a text field",
                                     param=name)
            raise InvalidRequest(f"{name}: Field required", param=name)
        return upload

    def close(self) -> None:
        for upload in self.files.values():
            upload.file.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


@dataclass
class _Part:
    name: str = ""
    filename: str | None = None
    content_type: str = ""
    data: bytearray = field(default_factory=bytearray)
    upload: UploadedFile | None = None


class _FormBuilder:
    """python-multipart callbacks -> MultipartForm. File bytes are queued, then written."""

    def __init__(self, max_file_bytes: int):
        self.max_file_bytes = max_file_bytes
        self.form = MultipartForm()
        self.pending: list[tuple[UploadedFile, bytes]] = []
        self.finished = False
        self._part = _Part()
        self._header_field = bytearray()
        self._header_value = bytearray()
        self._headers: dict[bytes, bytes] = {}
        self._parts = 0

    def callbacks(self) -> dict[str, object]:
        return {
            "on_part_begin": self._on_part_begin,
            "on_header_field": lambda d, s, e: self._header_field.extend(d[s:e]),
            "on_header_value": lambda d, s, e: self._header_value.extend(d[s:e]),
            "on_header_end": self._on_header_end,
            "on_headers_finished": self._on_headers_finished,
            "on_part_data": self._on_part_data,
            "on_part_end": self._on_part_end,
            "on_end": self._on_end,
        }

    def _on_part_begin(self) -> None:
        self._parts += 1
        if self._parts > MAX_PARTS:
            raise InvalidRequest(f"the form has more than {MAX_PARTS} parts")
        self._part = _Part()
        self._headers = {}

    def _on_header_end(self) -> None:
        self._headers[bytes(self._header_field).lower()] = bytes(self._header_value)
        self._header_field.clear()
        self._header_value.clear()

    def _on_headers_finished(self) -> None:
        disposition, options = parse_options_header(self._headers.get(b"content-disposition"))
        name = options.get(b"name")
        if disposition != b"form-data" or not name:
            raise InvalidRequest("a multipart part has no Content-Disposition form-data name")
        part = self._part
        part.name = name.decode("utf-8", "replace")
        if part.name in self.form.fields or part.name in self.form.files:
            raise InvalidRequest(f"{part.name} was sent more than once", param=part.name)
        filename = options.get(b"filename")
        if filename is not None:
            part.filename = filename.decode("utf-8", "replace")
            part.content_type = self._headers.get(b"content-type", b"").decode("latin-1")
            part.upload = UploadedFile(
                part.name, part.filename, part.content_type,
                tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY_BYTES))  # noqa: SIM115
            self.form.files[part.name] = part.upload

    def _on_part_data(self, data: bytes, start: int, end: int) -> None:
        part = self._part
        if part.upload is not None:
            part.upload.size += end - start
            if part.upload.size > self.max_file_bytes:
                raise PayloadTooLarge(
                    f"{part.name} is larger than the {_mib(self.max_file_bytes)} limit",
                    param=part.name)
            self.pending.append((part.upload, data[start:end]))
            return
        part.data.extend(data[start:end])
        if len(part.data) > MAX_FIELD_BYTES:
            raise PayloadTooLarge(
                f"{part.name} is longer than {MAX_FIELD_BYTES} bytes", param=part.name)

    def _on_part_end(self) -> None:
        part = self._part
        if part.upload is None:
            try:
                self.form.fields[part.name] = part.data.decode("utf-8")
            except UnicodeDecodeError:
                raise InvalidRequest(f"{part.name} is not valid UTF-8", param=part.name) from None

    def _on_end(self) -> None:
        self.finished = True


def _mib(n_bytes: int) -> str:
    return f"{n_bytes / (1024 * 1024):g} MiB"


def _boundary(request: Request) -> bytes:
    content_type, options = parse_options_header(request.headers.get("content-type"))
    if content_type != b"multipart/form-data":
        raise InvalidRequest("Content-Type must be multipart/form-data")
    boundary = options.get(b"boundary")
    if not boundary or len(boundary) > 200:
        raise InvalidRequest("the multipart/form-data Content-Type has no valid boundary")
    return boundary


async def _write_pending(builder: _FormBuilder) -> None:
    for upload, data in builder.pending:
        if upload.size <= SPOOL_MEMORY_BYTES:
            upload.file.write(data)  # still in memory: no I/O to move off the loop
        else:
            await asyncio.to_thread(upload.file.write, data)
    builder.pending.clear()


async def read_multipart(request: Request, *, max_file_bytes: int) -> MultipartForm:
    """Parse a multipart/form-data body, each file part capped at `max_file_bytes`.

    Raises PayloadTooLarge (413) as soon as a cap is passed (by Content-Length before
    reading), InvalidRequest (400) for a malformed or truncated body, Starlette's
    ClientDisconnect if the client goes away. The caller closes the form (`with form:`).
    """
    boundary = _boundary(request)
    max_body = max_file_bytes + FORM_OVERHEAD_BYTES
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_body:
        raise PayloadTooLarge(f"the request body is larger than the {_mib(max_file_bytes)} "
                              "upload limit")
    builder = _FormBuilder(max_file_bytes)
    parser = MultipartParser(boundary, builder.callbacks())  # type: ignore[arg-type]
    received = 0
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > max_body:
                raise PayloadTooLarge(
                    f"the request body is larger than the {_mib(max_file_bytes)} upload limit")
            try:
                parser.write(chunk)
            except MultipartParseError:
                raise InvalidRequest("the multipart/form-data body is malformed") from None
            await _write_pending(builder)
        if not builder.finished:
            raise InvalidRequest("the multipart/form-data body ended before its last boundary")
    except BaseException:
        builder.form.close()
        raise
    for upload in builder.form.files.values():
        upload.file.seek(0)
    return builder.form
