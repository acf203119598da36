"""Beat-aligned audio: a fixed number of samples per beat, so every beat is one step of a sequence."""
