"""``sscmort report``: the HTML and Markdown documents carry every horizon's stored AUC with its
CI, n and events and the estimand; bad input is one line, exit 2, store unchanged."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from sscmort_core import store as st
from sscmort_core.cli import main
from sscmort_core.evaluation import PER_SCAN
from sscmort_core.labels import HORIZONS_YEARS
from tests.views.test_report import build_report_store


@pytest.fixture(scope="module")
def store_path(tiny_store_template, tmp_path_factory):
    return build_report_store(tiny_store_template, tmp_path_factory.mktemp("report_cli")).path


def _run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _one_error_line(err: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, err
    return lines[0]


def _auc_rows(path):
    with st.open_store(path, read_only=True) as s:
        m = st.metrics_for_models(s, ["noisy"])
    return m.loc[m["metric"] == "auc"].set_index("horizon_years")


def _audit_count(path) -> int:
    with st.open_store(path, read_only=True) as s:
        return len(st.audit_frame(s))


def test_html_report_holds_each_horizons_stored_auc(store_path, tmp_path, capsys):
    out = tmp_path / "noisy.html"
    before = _audit_count(store_path)
    code, stdout, err = _run(capsys, "report", "noisy", "--store", str(store_path), "--out",
                             str(out), "--n-boot", "50", "--json")
    assert code == 0, err
    summary = json.loads(stdout)
    page = out.read_text(encoding="utf-8")
    stored = _auc_rows(store_path)
    drawn = 0
    for h in HORIZONS_YEARS:
        s = stored.loc[h]
        # the performance table's AUC row of this horizon (one <tr>)
        row = re.search(rf"<tr><td>{h}</td><td>AUC</td>(.*?)</tr>", page)
        assert row, h
        cells = re.findall(r"<td>(.*?)</td>", row.group(1))
        assert cells[2] == PER_SCAN
        assert cells[4:7] == [str(int(s["n_scans"])), str(int(s["n_patients"])),
                              str(int(s["n_events"]))]
        if np.isfinite(s["value"]):
            assert cells[0] == f"{s['value']:.3f}"
            assert cells[1] == f"{s['ci_low']:.3f} to {s['ci_high']:.3f}"
            assert summary["auc"][str(h)]["value"] == s["value"]
            drawn += 1
        else:
            assert cells[0] == "n/a" and "too few" in cells[7]
    assert drawn and page.count("<svg") >= drawn
    assert "Research use only" in page and "Synthetic data" in page
    assert summary["synthetic"] is True and summary["research_use_only"] is True
    assert _audit_count(store_path) == before + 1  # the report is audited


def test_markdown_report_and_stdout(store_path, tmp_path, capsys):
    out = tmp_path / "noisy.md"
    code, stdout, err = _run(capsys, "report", "noisy", "--store", str(store_path), "--out",
                             str(out), "--n-boot", "50")
    assert code == 0, err
    assert "wrote the md report of noisy" in stdout and "research use only" in stdout
    text = out.read_text(encoding="utf-8")
    stored = _auc_rows(store_path)
    for h in HORIZONS_YEARS:
        if np.isfinite(stored.loc[h, "value"]):
            s = stored.loc[h]
            assert (f"| {h} | AUC | {s['value']:.3f} | {s['ci_low']:.3f} to "
                    f"{s['ci_high']:.3f} | {PER_SCAN} |") in text
    code, stdout, _ = _run(capsys, "report", "noisy", "--store", str(store_path), "--n-boot",
                           "50")  # no --out: the Markdown on stdout
    assert code == 0 and stdout.startswith("# Model report:") and "## 5. Performance" in stdout
    code, stdout, _ = _run(capsys, "report", "noisy", "--store", str(store_path), "--n-boot",
                           "50", "--json")  # --json without --out: the document inside
    summary = json.loads(stdout)
    assert code == 0 and summary["out"] is None and summary["format"] == "md"
    assert summary["document"].startswith("# Model report:")


@pytest.mark.parametrize("argv, words", [
    (("no-such-model",), ("unknown model id 'no-such-model'", "registered:", "noisy",
                          "Models & jobs")),
    (("unevaluated",), ("no stored metrics", "sscmort evaluate --models unevaluated")),
    (("noisy", "--out", "report.pdf"), ("report.pdf", ".html or .md")),
    (("noisy", "--out", "missing-folder/r.html"), ("missing-folder", "does not exist")),
])
def test_bad_input_is_one_line_exit_2_and_store_unchanged(store_path, tmp_path, capsys,
                                                          monkeypatch, argv, words):
    monkeypatch.chdir(tmp_path)
    before = _audit_count(store_path)
    code, stdout, err = _run(capsys, "report", *argv, "--store", str(store_path))
    assert code == 2 and stdout == ""
    line = _one_error_line(err)
    for w in words:
        assert w in line, line
    assert _audit_count(store_path) == before
    assert not list(tmp_path.iterdir())  # nothing written
