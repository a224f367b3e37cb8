"""Radiomics: pyradiomics features inside the lung mask (:mod:`.features`, pure: arrays in,
features out) and the batch stage over the store (:mod:`.stage`).

May import: the ground floor, util, lungs (features); store and scans too (stage only).
"""
