"""Verification: certified error brackets, classical theory and rates, the paper's claims and the main study."""
