"""The only place that chains stages: the demo build (:mod:`.demo`; in the app, as a background
job: :mod:`.demo_job`), ingest of one scan
(:mod:`.ingest`), risks from every model (:mod:`.predict`), evaluation runs
(:mod:`.evaluate`, inputs in :mod:`.eval_data`), temporal and external validation designs
(:mod:`.designs`), background jobs in the app (:mod:`.jobs`) and the benchmarks
(:mod:`.bench`). Pages, the CLI and jobs call this layer, never a stage's
internals.

May import: every stage below it (store, scans, lungs, radiomics, tabular, deep, evaluation).
"""

from __future__ import annotations

# The demo's optional stages, in order (here, not in .demo, so the CLI can offer them
# without importing the stages).
DEMO_STAGES: tuple[str, ...] = ("radiomics", "tabular", "deep", "evaluate")
