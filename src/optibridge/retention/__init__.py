"""Retention: campaigns shrink to their totals after the reporting window (`purge`), old finished
jobs go (procrastinate's cleanup), and one customer can be removed from every table (`forget`)."""
