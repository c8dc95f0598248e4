"""hostplane: the command surface and the local platform."""
