"""Periodic work, run by `manage.py rqcron config.cron` (the one scheduler process).

Each app registers its sweeps here as it gains them.
"""
