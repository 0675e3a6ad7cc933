//! Group commit for sled: one flusher thread serves every writer waiting for durability.
