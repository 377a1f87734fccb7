"""The Gherkin step library (French phrases), registered by the pytest plugin."""
