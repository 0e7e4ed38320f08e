"""End-to-end tests: the tools run as a user runs them, on tiny synthetic sets."""
