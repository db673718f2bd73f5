"""The HTTP layer: one router module per resource, errors rendered in one place."""
