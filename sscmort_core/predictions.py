"""Typed risk predictions shared by every model kind (deep, radiomics, QCT, ensemble)."""

from __future__ import annotations

from dataclasses import dataclass

from sscmort_core.labels import HORIZONS_YEARS

MONOTONE_NOTE = "risks made monotone across horizons (running maximum)"


@dataclass(frozen=True)
class RiskPrediction:
    """Per-horizon mortality risk of one scan from one model (probabilities in [0, 1]).

    Risks never decrease with the horizon: deep models guarantee it by construction
    (cumulative hazard); tabular per-horizon models are made monotone by a running maximum,
    which ``monotone_adjusted`` records.
    """

    model_id: str
    kind: str  # "deep", "radiomics", "qct", "ensemble", "oracle"
    label: str  # what the UI shows, e.g. "resnet18 v1 (5-fold ensemble)"
    risk_1y: float
    risk_3y: float
    risk_5y: float
    monotone_adjusted: bool = False
    note: str | None = None  # e.g. "random init" for deep models without pretrained weights

    def __post_init__(self) -> None:
        risks = (self.risk_1y, self.risk_3y, self.risk_5y)
        if any(not (0.0 <= r <= 1.0) for r in risks):
            raise ValueError(f"{self.model_id}: risks must lie in [0, 1], got {risks}")
        if not (self.risk_1y <= self.risk_3y + 1e-9 and self.risk_3y <= self.risk_5y + 1e-9):
            raise ValueError(f"{self.model_id}: risks must not fall with the horizon: {risks}")

    def risk(self, horizon_years: int) -> float:
        return {1: self.risk_1y, 3: self.risk_3y, 5: self.risk_5y}[horizon_years]

    @property
    def notes_text(self) -> str:
        """What the pages and the CLI show as the prediction's note: ``note`` and, when the
        running maximum changed a risk, :data:`MONOTONE_NOTE` (said once, from the flag)."""
        return "; ".join([*([self.note] if self.note else []),
                          *([MONOTONE_NOTE] if self.monotone_adjusted else [])])

    def as_row(self) -> dict[str, object]:
        return {"model": self.label, "model_id": self.model_id, "kind": self.kind,
                **{f"{h}-year risk": self.risk(h) for h in HORIZONS_YEARS},
                "note": self.notes_text}
