package auth

// CachedTokens is how many verified tokens s remembers (tests).
func CachedTokens(s *Signer) int { return s.seen.len() }
