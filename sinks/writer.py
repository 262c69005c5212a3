"""The writer: the one process that touches the output file.

Protocol over one duplex pipe (the coordinator is the only peer)::

    writer -> ("ready", size, tail) | ("error", kind, message)         once, at start
    coord  -> (ids, data)          one batch: whole lines for those record ids
    coord  -> (ids, data, warc)    [added] the same, with the batch's WARC records
    writer -> ("ack", ids, size, tail)  after the batch is written, flushed and fsynced
    writer -> ("error", kind, message) and exits, when it cannot write (disk full...)
    coord  -> None                 stop

- The file is locked with an exclusive ``flock`` for the writer's whole life, so two
  crawls can never interleave lines in one file; the second one is told "locked".
- At start the file is cut back to ``committed_size``, the size the frontier last
  recorded with an ack: that removes records the frontier never marked done, torn
  final line included. A file *shorter* than that was changed behind our back: the
  writer refuses to guess and reports "short". Likewise when the bytes before the
  committed size are not the ones the writer last acked (``tail``: a hash of the last
  4 KiB): the file was replaced, and the writer reports "replaced".
- A failed write (ENOSPC, EFBIG under RLIMIT_FSIZE) is cut back to the last good size
  before the error is reported, so the file keeps only whole lines.
- [added] With ``[output] warc``, the WARC file is written in the same step, before the
  lines, and committed with them (``sinks.warc.WarcFile``): after a kill and a resume it
  holds each acked page's records once, and nothing of the pages that were not acked.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import signal
import time
from multiprocessing.connection import Connection

from crawler import __version__
from crawler.procname import set_process_name
from sinks.warc import SOFTWARE_PREFIX, WarcFile, WarcFileError


TAIL = 4096


def tail_hash(data: bytes) -> str:
    """Fingerprint of a file's end: the hash of its last TAIL bytes."""
    return hashlib.blake2b(data[-TAIL:], digest_size=16).hexdigest()


def read_tail(fd: int, size: int) -> bytes:
    start = max(0, size - TAIL)
    return os.pread(fd, size - start, start)


def writer_main(conn: Connection, path: str, committed_size: int | None, committed_tail: str | None = None,
                fsync: bool = True, warc: tuple[str, str] | None = None) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the coordinator decides when we stop
    set_process_name("crawler-writer")
    # Past RLIMIT_FSIZE the kernel would kill us with SIGXFSZ; we want EFBIG instead.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        conn.send(("error", "open", f"cannot open output {path}: {exc.strerror}"))
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EACCES):
                conn.send(("error", "locked", f"output {path} is locked by another running crawl"))
                return
            raise
        st = os.fstat(fd)
        size = st.st_size
        if committed_size is not None:
            if size < committed_size:
                conn.send(("error", "short",
                           f"output {path} is {size} bytes but the crawl state recorded {committed_size}: "
                           "it was truncated or replaced; use --fresh to start over"))
                return
            if committed_tail is not None and tail_hash(read_tail(fd, committed_size)) != committed_tail:
                conn.send(("error", "replaced",
                           f"output {path} is not the file this crawl wrote (its content before byte "
                           f"{committed_size} changed): use --fresh to start over, or another -o"))
                return
            if size > committed_size:
                os.ftruncate(fd, committed_size)
                size = committed_size
        tail = read_tail(fd, size)
        warc_file = None
        if warc is not None:
            try:
                warc_file = WarcFile(*warc)
                warc_file.restore(size, committed_size is not None, SOFTWARE_PREFIX + __version__)
            except WarcFileError as exc:
                conn.send(("error", exc.kind, str(exc)))
                return
        conn.send(("ready", size, tail_hash(tail)))
        try:
            _serve(conn, fd, path, size, tail, fsync, warc_file)
        finally:
            if warc_file is not None:
                warc_file.close()
    finally:
        os.close(fd)  # also releases the lock


def _serve(conn: Connection, fd: int, path: str, size: int, tail: bytes, fsync: bool,
           warc: WarcFile | None = None) -> None:
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return  # coordinator gone: everything acked is safe, the rest is redone on resume
        if msg is None:
            return
        ids, data, *rest = msg
        warc_size = warc.size if warc is not None else 0
        try:
            if warc is not None and rest and rest[0]:
                warc.append(rest[0])
                warc.sync()
            view = memoryview(data)
            os.lseek(fd, size, os.SEEK_SET)
            while view:
                n = os.write(fd, view)
                view = view[n:]
            if fsync:
                os.fsync(fd)
            if warc is not None:
                warc.commit(size + len(data))
        except OSError as exc:
            try:
                os.ftruncate(fd, size)
            except OSError:
                pass
            if warc is not None:
                warc.cut_back(warc_size)
            conn.send(("error", "write", f"cannot write output {path}: {exc.strerror or exc}"))
            return
        size += len(data)
        tail = (tail + data)[-TAIL:]
        conn.send(("ack", ids, size, tail_hash(tail)))


class WriterProcess:
    """The coordinator's handle on the writer process."""

    # Batches sent but not acked yet. Two keep the writer busy while the coordinator
    # builds the next one; more would only hold memory and delay "done".
    MAX_UNACKED = 2

    def __init__(self, ctx, path: str, committed_size: int | None, committed_tail: str | None = None,
                 fsync: bool = True, warc: tuple[str, str] | None = None):
        """``warc``: (path, crawl_id) to capture a WARC beside the output, or None."""
        self.path = path
        self.conn, child = ctx.Pipe(duplex=True)
        self.process = ctx.Process(target=writer_main,
                                   args=(child, path, committed_size, committed_tail, fsync, warc),
                                   name="crawler-writer", daemon=False)
        self.process.start()
        child.close()
        self.unacked = 0
        self.size = 0
        self.tail = ""

    def handshake(self, timeout: float = 60.0) -> tuple[str, str]:
        """("ready", "") or ("error kind", message)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.conn.poll(0.1):
                try:
                    msg = self.conn.recv()
                except (EOFError, OSError):
                    break
                if msg[0] == "ready":
                    _, self.size, self.tail = msg
                    return "ready", ""
                return msg[1], msg[2]
            if not self.process.is_alive():
                break
        return "dead", f"output writer for {self.path} did not start (exit code {self.process.exitcode})"

    def can_send(self) -> bool:
        return self.unacked < self.MAX_UNACKED

    def send(self, ids: list[int], data: bytes, warc: bytes = b"") -> None:
        try:
            self.conn.send((ids, data, warc) if warc else (ids, data))
        except OSError:
            from crawler.errors import AbortError

            raise AbortError(self.died()) from None
        self.unacked += 1

    def died(self) -> str:
        """The one line that reports a lost writer, naming the output."""
        self.process.join(1.0)  # dead or dying: let its exit code be known
        return (f"output writer died (exit code {self.process.exitcode}) while writing {self.path}; "
                "what it acknowledged is kept, run the same command to resume")

    def receive(self, timeout: float = 0.0) -> list[tuple]:
        """Messages from the writer: ("ack", ids, size, tail) or ("error", kind, message)."""
        out = []
        try:
            while self.conn.poll(timeout):
                msg = self.conn.recv()
                if msg[0] == "ack":
                    self.unacked -= 1
                    self.size = msg[2]
                out.append(msg)
                timeout = 0.0
        except (EOFError, OSError):
            pass
        return out

    @property
    def alive(self) -> bool:
        return self.process.is_alive()

    def close(self, timeout: float = 30.0) -> None:
        try:
            self.conn.send(None)
        except OSError:
            pass
        self.process.join(timeout)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(5)
        self.conn.close()
