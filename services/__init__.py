"""The control-plane services, one lifecycle stage each (DESIGN.md, "Control plane")."""
