import hashlib

import pytest

from protocol.errors import ManifestError
from protocol.manifest import DownloadVerifier

DATA = bytes(range(256)) * 40
SHA = hashlib.sha256(DATA).hexdigest()


def feed(verifier, data, chunk=1000):
    for i in range(0, len(data), chunk):
        verifier.update(data[i : i + chunk])


def test_complete_download_verifies():
    v = DownloadVerifier(len(DATA), SHA)
    feed(v, DATA)
    assert v.progress == 1.0
    assert v.finish() == SHA


def test_truncated_download_is_a_size_mismatch():
    v = DownloadVerifier(len(DATA), SHA)
    feed(v, DATA[:-1])
    with pytest.raises(ManifestError) as exc:
        v.finish()
    assert exc.value.reason == "size_mismatch"


def test_endless_download_stops_at_the_first_excess_byte():
    v = DownloadVerifier(len(DATA), SHA)
    sent = 0
    with pytest.raises(ManifestError) as exc:
        for _ in range(10**6):  # an endless stream, bounded for the test
            v.update(b"\0" * 4096)
            sent += 4096
    assert exc.value.reason == "oversize_download"
    assert sent <= len(DATA)


def test_right_size_wrong_bytes_is_a_hash_mismatch():
    v = DownloadVerifier(len(DATA), SHA)
    feed(v, DATA[:-1] + b"X")
    with pytest.raises(ManifestError) as exc:
        v.finish()
    assert exc.value.reason == "hash_mismatch"


def test_resume_rehashes_the_partial_file(tmp_path):
    part = tmp_path / "a.part"
    part.write_bytes(DATA[:3000])
    v = DownloadVerifier.resume(len(DATA), SHA, part)
    assert v.received == 3000
    feed(v, DATA[3000:])
    assert v.finish() == SHA
    assert DownloadVerifier.resume(len(DATA), SHA, tmp_path / "missing.part").received == 0


def test_resume_from_an_overlong_partial_file_is_refused(tmp_path):
    part = tmp_path / "a.part"
    part.write_bytes(DATA + b"more")
    with pytest.raises(ManifestError) as exc:
        DownloadVerifier.resume(len(DATA), SHA, part)
    assert exc.value.reason == "oversize_download"
