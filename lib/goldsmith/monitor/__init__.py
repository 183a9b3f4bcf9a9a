"""Monitoring: drift of features between a baseline and later data."""
