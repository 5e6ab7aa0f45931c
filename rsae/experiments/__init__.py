"""Experiments: the two-stage upgrade, synthetic ground truth and its study, and the full reproduction."""
