"""Every state change of security's models, one module per domain:

inventory (instances and workers), evaluation (policies over the inventory), violations
(acknowledge, assign, resolve, expire), responses (automatic actions and their undo),
detectors (failed logins, probing, unauthorized launches), ec2_events (EventBridge/CloudTrail
in), alerts (core alerts, pushed live).
"""
