"""Tests of sscmort (the folders mirror sscmort_core)."""
