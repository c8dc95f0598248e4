"""The local platform: real servers on loopback, started and stopped by `hostplane up/down`."""
