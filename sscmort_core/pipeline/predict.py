"""Risks of one analysed scan (stored or not) from every registered model, whatever its kind:
radiomics and QCT models, each deep backbone, the deep ensemble. The one entry point for the
upload page and ``sscmort predict``; models load through the one process-wide cache
(:data:`sscmort_core.util.cache.MODEL_CACHE`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from sscmort_core import store as st_store
from sscmort_core.errors import ModelError, SscmortError
from sscmort_core.lungs import classify_patterns, qct_metrics
from sscmort_core.pipeline.analyse import ScanAnalysis
from sscmort_core.predictions import RiskPrediction
from sscmort_core.radiomics.features import extract_features, params_from_text
from sscmort_core.tabular.io import load_model, tabular_model_ids
from sscmort_core.tabular.model import predict_features
from sscmort_core.util.paths import default_models_dir


def tabular_predictions(store: st_store.Store, hu: np.ndarray, lung_mask: np.ndarray,
                        spacing_mm: Sequence[float], *, models_dir: Path | None = None,
                        qct: Mapping[str, float] | None = None,
                        model_ids: Sequence[str] | None = None
                        ) -> tuple[list[RiskPrediction], list[tuple[str, str]]]:
    """Risks from every registered radiomics and QCT model for one volume, and (model id,
    reason) for each model that could not be used (missing or changed file, failed
    extraction): one bad model never hides the others.

    hu: (z, y, x) HU; lung_mask: (z, y, x) bool; spacing_mm: (z, y, x). ``qct``: the volume's
    QCT metrics and pattern extents when the caller has them (else measured here). Radiomics
    features are extracted once per parameter set the models were trained with (the card
    keeps the file).
    ``model_ids``: only these (default every registered radiomics / QCT model).
    """
    out: list[RiskPrediction] = []
    problems: list[tuple[str, str]] = []
    feats_by_hash: dict[str, dict[str, float]] = {}
    for model_id in (tabular_model_ids(store) if model_ids is None else model_ids):
        try:
            model = load_model(store, model_id, models_dir=models_dir)
            if model.kind == "qct":
                if qct is None:
                    sp = tuple(float(s) for s in spacing_mm)
                    pm = classify_patterns(hu, lung_mask, sp)  # type: ignore[arg-type]
                    qct = {**qct_metrics(hu, lung_mask, sp, pm).to_dict(),  # type: ignore
                           **pm.extents()}
                out.append(predict_features(model, {k: float(v) for k, v in qct.items()}))
                continue
            key = str(model.param_hash)
            if key not in feats_by_hash:
                params = params_from_text(model.radiomics_params_text or "", f"model {model_id}")
                feats_by_hash[key] = extract_features(hu, lung_mask, spacing_mm,
                                                      params).as_dict()
            out.append(predict_features(model, feats_by_hash[key]))
        except SscmortError as err:
            problems.append((model_id, str(err)))
    return out, problems


@dataclass(frozen=True)
class RiskReport:
    """Per-horizon risks from every registered model kind (tabular, deep, deep ensemble).

    ``problems``: (model or kind, one readable sentence) for models that could not be used
    (missing or tampered file...); the others still report. ``device``: where the deep models
    ran and why (None when none ran).
    """

    predictions: tuple[RiskPrediction, ...]
    problems: tuple[tuple[str, str], ...]
    seconds: float
    device: tuple[str, str] | None = None  # (name, reason)


def predict_all(store: st_store.Store, analysis: ScanAnalysis, *,
                models_dir: Path | None = None, device: str = "auto",
                progress: Callable[[str, int, int], None] | None = None) -> RiskReport:
    """Risks of an analysed (not necessarily stored) scan from every registered model;
    ``progress(stage, done, total)`` hears of each model group as it starts."""
    vol = analysis.volume
    return predict_volume_all(store, vol.hu, analysis.lungs.mask, vol.spacing_mm,
                              qct=analysis.measures.features(),  # measured at ingest: not again
                              models_dir=models_dir, device=device, progress=progress)


def predict_volume_all(store: st_store.Store | None, hu: np.ndarray, lung_mask: np.ndarray,
                       spacing_mm: Sequence[float], *, qct: Mapping[str, float] | None = None,
                       models_dir: Path | None = None, device: str = "auto",
                       model: str = "all", precision: str = "bf16",
                       progress: Callable[[str, int, int], None] | None = None) -> RiskReport:
    """Risks of a volume and its lung mask (hu, lung_mask: (z, y, x); spacing_mm: (z, y, x))
    from every registered model (``model`` "all"), or from the one model ``model`` names.

    Radiomics and QCT models need the store's registry; without a store only the deep models
    whose cards are in ``models_dir`` can run. A named model that is registered nowhere is a
    ModelError naming every registered model.
    """
    from sscmort_core.deep.infer import (  # heavy: torch
        available_models,
        choose_models,
        predict_volume,
    )

    models_dir = Path(models_dir) if models_dir is not None else default_models_dir()
    t0 = time.perf_counter()
    tab_ids = tabular_model_ids(store) if store is not None else []
    deep = available_models(store, models_dir)
    if model != "all" and model not in tab_ids and model not in deep:
        known = sorted([*tab_ids, *deep])
        raise ModelError(f"no registered model {model!r}; registered: "
                         f"{', '.join(known) or 'none'}")
    preds: list[RiskPrediction] = []
    problems: list[tuple[str, str]] = []
    say = progress or (lambda _stage, _done, _total: None)
    if store is not None and (model == "all" or model in tab_ids):
        say(f"radiomics and QCT models ({len(tab_ids)})", 0, 2)
        tab_preds, tab_problems = tabular_predictions(
            store, hu, lung_mask, spacing_mm, models_dir=models_dir, qct=qct,
            model_ids=tab_ids if model == "all" else [model])
        preds.extend(tab_preds)
        problems.extend(tab_problems)
    dev = None
    if deep and (model == "all" or model in deep):
        say(f"deep models ({len(deep)})", 1, 2)
        try:
            vp = predict_volume(hu, lung_mask, models=choose_models(deep, model),
                                models_dir=models_dir, device=device, precision=precision)
            preds.extend(vp.predictions)
            dev = (vp.device.name, vp.device.reason)
        except SscmortError as err:
            problems.append(("deep models", str(err)))
    return RiskReport(tuple(preds), tuple(problems), time.perf_counter() - t0, dev)
