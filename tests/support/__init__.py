"""What tests (and bench/) share: fakes, harnesses and sample data. Test modules import from
here, never from each other, and production packages never import it."""
