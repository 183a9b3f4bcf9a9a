"""Monitoring: drift between a baseline and later data (`drift`), and which monitored values are violations
(`breaches`)."""
