"""The shared, multi-tenant parts of hostplane on AWS, one ComponentResource per concern."""
