"""A real Orthanc for tests: the Debian ``orthanc`` server with its DICOMweb plugin
(``orthanc-dicomweb``), started on a free localhost port with a throwaway JSON configuration
and storage folder, authentication on, stopped afterwards. Tests skip, saying why, when the
binary or the plugin is missing (``make test`` installs both when root and apt-get are there).

Accounts: ``sscmort`` may do anything; ``viewer`` may only read (a Lua filter answers 403 to
its writes, as a read-only PACS account would).

Also here: small localhost servers for what Orthanc will not do on demand, each forwarding to
the real Orthanc: :func:`truncating_proxy` cuts each multipart answer in half;
:func:`tls_proxy` serves it over TLS with a self-signed certificate (``openssl``) for
127.0.0.1 (Debian's Orthanc 1.10.1 dies with SIGSEGV on its first HTTPS connection, so TLS is
terminated in front of it); :func:`silent_server` accepts connections and never answers. And
:func:`upload_folder` (STOW-RS through sscmort's client).
"""

from __future__ import annotations

import contextlib
import http.server
import json
import shutil
import socket
import ssl
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pydicom
import pytest
import requests

from sscmort_core.pacs import PacsClient, PacsCredentials

ORTHANC = Path("/usr/sbin/Orthanc")
DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
USER, PASSWORD = "sscmort", "orthanc-test-password"
VIEWER, VIEWER_PASSWORD = "viewer", "viewer-test-password"
LUA_READ_ONLY = f"""
function IncomingHttpRequestFilter(method, uri, ip, username, httpHeaders)
  if username == '{VIEWER}' and method ~= 'GET' then
    return false
  end
  return true
end
"""


