"""Dashboard pages, one per role; they draw what the domain packages compute."""
