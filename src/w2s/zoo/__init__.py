"""Small models w2s can build for itself (tests, the demo) without a model hub."""
