"""WARC/1.1 capture: the HTTP exchanges of each fetch, as WARC records (warcio).

What one Page becomes (``page_records``), written as one unit right after the page's JSON
line is built, so that the writer commits the two together::

    warcinfo                      once per file, first: software, format, crawl id
    request  + response           per exchange: robots.txt fetched for this page, each
                                  redirect hop, the final answer (a 304 is a revisit)
    metadata                      WARC-Target-URI = the requested URL, WARC-Refers-To = the
                                  final response; fields via, depth, fetchedAt,
                                  fetchTimeMs, attempts (Heritrix's names where it has one)

Payloads are the bodies as the crawler parsed them: decompressed, so Content-Encoding and
Transfer-Encoding are dropped from the stored headers and Content-Length is the stored
length; WARC-Payload-Digest is the sha1 of exactly that body.
"""

from __future__ import annotations

import fcntl
import io
import os
from datetime import datetime, timezone
from urllib.parse import urlsplit

SOFTWARE_PREFIX = "crawler/"


def gzipped(path: str) -> bool:
    """A WARC is written one gzip member per record unless its name ends in ".warc"."""
    return not path.endswith(".warc")


def parse_warc_fields(data: bytes) -> dict[str, str]:
    """``application/warc-fields`` ("name: value" lines) as a dict."""
    out = {}
    for line in data.decode("utf-8", "replace").splitlines():
        name, sep, value = line.partition(":")
        if sep:
            out[name.strip()] = value.strip()
    return out


def warc_date_to_record(value: str | None) -> str:
    """A WARC-Date as a record's ``fetched_at`` ("2026-11-22T01:00:00.123Z")."""
    if not value:
        return "1970-01-01T00:00:00.000Z"
    when = datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(timezone.utc)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


# -- writing ---------------------------------------------------------------------------------

_DROPPED = frozenset(("content-encoding", "transfer-encoding", "content-length"))
REVISIT_PROFILE = "http://netpreserve.org/warc/1.1/revisit/server-not-modified"


