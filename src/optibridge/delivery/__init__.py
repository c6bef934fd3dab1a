"""Delivery: dispatch of claimed messages through each channel's provider."""
