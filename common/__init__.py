"""Pieces shared by every feature package: domain errors, time, column types."""
