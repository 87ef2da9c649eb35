"""Detector networks, fitting, export, scoring, self-training and evaluation: plain models and maths, no Redis or HTTP."""
