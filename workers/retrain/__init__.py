"""The retraining worker: reads scored windows from Redis, runs self-training cycles, publishes validated models."""
