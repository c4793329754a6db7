"""The ml-100k download path, served by a local HTTP server with an archive built here."""

from __future__ import annotations

import hashlib
import http.server
import io
import threading
import zipfile
from pathlib import Path

import pytest

from candidate_gen.data import DataError
from candidate_gen.download import download_ml100k, load_dataset

NO_GENRES = "|".join(["0"] * 19)
U_ITEM = f"1|Toy Story (1995)|x||u|{NO_GENRES}\n2|GoldenEye (1995)|x||u|{NO_GENRES}\n".encode("iso-8859-1")
U_DATA = b"1\t1\t5\t10\n1\t2\t4\t20\n2\t2\t5\t15\n"


def make_zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


@pytest.fixture
def serve():
    """Serve one payload at http://127.0.0.1:<port>/ml-100k.zip; yields a function payload -> url."""
    servers = []

    def start(payload: bytes, status: int = 200) -> str:
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                self.send_response(status)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
        return f"http://127.0.0.1:{srv.server_address[1]}/ml-100k.zip"

    yield start
    for srv in servers:
        srv.shutdown()


GOOD = make_zip({"ml-100k/u.data": U_DATA, "ml-100k/u.item": U_ITEM, "ml-100k/README": b"readme"})


def test_download_verifies_and_unpacks(tmp_path, serve):
    url = serve(GOOD)
    folder = download_ml100k(tmp_path, url=url, md5=hashlib.md5(GOOD).hexdigest())
    assert folder == tmp_path / "ml-100k"
    assert (folder / "u.data").read_bytes() == U_DATA
    assert [p.name for p in tmp_path.iterdir()] == ["ml-100k"]  # no temp leftovers


def test_load_dataset_downloads_when_absent_then_reuses(tmp_path, serve):
    url = serve(GOOD)
    md5 = hashlib.md5(GOOD).hexdigest()
    ds = load_dataset("ml-100k", tmp_path, url=url, md5=md5)
    assert ds.n_users == 2 and ds.n_items == 2
    # second load must not hit the network: point it at a dead url
    ds2 = load_dataset("ml-100k", tmp_path, url="http://127.0.0.1:9/none.zip", md5=md5)
    assert ds2.fingerprint == ds.fingerprint


def test_checksum_mismatch_leaves_nothing_behind(tmp_path, serve):
    url = serve(GOOD)
    with pytest.raises(DataError, match="checksum mismatch"):
        download_ml100k(tmp_path, url=url, md5="0" * 32)
    assert list(tmp_path.iterdir()) == []


def test_archive_without_the_data_files_is_refused(tmp_path, serve):
    bad = make_zip({"ml-100k/README": b"x"})
    with pytest.raises(DataError, match="archive lacks ml-100k/u.data"):
        download_ml100k(tmp_path, url=serve(bad), md5=hashlib.md5(bad).hexdigest())
    assert list(tmp_path.iterdir()) == []


def test_unreachable_server_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="could not download"):
        download_ml100k(tmp_path, url="http://127.0.0.1:9/ml-100k.zip", timeout=2)


def test_missing_data_without_internet_names_the_variable_to_set(tmp_path):
    with pytest.raises(DataError, match=r"could not download .*set RECRANKER_DATA_DIR to a folder"):
        load_dataset("ml-100k", tmp_path / "data", url="http://127.0.0.1:9/ml-100k.zip")


def test_http_error_is_a_clear_error(tmp_path, serve):
    with pytest.raises(DataError, match="could not download"):
        download_ml100k(tmp_path, url=serve(b"gone", status=404))


def test_unknown_dataset_name(tmp_path):
    with pytest.raises(DataError, match="unknown dataset 'nope'"):
        load_dataset("nope", tmp_path)


def test_generic_folder_by_path(tmp_path: Path):
    (tmp_path / "interactions.csv").write_text("user_id,item_id,rating,timestamp\nu,a,5,1\n")
    (tmp_path / "items.csv").write_text("item_id,title\na,A\n")
    assert load_dataset(str(tmp_path), tmp_path / "unused").n_items == 1
