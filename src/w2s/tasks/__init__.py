"""Tasks: prompt sets and the gold scorers a method never sees while searching."""
