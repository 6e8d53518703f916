"""Programs as solutions: candidate programs evaluated in isolation (issue 27)."""
