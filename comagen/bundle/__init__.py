"""A checkpoint bundle: weights, config, tokenizer, composers and model card, loaded as untrusted input."""
