"""The manifest checksum (dymu_rt.bundle.checksum) as unit tests: digest of the canonical
form, verification, the crash-safe write order, damaged checksum files. < 1 s."""

from __future__ import annotations

import hashlib
import json

import pytest

from dymu_rt.bundle import checksum as C
from dymu_rt.core.errors import BundleError


def _digest(m) -> str:
    """Written out: sha256 of sorted-key, compact, ASCII JSON."""
    return hashlib.sha256(json.dumps(m, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()).hexdigest()


def test_canonical_digest_ignores_layout_not_content():
    a = {"b": 1, "a": [1, 2, {"z": "é"}]}
    assert C.canonical_digest(a) == _digest(a)
    assert C.canonical_digest(json.loads(json.dumps(a, indent=4))) == C.canonical_digest(a)
    assert C.canonical_digest({**a, "b": 2}) != C.canonical_digest(a)
    with pytest.raises(ValueError):
        C.canonical_digest({"x": float("nan")})


def test_write_then_verify_and_an_edit_is_caught(tmp_path):
    m = {"schema": 3, "bn_eps": 1e-5}
    C.write_with_checksum(tmp_path, m)
    assert json.loads((tmp_path / C.MANIFEST).read_text()) == m
    data = json.loads((tmp_path / C.CHECKSUM_FILE).read_text())
    assert data["canonical_sha256"] == [_digest(m)] and "sha256" in data["format"]
    assert C.verify_checksum(tmp_path, m) is True
    with pytest.raises(BundleError, match="manifest.json was edited since it was written"):
        C.verify_checksum(tmp_path, {**m, "bn_eps": 1e-3})


def test_no_checksum_file_is_refused_unless_allowed_unverified(tmp_path, monkeypatch, capsys):
    """Issue 27: a bundle without its checksum is refused by default; --allow-unverified reads
    it with a warning (the unverified read returns False, never True)."""
    assert C.read_digests(tmp_path) is None
    with pytest.raises(BundleError, match="--allow-unverified"):
        C.verify_checksum(tmp_path, {"a": 1})
    monkeypatch.setattr(C, "unverified_allowed", lambda: True)
    assert C.verify_checksum(tmp_path, {"a": 1}) is False
    assert "UNVERIFIED" in capsys.readouterr().err


def test_rewrite_keeps_only_the_new_digest(tmp_path):
    C.write_with_checksum(tmp_path, {"v": 1})
    C.write_with_checksum(tmp_path, {"v": 2})
    assert C.read_digests(tmp_path) == [_digest({"v": 2})]
    with pytest.raises(BundleError):
        C.verify_checksum(tmp_path, {"v": 1})


def test_a_writer_killed_between_steps_leaves_a_listed_digest(tmp_path, monkeypatch):
    C.write_with_checksum(tmp_path, {"v": 1})
    calls = []
    real = C.atomic_write_text

    def die(path, text):
        calls.append(path)
        raise KeyboardInterrupt                  # killed before the new manifest is in place

    monkeypatch.setattr(C, "atomic_write_text", die)
    with pytest.raises(KeyboardInterrupt):
        C.write_with_checksum(tmp_path, {"v": 2})
    monkeypatch.setattr(C, "atomic_write_text", real)
    # Both digests are listed: the old manifest on disk still verifies, and so would the new.
    assert C.read_digests(tmp_path) == [_digest({"v": 2}), _digest({"v": 1})]
    assert C.verify_checksum(tmp_path, json.loads((tmp_path / C.MANIFEST).read_text())) is True


def test_many_rewrites_keep_a_short_list(tmp_path, monkeypatch):
    C.write_with_checksum(tmp_path, {"v": 0})
    # the manifest on disk ({"v": 0}) stays listed: a writer only seals over verified content
    C._write_digests(tmp_path, [_digest({"v": k}) for k in range(0, 9)])
    monkeypatch.setattr(C, "atomic_write_text", lambda p, t: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        C.write_with_checksum(tmp_path, {"v": 99})
    assert C.read_digests(tmp_path) == [_digest({"v": 99})] + [_digest({"v": k}) for k in range(0, 4)]


@pytest.mark.parametrize("content", ['{"canonical_sha256": "abc"}', '{"canonical_sha256": ["abc"]}', "not json",
                                     '{"other": []}', '[1]', '{"canonical_sha256": [1]}'])
def test_damaged_checksum_file_is_one_bundle_error(tmp_path, content):
    (tmp_path / C.CHECKSUM_FILE).write_text(content)
    with pytest.raises(BundleError, match="is damaged; rebuild the bundle"):
        C.read_digests(tmp_path)
    # a writer replaces a damaged file instead of failing
    C.write_with_checksum(tmp_path, {"v": 1})
    assert C.read_digests(tmp_path) == [_digest({"v": 1})]


def test_checksum_file_must_be_a_small_regular_file(tmp_path):
    (tmp_path / "elsewhere.json").write_text(json.dumps({"canonical_sha256": ["0" * 64]}))
    (tmp_path / C.CHECKSUM_FILE).symlink_to(tmp_path / "elsewhere.json")
    with pytest.raises(BundleError, match="is not a small regular file"):
        C.read_digests(tmp_path)
    (tmp_path / C.CHECKSUM_FILE).unlink()
    (tmp_path / C.CHECKSUM_FILE).write_text(" " * 5000)
    with pytest.raises(BundleError, match="is not a small regular file"):
        C.read_digests(tmp_path)


def test_write_checksum_seals_the_manifest_on_disk(tmp_path):
    (tmp_path / C.MANIFEST).write_text(json.dumps({"k": [1, 2]}, indent=1))
    C.write_checksum(tmp_path)
    assert C.read_digests(tmp_path) == [_digest({"k": [1, 2]})]


def test_manifest_is_written_indented_with_sorted_keys(tmp_path):
    m = {"b": 1, "a": {"d": 2, "c": [1]}}
    C.write_with_checksum(tmp_path, m)
    assert (tmp_path / C.MANIFEST).read_text() == json.dumps(m, indent=2, sort_keys=True) + "\n"


def test_checksum_file_size_limit_is_4096_bytes_inclusive(tmp_path):
    body = json.dumps({"canonical_sha256": ["0" * 64], "format": ""})
    for size, ok in ((4096, True), (4097, False)):
        text = body[:-2] + " " * (size - len(body)) + body[-2:]
        (tmp_path / C.CHECKSUM_FILE).write_text(text)
        assert len(text) == size
        if ok:
            assert C.read_digests(tmp_path) == ["0" * 64]
        else:
            with pytest.raises(BundleError, match="is not a small regular file"):
                C.read_digests(tmp_path)


def test_a_non_ascii_checksum_file_is_damaged(tmp_path):
    (tmp_path / C.CHECKSUM_FILE).write_text(json.dumps({"canonical_sha256": ["0" * 64], "format": "é"},
                                                       ensure_ascii=False), encoding="utf-8")
    with pytest.raises(BundleError, match="is damaged"):
        C.read_digests(tmp_path)
