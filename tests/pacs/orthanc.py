"""A real Orthanc for tests: the Debian ``orthanc`` server with its DICOMweb plugin
(``orthanc-dicomweb``), started on a free localhost port with a throwaway JSON configuration
and storage folder, authentication on, stopped afterwards. Tests skip, saying why, when the
binary or the plugin is missing (``make test`` installs both when root and apt-get are there).

Accounts: ``sscmort`` may do anything; ``viewer`` may only read (a Lua filter answers 403 to
its writes, as a read-only PACS account would). ``https=True`` serves TLS with a self-signed
certificate made by ``openssl`` for 127.0.0.1.

Also here: two small localhost servers for the failures Orthanc will not produce on demand
(:func:`truncating_proxy` cuts each multipart answer in half; :func:`silent_server` accepts
connections and never answers), and :func:`upload_folder` (STOW-RS through sscmort's client).
"""

from __future__ import annotations

import contextlib
import http.server
import json
import shutil
import socket
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
    ca_file: Path | None = None

    def credentials(self, user: str = USER, password: str = PASSWORD) -> PacsCredentials:
        return PacsCredentials(user, password, None, self.ca_file, "test")

    def client(self, **kw) -> PacsClient:
        return PacsClient(self.url, self.credentials(), **kw)

    def rest_get(self, path: str) -> object:
        r = requests.get(self.rest + path, auth=(USER, PASSWORD), timeout=30,
                         verify=str(self.ca_file) if self.ca_file else True)
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


def _self_signed(folder: Path) -> Path:
    """cert + key in one PEM (what Orthanc's SslCertificate wants) for 127.0.0.1."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed: cannot make a test certificate")
    key, cert = folder / "key.pem", folder / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    (folder / "server.pem").write_text(cert.read_text() + key.read_text())
    return cert


def start_orthanc(folder: Path, *, https: bool = False) -> Orthanc:
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
    ca = None
    if https:
        ca = _self_signed(folder)
        config.update({"SslEnabled": True, "SslCertificate": str(folder / "server.pem")})
    (folder / "orthanc.json").write_text(json.dumps(config, indent=2))
    log = open(folder / "orthanc.log", "wb")
    proc = subprocess.Popen([str(ORTHANC), str(folder / "orthanc.json")], stdout=log,
                            stderr=subprocess.STDOUT, cwd=folder)
    scheme = "https" if https else "http"
    rest = f"{scheme}://127.0.0.1:{port}"
    server = Orthanc(f"{rest}/dicom-web", rest, folder, proc, ca)
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
def running_orthanc(folder: Path, *, https: bool = False) -> Iterator[Orthanc]:
    server = start_orthanc(folder, https=https)
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
def _serve(handler: type[http.server.BaseHTTPRequestHandler]) -> Iterator[str]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)


@contextlib.contextmanager
def truncating_proxy(target: str) -> Iterator[str]:
    """A localhost proxy to ``target`` (an Orthanc root) that forwards each GET, and sends back
    multipart answers cut to half their length (with a matching Content-Length, so only the
    missing closing boundary shows it). Yields the proxy's root URL."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            headers = {k: v for k, v in self.headers.items()
                       if k.lower() in ("accept", "authorization")}
            r = requests.get(target + self.path, headers=headers, timeout=60, verify=False)
            body = r.content
            if r.headers.get("Content-Type", "").startswith("multipart/"):
                body = body[: len(body) // 2]
            self.send_response(r.status_code)
            self.send_header("Content-Type", r.headers.get("Content-Type", "text/plain"))
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    with _serve(Handler) as url:
        yield url


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
