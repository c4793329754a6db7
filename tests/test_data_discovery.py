"""How the test suite finds MovieLens-100K (tests/conftest.py find_data_dir): the variable
users set, a copy beside the clone, an earlier download, else a download; without any of
them a failure that names RECRANKER_DATA_DIR."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import find_data_dir

UNREACHABLE = "http://127.0.0.1:9/ml-100k.zip"  # nothing listens on port 9


def _fake_ml100k(root: Path) -> Path:
    (root / "ml-100k").mkdir(parents=True)
    for name in ("u.data", "u.item"):
        (root / "ml-100k" / name).write_text("x")
    return root


def test_the_variable_wins(tmp_path, monkeypatch) -> None:
    data = _fake_ml100k(tmp_path / "mine")
    monkeypatch.setenv("RECRANKER_DATA_DIR", str(data))
    assert find_data_dir(_fake_ml100k(tmp_path / "cache"), beside=_fake_ml100k(tmp_path / "beside")) == data


def test_a_variable_pointing_at_no_data_fails_naming_it(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("RECRANKER_DATA_DIR", str(tmp_path / "empty"))
    with pytest.raises(pytest.fail.Exception, match=r"RECRANKER_DATA_DIR=.*empty has no complete ml-100k/"):
        find_data_dir(tmp_path / "cache", beside=_fake_ml100k(tmp_path / "beside"))


def test_unset_uses_the_copy_beside_the_clone_then_an_earlier_download(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("RECRANKER_DATA_DIR", raising=False)
    beside = _fake_ml100k(tmp_path / "beside")
    cache = _fake_ml100k(tmp_path / "cache")
    assert find_data_dir(cache, beside=beside, url=UNREACHABLE) == beside
    assert find_data_dir(cache, beside=tmp_path / "nothing", url=UNREACHABLE) == cache


def test_no_data_and_no_download_fails_naming_the_variable(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("RECRANKER_DATA_DIR", raising=False)
    with pytest.raises(pytest.fail.Exception, match="download failed .*set RECRANKER_DATA_DIR to a folder"):
        find_data_dir(tmp_path / "cache", beside=tmp_path / "nothing", url=UNREACHABLE)
