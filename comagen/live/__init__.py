"""Real-time front ends' plumbing: MIDI ports, a MIDI file played as a player, timed sound out."""
