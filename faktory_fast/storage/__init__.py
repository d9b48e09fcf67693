"""Storage: every Redis key behind one interface (the store), the Redis client, the key names,
Redis URLs and the function library (lua/)."""
