"""Benchmarks of omnimem.cpp: `omnimem bench speed` (speed.py) runs the speed measurements and prints one
table; each module here also runs alone from the source tree (`python -m benchmarks.text_speed --help`)."""
