"""The study this dashboard reproduces, and the AUCs it reports (arXiv 2509.23530), drawn as
references beside every model's AUC."""

from __future__ import annotations

from dataclasses import dataclass

STUDY = "Imaging-Based Mortality Prediction in Patients with Systemic Sclerosis (arXiv 2509.23530)"


@dataclass(frozen=True)
class ReportedAUC:
    """An AUC the study reports. ``horizon_years`` is None for a range reported over horizons
    and models (radiomics: 0.682-0.723); then ``auc_low < auc_high``, else they are equal."""

    group: str  # "deep" | "radiomics"
    label: str
    horizon_years: int | None
    auc_low: float
    auc_high: float
    n_scans: int
    n_events: int | None

    @property
    def is_range(self) -> bool:
        return self.auc_low != self.auc_high


_STUDY_EVENTS = {1: 181, 3: 326, 5: 428}  # scans from patients who died within h years
STUDY_REPORTED_AUCS: tuple[ReportedAUC, ...] = (
    *(ReportedAUC("deep", "Study (reported): deep models, ResNet-18 / DenseNet-121 / Swin", h,
                  a, a, 2125, _STUDY_EVENTS[h]) for h, a in ((1, 0.769), (3, 0.801), (5, 0.709))),
    ReportedAUC("radiomics", "Study (reported): radiomics models, range over models and horizons",
                None, 0.682, 0.723, 2125, None),
)


def reported_aucs(horizon_years: int) -> tuple[ReportedAUC, ...]:
    """The study's AUCs that apply at a horizon (its deep AUC there, and the radiomics range)."""
    return tuple(r for r in STUDY_REPORTED_AUCS if r.horizon_years in (None, horizon_years))
