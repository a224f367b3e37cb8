"""Acquisition protocols of the synthetic cohort: fake scanners, kernels, slice thicknesses.

Shared by the cohort generator (which draws a protocol per scan) and the phantom / DICOM
writers (which render it). All names are fictitious; no real vendor is imitated.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

KERNELS: tuple[str, ...] = ("sharp", "smooth")


@dataclass(frozen=True)
class ScannerModel:
    """One fictitious CT scanner and the years it was in service at the synthetic registry."""

    manufacturer: str
    model: str
    first_year: int
    last_year: int
    slice_thicknesses_mm: tuple[float, ...]  # reconstructions this scanner offers
    extra_noise_hu: float  # older detectors are noisier

    @property
    def name(self) -> str:
        """The ``scanner`` string of the scans table: ``"<manufacturer> <model>"``."""
        return f"{self.manufacturer} {self.model}"


# Slice thicknesses keep z coverage ~300 mm in 40-60 slices (the phantom's size budget).
SCANNERS: tuple[ScannerModel, ...] = (
    ScannerModel("Synthetica", "Quanta 16", 2005, 2012, (6.0, 7.5), 6.0),
    ScannerModel("Phantomedic", "Aurora 64", 2008, 2018, (5.0, 6.0, 7.5), 3.0),
    ScannerModel("Voxelwerk", "Helix 128", 2013, 2022, (5.0, 6.0), 1.0),
    ScannerModel("Synthetica", "Vireo 256", 2017, 2022, (5.0,), 0.0),
)

SYNTHETIC_SERIES_DESCRIPTION = "SYNTHETIC CHEST CT"


def scanners_in_service(day: dt.date) -> tuple[ScannerModel, ...]:
    """Scanners whose service years include ``day``'s year (never empty for 2005-2022)."""
    found = tuple(s for s in SCANNERS if s.first_year <= day.year <= s.last_year)
    if not found:
        raise ValueError(f"no synthetic scanner was in service on {day}")
    return found


def scanner_by_name(name: str) -> ScannerModel:
    """Look up a scanner by its ``"<manufacturer> <model>"`` string."""
    for scanner in SCANNERS:
        if scanner.name == name:
            return scanner
    raise ValueError(f"unknown synthetic scanner {name!r}")


def manufacturer_and_model(name: str | None) -> tuple[str, str]:
    """(Manufacturer, ManufacturerModelName) for DICOM: known scanners split exactly, any
    other string splits at its first space; None gives a generic synthetic pair."""
    if name is None:
        return ("Synthetica", "Phantom CT")
    for scanner in SCANNERS:
        if scanner.name == name:
            return (scanner.manufacturer, scanner.model)
    head, _, tail = name.partition(" ")
    return (head, tail or head)
