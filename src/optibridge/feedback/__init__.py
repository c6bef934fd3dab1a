"""What recipients and providers tell us after sending: tracking endpoints (opens, clicks,
one-click unsubscribe), provider receipts, and the suppression list. See docs/feedback.md.

For the dispatcher: `links.tracking_urls`, `links.instrument_html`, `links.list_unsubscribe_headers`,
`links.twilio_status_callback_url`, `receipts.record_send_results`, `suppression.suppressed`.
For the web app: `tracking.router(runtime)`, `receipts.router(runtime)`.
"""
