"""Representation: domains, targets, the barycentric form, the safe-Padé form and extremum search."""
