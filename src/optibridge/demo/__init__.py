"""The self-contained end-to-end demo (`optibridge demo`)."""
