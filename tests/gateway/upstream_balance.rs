//! Upstream balancing (filled below).
