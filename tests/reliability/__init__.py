"""Reliability tests: faults survived, unsafe checkpoints refused, bad data reported."""
