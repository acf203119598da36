"""Generation: the user's request, sampling, the streaming session, forms, infilling."""
