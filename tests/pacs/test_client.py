"""The DICOMweb client against a real Orthanc (tests/pacs/orthanc.py): search, streamed
retrieve into a folder that is always removed, store; and one named error per failure (PACS
down, timeout, 401, 403, 404, non-CT series, truncated multipart body, unverified TLS), never
carrying a credential. Credentials from the environment or .streamlit/secrets.toml."""

from __future__ import annotations

import time
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import JPEG2000Lossless

from sscmort_core.errors import (
    NotACTSeriesError,
    PacsAuthError,
    PacsError,
    PacsNotFoundError,
    PacsResponseError,
    PacsTimeoutError,
    PacsTLSError,
    PacsUnavailableError,
)
from sscmort_core.pacs import PacsClient, PacsCredentials, fetch_series, load_credentials
from sscmort_core.pipeline.pacs import query
from tests.pacs.orthanc import (
    PASSWORD,
    VIEWER,
    VIEWER_PASSWORD,
    free_port,
    silent_server,
    tls_proxy,
    truncating_proxy,
    upload_folder,
)
from tests.pacs.studies import ct_study, mr_series_like, only_mr_study, phi


@pytest.fixture(scope="module")
def study(orthanc, tmp_path_factory):
    """A J2K-compressed CT series plus a 3-image MR series in the same study, on Orthanc."""
    folder = tmp_path_factory.mktemp("study")
    _, paths = ct_study(folder / "ct", seed=101, syntax=JPEG2000Lossless)
    mr_uid = mr_series_like(paths, folder / "mr")
    upload_folder(orthanc, folder / "ct")
    upload_folder(orthanc, folder / "mr")
    ds = pydicom.dcmread(paths[0], stop_before_pixels=True)
    return {"study": str(ds.StudyInstanceUID), "series": str(ds.SeriesInstanceUID),
            "mr": mr_uid, "paths": paths, "n": len(paths)}


def test_query_lists_ct_series_without_patient_identifiers(orthanc, study):
    with orthanc.client() as client:
        rows = query(client, patient_id=phi(101)["PatientID"])
        every = query(client, patient_id=phi(101)["PatientID"], ct_only=False)
        by_accession = query(client, accession=phi(101)["AccessionNumber"])
        in_range = query(client, patient_id=phi(101)["PatientID"],
                         study_date="20000101-20991231")
        out_of_range = query(client, patient_id=phi(101)["PatientID"],
                             study_date="19000101-19001231")
    assert [(r.study_uid, r.series_uid, r.modality, r.n_instances) for r in rows] == [
        (study["study"], study["series"], "CT", study["n"])]
    assert sorted(r.modality for r in every) == ["CT", "MR"]
    assert [r.series_uid for r in by_accession] == [study["series"]]
    assert len(in_range) == 1 and out_of_range == []
    shown = repr(rows) + str([r.to_json() for r in every]) + " ".join(r.label() for r in every)
    for key in ("PatientName", "PatientID", "AccessionNumber", "PatientBirthDate"):
        value = phi(101)[key]
        assert value not in shown and value.split("^")[0] not in shown


def test_fetch_streams_the_stored_syntax_into_a_folder_that_is_always_removed(orthanc, study):
    with orthanc.client() as client:
        with fetch_series(client, study["study"], study["series"]) as folder:
            files = sorted(folder.iterdir())
            assert len(files) == study["n"]
            syntaxes = {pydicom.dcmread(f, stop_before_pixels=True).file_meta.TransferSyntaxUID
                        for f in files}
            assert syntaxes == {JPEG2000Lossless}  # as stored, not transcoded
            kept = folder
        assert not kept.exists()
        with pytest.raises(RuntimeError, match="boom"):
            with fetch_series(client, study["study"], study["series"]) as folder:
                kept = folder
                raise RuntimeError("boom")
        assert not kept.exists()


def test_store_then_find_again(orthanc, tmp_path):
    _, paths = ct_study(tmp_path / "ct", seed=102)
    before = orthanc.instance_count()
    with orthanc.client() as client:
        result = client.store([pydicom.dcmread(p) for p in paths])
        assert result.n_stored == len(paths)
        assert orthanc.instance_count() == before + len(paths)
        uid = str(pydicom.dcmread(paths[0], stop_before_pixels=True).StudyInstanceUID)
        assert client.ct_series(uid).n_instances == len(paths)


# ---------------------------------------------------------------------------------------------
# one named error per failure
# ---------------------------------------------------------------------------------------------
def _one_line(err: PacsError | NotACTSeriesError, *words: str) -> str:
    text = str(err)
    assert "\n" not in text and PASSWORD not in text and VIEWER_PASSWORD not in text
    for word in words:
        assert word in text, text
    return text


def test_pacs_down(tmp_path):
    client = PacsClient(f"http://127.0.0.1:{free_port()}/dicom-web", PacsCredentials())
    with pytest.raises(PacsUnavailableError) as got:
        client.search_studies()
    _one_line(got.value, "nothing answers", "127.0.0.1")


def test_pacs_too_slow_is_a_timeout():
    with silent_server() as url:
        client = PacsClient(url, PacsCredentials(), timeout_s=1.0)
        t0 = time.monotonic()
        with pytest.raises(PacsTimeoutError) as got:
            client.search_studies()
        assert time.monotonic() - t0 < 15
    _one_line(got.value, "did not answer within 1 s")


@pytest.mark.parametrize("creds", [PacsCredentials(), PacsCredentials("sscmort", "wrong")],
                         ids=["none", "wrong password"])
def test_401(orthanc, creds):
    with pytest.raises(PacsAuthError) as got:
        PacsClient(orthanc.url, creds).search_studies()
    _one_line(got.value, "401", "credentials")


