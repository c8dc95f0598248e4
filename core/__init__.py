"""The bottom layer: settings, the AWS client factory, logging, metrics, local state and
process helpers. It imports nothing else of ours; every other package may import it."""
