"""Compare two demo stores built by different sscmort versions: do they hold the same numbers?

    python tests/bench/compare_stores.py OLD.duckdb NEW.duckdb [--qct-sample 20] [--seed 0]

Prints, and exits 1 when any differs: positives / censored per horizon (label rule), QCT of a
seeded sample of scans (largest absolute difference per metric; 1e-12 is the bar), and every
model's OOF AUC per horizon (AUC recomputed from the stored out-of-fold predictions by the
label rule, and the stored metric rows), matched by kind and label (tabular model ids carry a
hash of their settings, which includes versions, so they can differ between builds).

Opens both stores read-only; reads nothing but the stores.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from sscmort_core import store as st
from sscmort_core.evaluation import auc_or_none
from sscmort_core.labels import HORIZONS_YEARS, label_scans
from sscmort_core.views.names import QCT_LABELS, model_label


def _counts(s: st.Store) -> dict[str, tuple[int, int]]:
    scans = st.scans_frame(s)
    out = {}
    for h in HORIZONS_YEARS:
        lab = label_scans(scans["scan_date"], scans["death_date"], scans["last_followup_date"], h)
        out[f"{h}y"] = (lab.n_positive, lab.n_censored)
    return out


def _aucs(s: st.Store) -> dict[tuple[str, str], dict[int, float | None]]:
    scans = st.scans_frame(s).set_index("scan_id")
    models = st.models_frame(s)
    preds = st.predictions_frame(s)
    out = {}
    for _, m in models.iterrows():
        p = preds[preds["model_id"] == m["model_id"]]
        per = {}
        for h in HORIZONS_YEARS:
            ph = p[p["horizon_years"] == h].set_index("scan_id")
            sc = scans.loc[ph.index]
            lab = label_scans(sc["scan_date"], sc["death_date"], sc["last_followup_date"], h)
            per[h] = auc_or_none(lab.y, ph["risk"].to_numpy()[lab.known])
        out[(str(m["kind"]), model_label(m))] = per
    return out


def compare(old_path: str, new_path: str, n_qct: int, seed: int) -> bool:
    same = True
    with st.open_store(old_path, read_only=True) as old, \
            st.open_store(new_path, read_only=True) as new:
        co, cn = _counts(old), _counts(new)
        print("positives, censored per horizon:", co, "->", cn, "same" if co == cn else "DIFFER")
        same &= co == cn
        qo, qn = st.qct_frame(old).set_index("scan_id"), st.qct_frame(new).set_index("scan_id")
        ids = np.random.default_rng(seed).choice(qo.index.to_numpy(), size=n_qct, replace=False)
        for col in QCT_LABELS:
            diff = float(np.max(np.abs(qo.loc[ids, col].to_numpy() - qn.loc[ids, col].to_numpy())))
            ok = diff <= 1e-12
            same &= ok
            print(f"QCT {col} over {n_qct} scans: max |diff| {diff:.3g}", "" if ok else "DIFFER")
        ao, an = _aucs(old), _aucs(new)
        for key in sorted(set(ao) | set(an)):
            a, b = ao.get(key), an.get(key)
            fa = {h: None if v is None else round(v, 4) for h, v in (a or {}).items()}
            fb = {h: None if v is None else round(v, 4) for h, v in (b or {}).items()}
            ok = a is not None and b is not None and fa == fb
            same &= ok
            print(f"OOF AUC {key[0]:<9} {key[1]:<48} {fa} -> {fb}", "" if ok else "DIFFER")
    return same


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("old")
    p.add_argument("new")
    p.add_argument("--qct-sample", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    same = compare(args.old, args.new, args.qct_sample, args.seed)
    print("same numbers" if same else "numbers differ")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