def test_403_read_only_account_cannot_store(orthanc, study, tmp_path):
    viewer = PacsClient(orthanc.url, orthanc.credentials(VIEWER, VIEWER_PASSWORD))
    assert viewer.ct_series(study["study"]).series_uid == study["series"]  # reading is allowed
    before = orthanc.instance_count()
    with pytest.raises(PacsAuthError) as got:
        viewer.store([pydicom.dcmread(study["paths"][0])])
    _one_line(got.value, "403")
    assert orthanc.instance_count() == before


def test_404(orthanc, study):
    with pytest.raises(PacsNotFoundError) as got:
        PacsClient(orthanc.rest + "/no-such-root", orthanc.credentials()).search_studies()
    _one_line(got.value, "404")
    with orthanc.client() as client:
        with pytest.raises(PacsNotFoundError, match="no study"):
            client.ct_series("1.2.3.999999")
        with pytest.raises(PacsNotFoundError, match="no series"):
            client.ct_series(study["study"], "1.2.3.999999")
        with pytest.raises(PacsError, match="404"):
            client.retrieve_series(study["study"], "1.2.3.999999", Path("/nonexistent/x"))


def test_non_ct_series_is_refused_before_retrieving(orthanc, study, tmp_path):
    with orthanc.client() as client:
        with pytest.raises(NotACTSeriesError) as got:
            client.ct_series(study["study"], study["mr"])
        _one_line(got.value, "MR", "not CT")
        only_mr = only_mr_study(tmp_path / "mr", study["paths"])
        upload_folder(orthanc, tmp_path / "mr")
        with pytest.raises(NotACTSeriesError, match="no CT series"):
            client.ct_series(only_mr)


def test_truncated_multipart_body_keeps_nothing(orthanc, study, tmp_path):
    with truncating_proxy(orthanc.rest) as proxy:
        client = PacsClient(proxy + "/dicom-web", orthanc.credentials())
        assert client.ct_series(study["study"]).series_uid == study["series"]  # JSON untouched
        target = tmp_path / "got"
        with pytest.raises(PacsResponseError) as got:
            client.retrieve_series(study["study"], study["series"], target)
        _one_line(got.value, "cut short")
        assert list(target.iterdir()) == []  # the instances that did arrive are gone too
        with pytest.raises(PacsResponseError):
            with fetch_series(client, study["study"], study["series"]):
                pass


def test_tls_is_verified(orthanc, study, tmp_path):
    with tls_proxy(orthanc.rest, tmp_path / "tls") as (url, ca_file):
        unverified = PacsClient(url + "/dicom-web", orthanc.credentials())
        with pytest.raises(PacsTLSError) as got:
            unverified.search_studies()
        _one_line(got.value, "certificate", "CA")
        verified = PacsClient(url + "/dicom-web", orthanc.credentials(ca_file=ca_file))
        assert verified.ct_series(study["study"]).series_uid == study["series"]


def test_credentials_bound_to_one_pacs_are_not_sent_to_another(orthanc):
    elsewhere = PacsCredentials("sscmort", PASSWORD, url="http://127.0.0.1:1/dicom-web")
    with pytest.raises(PacsAuthError, match="401"):
        PacsClient(orthanc.url, elsewhere).search_studies()
    here = PacsCredentials("sscmort", PASSWORD, url=orthanc.rest + "/other-path")
    assert PacsClient(orthanc.url, here).search_studies() is not None  # same origin: sent


def test_credentials_in_the_address_are_refused():
    with pytest.raises(PacsError, match="carries credentials") as got:
        PacsClient("http://user:hunter2@127.0.0.1:8042/dicom-web")
    assert "hunter2" not in str(got.value)


# ---------------------------------------------------------------------------------------------
# credentials
# ---------------------------------------------------------------------------------------------
def test_credentials_from_environment_win_over_the_secrets_file(tmp_path):
    secrets = tmp_path / "secrets.toml"
    secrets.write_text('[pacs]\nusername = "file-user"\npassword = "file-pass"\n')
    env = {"SSCMORT_PACS_USERNAME": "env-user", "SSCMORT_PACS_PASSWORD": "env-pass"}
    got = load_credentials(env, secrets)
    assert (got.username, got.password, got.source) == ("env-user", "env-pass", "environment")
    got = load_credentials({}, secrets)
    assert (got.username, got.password, got.source) == ("file-user", "file-pass",
                                                        "secrets file")
    assert "file-pass" not in repr(got) and "file-pass" not in str(got)
    assert load_credentials({}, tmp_path / "absent.toml").kind == "none"
    bound = load_credentials({**env, "SSCMORT_PACS_URL": "https://pacs.example.org/dw"})
    assert bound.for_url("https://PACS.example.org:443/other") and \
        not bound.for_url("https://evil.example.org/dw")
    token = load_credentials({"SSCMORT_PACS_TOKEN": "t0ken"}, secrets)
    assert token.kind == "bearer token" and "t0ken" not in repr(token)


@pytest.mark.parametrize("text, words", [
    ("[pacs]\npassword = 'x'\n", "without a username"),
    ("[pacs\n", "not valid TOML"),
    ("[pacs]\nca_bundle = '/no/such/ca.pem'\n", "does not exist"),
])
def test_bad_secrets_file_is_one_line(tmp_path, text, words):
    secrets = tmp_path / "secrets.toml"
    secrets.write_text(text)
    with pytest.raises(PacsError, match=words) as got:
        load_credentials({}, secrets)
    assert "\n" not in str(got.value)


def test_secrets_file_is_git_ignored():
    ignored = (Path(__file__).resolve().parents[2] / ".gitignore").read_text().splitlines()
    assert ".streamlit/secrets.toml" in ignored
