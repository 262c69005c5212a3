"""The writer process: one lock per output file, cut back to the committed size,
whole lines only even when the disk fills."""

import multiprocessing as mp
import resource


from sinks.writer import WriterProcess

CTX = mp.get_context("spawn")


def start(path, committed=None, tail=None):
    w = WriterProcess(CTX, str(path), committed, tail)
    return w, w.handshake(timeout=30)


def acks(w, n):
    out = []
    while len(out) < n:
        msgs = w.receive(timeout=10)
        assert msgs, "writer answered nothing"
        out += msgs
    return out


def test_batch_is_written_then_acked_with_the_new_size(tmp_path):
    path = tmp_path / "out.jsonl"
    w, status = start(path)
    assert status == ("ready", "")
    w.send([1, 2], b'{"a":1}\n{"a":2}\n')
    (ack,) = acks(w, 1)
    assert ack[:3] == ("ack", [1, 2], 16)
    w.close()
    assert path.read_bytes() == b'{"a":1}\n{"a":2}\n'


def test_second_writer_on_the_same_file_is_told_locked(tmp_path):
    path = tmp_path / "out.jsonl"
    w1, _ = start(path)
    w2, status = start(path)
    assert status[0] == "locked" and str(path) in status[1]
    w1.close()
    w2.close()


def test_uncommitted_tail_and_torn_line_are_cut_back(tmp_path):
    path = tmp_path / "out.jsonl"
    path.write_bytes(b'{"a":1}\n{"a":2}\n{"a":')
    w, status = start(path, committed=8)
    assert status == ("ready", "") and w.size == 8
    w.close()
    assert path.read_bytes() == b'{"a":1}\n'


def test_file_shorter_than_committed_is_refused(tmp_path):
    path = tmp_path / "out.jsonl"
    path.write_bytes(b'{"a":1}\n')
    w, status = start(path, committed=100)
    assert status[0] == "short" and "--fresh" in status[1]
    w.close()
    assert path.read_bytes() == b'{"a":1}\n'  # untouched




def test_full_disk_reports_an_error_and_keeps_only_whole_lines(tmp_path):
    path = tmp_path / "out.jsonl"
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (20, hard))  # inherited by the spawned writer
    try:
        w, status = start(path)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert status == ("ready", "")
    w.send([1], b'{"a":1}\n')
    w.send([2], b'{"a":"' + b"x" * 40 + b'"}\n')
    msgs = acks(w, 2)
    assert msgs[0][:3] == ("ack", [1], 8)
    assert msgs[1][0] == "error" and "cannot write output" in msgs[1][2]
    w.close()
    assert path.read_bytes() == b'{"a":1}\n'


def test_replaced_file_is_refused(tmp_path):
    path = tmp_path / "out.jsonl"
    w, _ = start(path)
    w.send([1], b'{"a":1}\n')
    (ack,) = acks(w, 1)
    w.close()
    path.write_bytes(b'{"b":2}\n')  # same size, other content
    w2, status = start(path, committed=ack[2], tail=ack[3])
    assert status[0] == "replaced"
    w2.close()
    w3, status = start(path.with_name("other.jsonl"), committed=None)
    assert status == ("ready", "")
    w3.close()
    path.write_bytes(b'{"a":1}\n')
    w4, status = start(path, committed=ack[2], tail=ack[3])
    assert status == ("ready", "")
    w4.close()
