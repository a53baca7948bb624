"""The built-in plugins of autodiffeq, each registered through the ``autodiffeq`` entry-point
group exactly as a third-party plugin would be."""