def _reason(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def _writer(buf, gzip: bool):
    from warcio.warcwriter import WARCWriter

    return WARCWriter(buf, gzip=gzip, warc_version="WARC/1.1")


def warcinfo_record(filename: str, software: str, crawl_id: str, gzip: bool) -> bytes:
    """The first record of a WARC file: who wrote it, and how."""
    buf = io.BytesIO()
    writer = _writer(buf, gzip)
    writer.write_record(writer.create_warcinfo_record(filename, {
        "software": software, "format": "WARC File Format 1.1",
        "conformsTo": "https://iipc.github.io/warc-specifications/specifications/warc-format/warc-1.1/",
        "isPartOf": crawl_id}))
    return buf.getvalue()


def _is_robots(url: str) -> bool:
    return urlsplit(url).path == "/robots.txt"


def page_records(page, gzip: bool) -> bytes:
    """The WARC records of one Page (see the module docstring); b"" if it has no exchanges."""
    from warcio.statusandheaders import StatusAndHeaders

    if not page.exchanges:
        return b""
    buf = io.BytesIO()
    writer = _writer(buf, gzip)
    final_id = None
    for stamp, url, sent, status, headers, body in page.exchanges:
        parts = urlsplit(url)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        kept = [(k, v) for k, v in headers if k.lower() not in _DROPPED]
        http = StatusAndHeaders(f"{status} {_reason(status)}", kept, protocol="HTTP/1.1")
        date = {"WARC-Date": stamp}  # "...T08:00:00.123Z": WARC/1.1 allows fractions
        if status == 304:
            # Not modified: the headers only, pointing at the URL whose earlier capture holds
            # the payload (warcio's create_revisit_record wants that payload's digest, which
            # the crawl does not keep).
            response = writer.create_warc_record(url, "revisit", payload=io.BytesIO(b""), http_headers=http,
                                                 warc_headers_dict={**date, "WARC-Profile": REVISIT_PROFILE,
                                                                    "WARC-Refers-To-Target-URI": url})
        else:
            http.add_header("Content-Length", str(len(body)))
            response = writer.create_warc_record(url, "response", payload=io.BytesIO(body), length=None,
                                                 warc_headers_dict=dict(date), http_headers=http)
        response_id = response.rec_headers.get_header("WARC-Record-ID")
        request = writer.create_warc_record(
            url, "request", payload=io.BytesIO(b""), warc_headers_dict={**date, "WARC-Concurrent-To": response_id},
            http_headers=StatusAndHeaders(f"GET {target} HTTP/1.1", sent, is_http_request=True))
        writer.write_record(request)
        writer.write_record(response)
        if not _is_robots(url) or _is_robots(page.job.url):
            final_id = response_id
    writer.write_record(_metadata(writer, page, final_id))
    return buf.getvalue()


def _metadata(writer, page, final_id: str | None):
    job = page.job
    fields = [("via", job.referrer or ""), ("depth", job.depth), ("fetchedAt", page.fetched_at),
              ("fetchTimeMs", page.elapsed_ms), ("attempts", page.attempts),
              ("finalURI", page.final_url or "")]
    if page.error is not None:
        fields += [("errorType", page.error[0]), ("errorMessage", page.error[1].replace("\n", " "))]
    body = "".join(f"{k}: {v}\r\n" for k, v in fields).encode("utf-8")
    headers = {"WARC-Date": page.fetched_at}
    if final_id is not None:
        headers["WARC-Refers-To"] = final_id
    return writer.create_warc_record(job.url, "metadata", payload=io.BytesIO(body),
                                     warc_content_type="application/warc-fields", warc_headers_dict=headers)


# -- the file, in the writer process ---------------------------------------------------------

class WarcFileError(Exception):
    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


class WarcFile:
    """The WARC file beside the JSON lines, committed with them (exactly once).

    The writer appends a batch's WARC records, then its JSON lines, fsyncs both, and only
    then appends ``<json size> <warc size>`` to ``<warc>.offsets`` (fsynced) and acks.
    The frontier commits the JSON size of an ack; on resume the offsets file gives the
    WARC size that goes with it, and the WARC is cut back to it, exactly as the JSON lines
    are. A crash anywhere in between leaves an offsets line for the committed size.
    """

    def __init__(self, path: str, crawl_id: str):
        self.path, self.crawl_id = path, crawl_id
        self.offsets_path = path + ".offsets"
        self.gzip = gzipped(path)
        try:
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
            self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise WarcFileError("open", f"cannot open WARC {path}: {exc.strerror}") from None
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self.fd)
            raise WarcFileError("locked", f"WARC {path} is locked by another running crawl") from None
        self.size = os.fstat(self.fd).st_size
        self.offsets_fd = -1

    def _known_sizes(self) -> dict[int, int]:
        pairs = {}
        try:
            with open(self.offsets_path, "rb") as f:
                for line in f.read().decode("ascii", "replace").splitlines():
                    fields = line.split()
                    if len(fields) == 2 and fields[0].isdigit() and fields[1].isdigit():
                        pairs[int(fields[0])] = int(fields[1])
        except FileNotFoundError:
            pass
        return pairs

    def restore(self, json_size: int, committed: bool, software: str) -> None:
        """Cut the WARC back to the size that goes with the committed JSON size, start the
        offsets file afresh from there, and begin an empty WARC with its warcinfo record."""

        if committed and self.size:
            size = self._known_sizes().get(json_size)
            if size is None or size > self.size:
                raise WarcFileError("replaced", f"WARC {self.path} does not go with this crawl's output "
                                                f"(no offsets for its committed size {json_size}): use --fresh, "
                                                "or another [output] warc")
            os.ftruncate(self.fd, size)
            self.size = size
        if self.size == 0:
            self.append(warcinfo_record(os.path.basename(self.path), software, self.crawl_id, self.gzip))
            os.fsync(self.fd)
        tmp = self.offsets_path + ".tmp"
        with open(tmp, "wb") as f:
            f.write(f"{json_size} {self.size}\n".encode())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.offsets_path)
        self.offsets_fd = os.open(self.offsets_path, os.O_WRONLY | os.O_APPEND)

    def append(self, data: bytes) -> None:

        view = memoryview(data)
        os.lseek(self.fd, self.size, os.SEEK_SET)
        while view:
            view = view[os.write(self.fd, view):]
        self.size += len(data)

    def sync(self) -> None:

        os.fsync(self.fd)

    def commit(self, json_size: int) -> None:
        """Both files hold the batch (fsynced): note the pair before the ack goes out."""

        os.write(self.offsets_fd, f"{json_size} {self.size}\n".encode())
        os.fsync(self.offsets_fd)

    def cut_back(self, size: int) -> None:

        try:
            os.ftruncate(self.fd, size)
        except OSError:
            pass
        self.size = size

    def close(self) -> None:

        if self.offsets_fd >= 0:
            os.close(self.offsets_fd)
        os.close(self.fd)
