"""The Gradio chat page of Sanad: `build_app(bot)` builds it, `launch(...)` serves it (``sanad chat``).

`ui.format` holds the pure HTML formatting, `ui.app` the Gradio wiring and handlers.
"""
from ui.app import build_app, launch

__all__ = ["build_app", "launch"]
