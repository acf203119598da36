"""Training and evaluation: MAESTRO data, the training run, bits per note, the continuation benchmark,
fine-tuning."""
