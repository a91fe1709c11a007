"""Sign-In-With-Solana, sessions, users and the software wallet."""
