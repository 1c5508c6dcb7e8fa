"""GenAI spans: ``normalise`` (current, legacy and OpenInference attribute names → the GenAI
columns) and ``prices`` (cost from a bundled, dated price table)."""
