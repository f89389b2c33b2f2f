"""Pieces shared by producers, workers and the CLI: settings, errors, Redis plumbing."""
