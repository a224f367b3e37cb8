"""Audit (admins): who did or saw what, when, with which role, and the outcome; filtered, CSV."""

from __future__ import annotations

import streamlit as st

from pages._shared import export_button, page_setup
from sscmort_core import store as st_store

MAX_ROWS = 5_000  # newest rows shown; the CSV holds the same rows

store = page_setup("Audit")
st.caption("Append-only: sscmort never changes or deletes an audit row. Times are UTC; object "
           "ids are pseudonymous store ids (an id typed in a link that names nothing here is "
           "kept only as a hash). The command line reads the same trail: `sscmort audit`.")

choices = st_store.audit_choices(store)
c1, c2, c3, c4, c5 = st.columns(5)
since = c1.date_input("From (UTC day)", value=None, key="audit_since")
until = c2.date_input("To (UTC day)", value=None, key="audit_until")
who = c3.selectbox("User", choices["who"], index=None, placeholder="everyone", key="audit_who")
action = c4.selectbox("Action", choices["action"], index=None, placeholder="every action",
                      key="audit_action")
outcome = c5.selectbox("Outcome", choices["outcome"], index=None, placeholder="any",
                       key="audit_outcome")
object_id = st.text_input("Object id (patient, scan, model, job)", key="audit_object").strip()

flt = st_store.AuditFilter(since=since, until=until, who=who, action=action, outcome=outcome,
                           object_id=object_id or None)
rows = st_store.audit_frame(store, flt, limit=MAX_ROWS)
st.caption(f"{len(rows):,} rows" + (f" (the newest {MAX_ROWS:,}; narrow the filters to see "
                                    "older ones)" if len(rows) == MAX_ROWS else "") + ".")
st.dataframe(rows, hide_index=True, width="stretch", column_config={
    "at_utc": st.column_config.DatetimeColumn("when (UTC)", format="YYYY-MM-DD HH:mm:ss"),
    "object_ids": st.column_config.TextColumn("objects")})
export_button("Download these rows (CSV)", rows.to_csv(index=False),
              file_name="sscmort_audit.csv", mime="text/csv", object_ids=("audit",),
              icon=":material/download:")
