"""raysweep: stress-test machine-unlearning methods against data poisoning, laptop to Ray cluster."""
__version__ = "0.1.0"
