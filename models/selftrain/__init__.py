"""Self-training on a site's own stream: mining, adaptation, validation, the cycle, the trainer the retraining worker keeps, the ordinal head, event categories, the adaptive threshold."""
