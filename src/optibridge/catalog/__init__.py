"""Templates and push apps: our catalog, and keeping Optimove's copy of it in sync (flow 2)."""
