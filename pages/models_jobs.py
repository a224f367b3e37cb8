"""Models & jobs: the model registry with model cards, a quick training run, job progress."""

from __future__ import annotations

import streamlit as st

from pages._shared import audit, audit_view, page_setup, require, show_error, still_coming
from sscmort_core import store as st_store
from sscmort_core.deep import registry, saliency
from sscmort_core.deep.config import PROFILE_LABELS, UI_BACKBONES
from sscmort_core.errors import SscmortError
from sscmort_core.labels import HORIZONS_YEARS
from sscmort_core.pipeline import jobs
from sscmort_core.pipeline.staleness import model_staleness
from sscmort_core.util.paths import default_models_dir
from sscmort_core.views import render
from sscmort_core.views.models import (
    model_card,
    registry_frame,
    selection_line,
    stale_labels,
)
from sscmort_core.views.names import column_label, human_columns

store = page_setup("Models & jobs")
models_dir = default_models_dir()
jobs.mark_interrupted(store)  # rows of jobs whose app process is gone

st.subheader("Registry")
st.caption(f"Model files live in `{models_dir}` (set SSCMORT_MODELS to change it); the store "
           "registers each model's id, card and weights sha256. Every model is scored on "
           "out-of-fold predictions of patient-grouped cross-validation.")
models = st_store.models_frame(store)
staleness = model_staleness(store)
stale = stale_labels(models, staleness)
if stale:
    st.warning("Stale (outcomes of their training scans changed since they were trained, e.g. "
               "a registry re-import updated deaths or follow-up): " + ", ".join(stale)
               + ". Retrain them (`sscmort train`, or a training run below).",
               icon=":material/update:")
REGISTRY_W = {"label": 220, "kind": 64, **{f"OOF AUC {h}y": 70 for h in HORIZONS_YEARS},
              "status": 180, "weights on disk": 70}  # px: fits 1280 px without scrolling
if not models.empty:
    frame = registry_frame(models, models_dir, staleness)
    st.dataframe(frame, hide_index=True, width="stretch", column_order=tuple(REGISTRY_W),
                 column_config={c: st.column_config.NumberColumn(
                     column_label(c), format="%.3f", width=w) if c.startswith("OOF AUC")
                     else st.column_config.Column(column_label(c), width=w)
                     for c, w in REGISTRY_W.items()})
    with st.expander("Registry details: ids, backbones, versions, profiles, created"):
        st.dataframe(human_columns(frame[["label", "model_id", "backbone", "version",
                                          "profile", "pretrained", "created"]]),
                     hide_index=True, width="stretch")
deep = models[models["kind"] == "deep"]
if deep.empty and not still_coming("models"):
    st.info("No deep model is registered yet: start a training run below, or run "
            "`sscmort train --kind deep --backbone resnet18 --profile quick`.")
for row in deep.itertuples():
    card = model_card(row)
    with st.expander(f"Model card: {card.label}"):
        if card.random_init:
            st.warning("Random init: no pretrained weights were available, so this backbone "
                       "started from random weights" + (" and stayed frozen" if
                       card.config.get("shared_encoder") else "") +
                       ". Expect lower discrimination than the study's ImageNet-pretrained "
                       "models.", icon=":material/warning:")
        c1, c2, c3 = st.columns(3)
        c1.metric("Profile", str(card.profile or "?").split(":")[0])
        c2.metric("Scans / patients", f"{card.n_scans or '?'} / {card.n_patients or '?'}")
        c3.metric("Folds", card.config.get("folds", "?"))
        st.write(f"**Profile:** {card.profile}  \n**Pretrained:** "
                 f"{card.pretrained}  \n**Weights sha256:** `{row.weights_sha256}`  \n"
                 f"**Data hash:** `{row.data_hash}`  \n**Created:** {card.created}  \n"
                 f"**Settings chosen:** {selection_line(card)}")
        if st.button("Verify weights file", key=f"verify-{row.model_id}"):
            try:
                registry.load_weights(models_dir, row.model_id,
                                      expected_sha256=row.weights_sha256)
            except SscmortError as err:
                show_error(err)
            else:
                st.success("The weights file matches its card and the store (sha256).")
        st.json(card.to_json(), expanded=False)

if not deep.empty:
    st.subheader("Saliency preview")
    c1, c2, c3 = st.columns(3)
    sal_model = c1.selectbox("Deep model", deep["model_id"])
    sal_scan = c2.selectbox("Scan", st_store.scans_frame(store)["scan_id"])
    horizon = c3.radio("Horizon (years)", HORIZONS_YEARS, index=2, horizontal=True)
    if st.button("Show saliency"):
        audit_view("view scan", (sal_scan,))
        try:
            sal = saliency.explain_scan(store, sal_scan, sal_model, models_dir=models_dir,
                                        horizon_years=int(horizon))
        except SscmortError as err:
            show_error(err)
        else:
            for col, (i, sl) in zip(st.columns(len(sal.slices)), enumerate(sal.slices)):
                col.image(render.overlay_rgb(sal, i), width="stretch",
                          caption=f"slice z = {sl.z_index}, attention {sl.attention:.2f}")
            st.image(render.colorbar_rgb(), caption="overlay colour: 0 (left, no "
                     "contribution) to 1 (right, strongest on the slices shown)")
            st.caption(sal.legend)

st.subheader("Start a training run")
running = jobs.training_running(store)
with st.form("train"):
    backbone = st.selectbox("Backbone (timm)", UI_BACKBONES)
    profile = st.radio("Profile", list(PROFILE_LABELS), format_func=PROFILE_LABELS.get,
                       horizontal=True,
                       help="quick: frozen backbone, 64 px, 8 slices, minutes on a CPU. "
                            "full: fine-tuned end to end, 224 px, 16 slices: meant for a GPU.")
    c1, c2 = st.columns(2)
    folds = c1.number_input("Cross-validation folds", 2, 10, 5)
    seed = c2.number_input("Seed", 0, 10_000, 0)
    started = st.form_submit_button("Start training", type="primary", disabled=running)
if running:
    st.caption("A training run is in progress; one at a time.")
launched = started and require("train")  # a refusal stays on screen (no rerun below)
if launched:
    job_id = jobs.start_deep_training(store, backbone, profile=profile, models_dir=models_dir,
                                      folds=int(folds), seed=int(seed))
    audit("train", (job_id,), detail=f"{backbone}, {profile} profile")
    st.session_state["_started_job"] = job_id  # kept: a quick job's end reruns the page
if st.session_state.get("_started_job"):
    st.success(f"Started job {st.session_state['_started_job']}. It runs inside the app; its "
               "progress and result appear below.")


@st.fragment(run_every=2.0 if running or launched else None)
def job_panel() -> None:
    if (running or launched) and not jobs.training_running(store):
        st.rerun()  # the run finished: redraw the registry with the new model
    history = st_store.jobs_frame(store)
    for r in history[history["status"] == "running"].itertuples():
        st.progress(float(r.progress), text=f"{r.job_id}: {r.message or 'starting'}")
    if history.empty:
        st.caption("No jobs yet.")
        return
    st.dataframe(history[["job_id", "kind", "status", "progress", "message", "error",
                          "started_at", "finished_at"]], hide_index=True, width="stretch",
                 column_config={"progress": st.column_config.ProgressColumn(
                     "progress", min_value=0.0, max_value=1.0)})


st.subheader("Jobs")
job_panel()
