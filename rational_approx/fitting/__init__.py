"""Fitting: AAA, AAA-Lawson, barycentric Remez (minimax), high-precision refinement and activation coefficients."""
