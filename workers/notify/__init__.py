"""Alert delivery beyond the API: webhooks."""