def missing_reason() -> str | None:
    if not ORTHANC.is_file():
        return (f"Orthanc is not installed ({ORTHANC} missing; Debian package 'orthanc', "
                "installed by `make test` when root and apt-get are available)")
    if not DICOMWEB_PLUGIN.is_file():
        return (f"the Orthanc DICOMweb plugin is not installed ({DICOMWEB_PLUGIN} missing; "
                "Debian package 'orthanc-dicomweb')")
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Orthanc:
    """A running Orthanc: ``url`` is its DICOMweb root, ``rest`` its REST root."""

    url: str
    rest: str
    folder: Path
    process: subprocess.Popen

    def credentials(self, user: str = USER, password: str = PASSWORD,
                    ca_file: Path | None = None) -> PacsCredentials:
        return PacsCredentials(user, password, None, ca_file, "test")

    def client(self, **kw) -> PacsClient:
        return PacsClient(self.url, self.credentials(), **kw)

    def rest_get(self, path: str) -> object:
        r = requests.get(self.rest + path, auth=(USER, PASSWORD), timeout=30)
        r.raise_for_status()
        return r.json()

    def instance_count(self) -> int:
        return int(self.rest_get("/statistics")["CountInstances"])  # type: ignore[index]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def self_signed(folder: Path) -> tuple[Path, Path]:
    """(certificate, key) PEM files of a self-signed certificate for 127.0.0.1."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed: cannot make a test certificate")
    folder.mkdir(parents=True, exist_ok=True)
    key, cert = folder / "key.pem", folder / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


def start_orthanc(folder: Path) -> Orthanc:
    reason = missing_reason()
    if reason:
        pytest.skip(reason)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "read_only.lua").write_text(LUA_READ_ONLY)
    port = free_port()
    config = {
        "Name": "sscmort-test", "StorageDirectory": str(folder / "db"),
        "IndexDirectory": str(folder / "db"), "HttpPort": port, "DicomPort": free_port(),
        "DicomServerEnabled": False, "RemoteAccessAllowed": False,
        "AuthenticationEnabled": True,
        "RegisteredUsers": {USER: PASSWORD, VIEWER: VIEWER_PASSWORD},
        "LuaScripts": [str(folder / "read_only.lua")],
        "Plugins": [str(DICOMWEB_PLUGIN)],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": True},
        "HttpCompressionEnabled": False, "StorageCompression": False,
        "HttpThreadsCount": 8, "ConcurrentJobs": 1, "SaveJobs": False,
    }
    (folder / "orthanc.json").write_text(json.dumps(config, indent=2))
    log = open(folder / "orthanc.log", "wb")
    proc = subprocess.Popen([str(ORTHANC), str(folder / "orthanc.json")], stdout=log,
                            stderr=subprocess.STDOUT, cwd=folder)
    rest = f"http://127.0.0.1:{port}"
    server = Orthanc(f"{rest}/dicom-web", rest, folder, proc)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("Orthanc exited at start: "
                               + (folder / "orthanc.log").read_text()[-2000:])
        try:
            server.rest_get("/system")
            return server
        except (requests.ConnectionError, requests.HTTPError):
            time.sleep(0.2)
    server.stop()
    raise RuntimeError("Orthanc did not start within 60 s")


@contextlib.contextmanager
def running_orthanc(folder: Path) -> Iterator[Orthanc]:
    server = start_orthanc(folder)
    try:
        yield server
    finally:
        server.stop()


def upload_folder(server: Orthanc, folder: Path) -> int:
    """Store every DICOM file of ``folder`` on ``server`` (STOW-RS); returns the count."""
    datasets = [pydicom.dcmread(p) for p in sorted(Path(folder).iterdir()) if p.is_file()]
    with server.client() as client:
        client.store(datasets)
    return len(datasets)


# ---------------------------------------------------------------------------------------------
# failures on demand
# ---------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _serve(handler: type[http.server.BaseHTTPRequestHandler],
           tls: tuple[Path, Path] | None = None) -> Iterator[str]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    scheme = "http"
    if tls is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(tls[0]), str(tls[1]))
        httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
        scheme = "https"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"{scheme}://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)


def _forwarder(target: str, cut_multipart: bool) -> type[http.server.BaseHTTPRequestHandler]:
    """A handler that forwards GET and POST to ``target`` (an Orthanc root) and sends the
    answer back, multipart answers cut to half their length when ``cut_multipart`` (with a
    matching Content-Length, so only the missing closing boundary shows it)."""

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def _forward(self, method: str) -> None:
            headers = {k: v for k, v in self.headers.items()
                       if k.lower() in ("accept", "authorization", "content-type")}
            body = self.rfile.read(int(self.headers.get("Content-Length", 0) or 0))
            r = requests.request(method, target + self.path, headers=headers, data=body or None,
                                 timeout=60)
            out = r.content
            if cut_multipart and r.headers.get("Content-Type", "").startswith("multipart/"):
                out = out[: len(out) // 2]
            self.send_response(r.status_code)
            self.send_header("Content-Type", r.headers.get("Content-Type", "text/plain"))
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            self._forward("GET")

        def do_POST(self) -> None:  # noqa: N802
            self._forward("POST")

    return Handler


@contextlib.contextmanager
def truncating_proxy(target: str) -> Iterator[str]:
    """A localhost proxy to ``target`` that cuts each multipart answer in half. Yields its
    root URL."""
    with _serve(_forwarder(target, cut_multipart=True)) as url:
        yield url


@contextlib.contextmanager
def tls_proxy(target: str, folder: Path) -> Iterator[tuple[str, Path]]:
    """``target`` served over TLS (self-signed for 127.0.0.1). Yields (root URL, CA file)."""
    cert, key = self_signed(folder)
    with _serve(_forwarder(target, cut_multipart=False), tls=(cert, key)) as url:
        yield url, cert


@contextlib.contextmanager
def silent_server() -> Iterator[str]:
    """Accepts connections on a localhost port and never answers. Yields its URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        sock.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
                held.append(conn)
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/dicom-web"
    finally:
        stop.set()
        thread.join(timeout=5)
        for c in held:
            c.close()
        sock.close()


@pytest.fixture(scope="session")
def orthanc(tmp_path_factory) -> Iterator[Orthanc]:
    """One Orthanc for the session (tests upload studies with their own UIDs)."""
    with running_orthanc(tmp_path_factory.mktemp("orthanc")) as server:
        yield server
