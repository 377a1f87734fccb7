"""The other side of the counter: a virtual mobile app, a mock backend, and the world."""
