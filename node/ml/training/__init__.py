"""Offline scripts that regenerate the shipped model arrays (need the `ml` extra: scikit-learn)."""
