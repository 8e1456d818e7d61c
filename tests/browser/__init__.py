"""Browser tests: pareto_front.html and the MLflow UI in headless Chromium (a package, so that their
browser, sweep and UI server are released when these tests end, not at the end of the session)."""
